"""Where a checkpoint is in a training run folder (no torch).

``gan-train --out RUN`` writes ``RUN/checkpoints/step-*``, ``RUN/checkpoints/latest`` and, when
a metric picks one, ``RUN/checkpoints/best``. Users point tools at ``RUN`` (or at
``RUN/checkpoints``) as often as at a checkpoint itself; :func:`resolve_checkpoint` turns any of
the three into the checkpoint to use, and says which it chose.
"""

from __future__ import annotations

import os
from pathlib import Path

#: What makes a folder a checkpoint (``gan.checkpoint`` writes it; kept torch-free here).
CONFIG_FILE = "config.json"
#: The checkpoints of a run, in the order they are preferred.
PREFERRED = ("best", "latest")


def _is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def resolve_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``(checkpoint, note)``: ``path`` itself when it is a checkpoint (or not a run folder, so
    that the loader reports what is wrong with it); else the run's ``best``, else its
    ``latest``, with a note that says which was chosen."""
    given = Path(path)
    if _is_checkpoint(given) or not given.is_dir():
        return given, None
    for folder in (given / "checkpoints", given):
        for name in PREFERRED:
            candidate = folder / name
            if _is_checkpoint(candidate):
                why = "the best by its metric" if name == "best" else "the newest; no best yet"
                return candidate, f"{given} is a training run: using {candidate} ({why})"
    return given, None


def run_folder_hint(path: str | os.PathLike[str]) -> str:
    """What to add to a "config.json missing" error for a folder that holds no checkpoint."""
    given = Path(path)
    steps = sorted(given.glob("checkpoints/step-*")) or sorted(given.glob("step-*"))
    if steps:
        return f"; its newest step checkpoint is {steps[-1]}"
    return (
        "; pass a checkpoint folder (with config.json), or a training run folder "
        "(gan-train --out), whose checkpoints/best or checkpoints/latest is then used"
    )
