"""The training state of a checkpoint (for ``--resume``): any nested structure of tensors and
JSON scalars, stored as two files next to the weights::

    train_state.safetensors     the tensors (optimiser moments, raw G, RNG states), by path
    train_state.json            the rest of the tree, referencing those tensors by name

Nothing is unpickled: :func:`flatten_state` splits a structure into named tensors and a JSON
tree, :func:`unflatten_state` joins them again, and :func:`load_train_state` reads them back
from a checkpoint directory (written by :func:`gan.checkpoint.save_checkpoint`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gan.errors import CheckpointError

TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"


def flatten_state(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested structure into (named tensors, JSON tree referencing them)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            key = path or "root"
            tensors[key] = o.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(o, dict):
            if not all(isinstance(k, (str, int)) for k in o):
                raise TypeError(f"unsupported dict keys at {path!r}")
            return {
                "__dict__": [[k, walk(v, f"{path}.{k}" if path else str(k))] for k, v in o.items()]
            }
        if isinstance(o, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(o)]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} at {path!r} in a training state")

    return tensors, walk(obj, "")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(unflatten_state(v, tensors) for v in tree["__tuple__"])
        if "__dict__" in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"]}
        raise CheckpointError(f"malformed training state entry: {sorted(tree)}")
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


def load_train_state(path: str | os.PathLike[str]) -> Any:
    ckpt = Path(path)
    tpath, jpath = ckpt / TRAIN_STATE_TENSORS, ckpt / TRAIN_STATE_JSON
    if not tpath.is_file() or not jpath.is_file():
        raise CheckpointError(
            f"{ckpt}: no training state ({TRAIN_STATE_TENSORS} + {TRAIN_STATE_JSON}); this "
            "checkpoint can be served or sampled but not resumed"
        )
    try:
        tensors = load_file(str(tpath))
        tree = json.loads(jpath.read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{ckpt}: unreadable training state ({exc})") from exc
    try:
        return unflatten_state(tree, tensors)
    except KeyError as exc:
        raise CheckpointError(f"{ckpt}: training state references missing tensor {exc}") from exc
