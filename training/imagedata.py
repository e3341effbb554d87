"""The in-memory dataset type every loader returns, and the errors users see.

:class:`ImageData` holds ``images`` uint8 ``[N, C, H, W]`` plus optional integer ``labels``
``[N]``; :class:`DataError` says why a dataset cannot be read and :class:`DataWarning` that some
input was skipped. The loaders are :mod:`training.mnist`, :mod:`training.folder` and
:func:`training.data.load_dataset` (which re-exports these names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gan.errors import UserError


class DataError(UserError):
    """A dataset cannot be read; the message says what to fix."""


class DataWarning(UserWarning):
    """Some input was skipped (e.g. undecodable images in a folder); the data is still usable."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor | None  # int64 [N] class indices, or None
    info: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)  # class names (index = label), if labelled

    def __len__(self) -> int:
        return int(self.images.shape[0])


def require_dir(directory: Path, what: str, fix: str) -> None:
    if not directory.exists():
        raise DataError(f"{what} {directory} does not exist; {fix}")
    if not directory.is_dir():
        raise DataError(f"{what} {directory} is not a directory; {fix}")
