"""What a checkpoint records about its training data: the data, not the trainer's machine.

:func:`portable_dataset_info` is applied by :func:`gan.checkpoint.build_config` (new
checkpoints) and by the service's ``GET /info`` (checkpoints written before). No torch here:
the service imports it at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Dataset record entries that describe the trainer's machine rather than the data.
_MACHINE_KEYS = frozenset({"cache", "cache_hit", "skipped"})
_MACHINE_SUFFIXES = ("_path", "_paths", "_dir", "_dirs")


def _absolute_path(value: str) -> bool:
    return value.startswith(("/", "~", "\\")) or (
        len(value) > 2 and value[0].isalpha() and value[1] == ":" and value[2] in "/\\"
    )


def portable_dataset_info(info: dict[str, Any]) -> dict[str, Any]:
    """A dataset record without what only describes the machine it was made on.

    ``path`` becomes ``folder``, the folder's name alone (``/home/alice/data/mnist`` ->
    ``mnist``); the trainer's cache (``cache``, ``cache_hit``), the names of skipped files, keys
    ending in ``_path``/``_dir`` and any other absolute path are left out, in nested records
    too. The data's description stays: name, split, sizes, fingerprint, resolution, channels,
    classes, preprocessing. New checkpoints record this (:func:`gan.checkpoint.build_config`) and
    ``GET /info`` shows it for old ones.
    """
    out: dict[str, Any] = {}
    for key, value in info.items():
        if key in _MACHINE_KEYS or key.endswith(_MACHINE_SUFFIXES):
            continue
        if key == "path" and isinstance(value, str):
            name = Path(value.replace("\\", "/").rstrip("/")).name
            if name:
                out.setdefault("folder", name)
            continue
        kept = _portable(value)
        if kept is not _DROP:
            out[key] = kept
    return out


_DROP = object()


def _portable(value: Any) -> Any:
    if isinstance(value, str):
        return _DROP if _absolute_path(value) else value
    if isinstance(value, dict):
        return portable_dataset_info(value)
    if isinstance(value, list):
        return [v for v in (_portable(item) for item in value) if v is not _DROP]
    return value
