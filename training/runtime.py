"""Where and how a run computes: torch threads, the device, the precision, and the shuffled
batches whose order is part of the resume state (shared by the loop and its DDP variant)."""

from __future__ import annotations

from typing import Any

import torch

from training.config import TrainingError


def configure_torch(threads: int) -> None:
    """CPU speed settings: thread count and flush-to-zero for denormals."""
    if threads > 0:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


class Batches:
    """Shuffled mini-batches from an in-memory uint8 tensor; order is part of the resume state."""

    def __init__(
        self, images: torch.Tensor, batch_size: int, seed: int, labels: torch.Tensor | None = None
    ) -> None:
        if len(images) < batch_size:
            raise TrainingError(
                f"the dataset has {len(images)} images, fewer than --batch-size {batch_size}"
            )
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(images), generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(uint8 images [B, C, R, R], their labels [B] or None)."""
        if self.pos + self.batch_size > len(self.perm):
            self.perm = torch.randperm(len(self.images), generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.images[idx], None if self.labels is None else self.labels[idx]

    def state(self) -> dict[str, Any]:
        return {
            "gen": self.gen.get_state(),
            "perm": self.perm,
            "pos": self.pos,
            "epoch": self.epoch,
        }

    def load(self, s: dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos, self.epoch = s["perm"], int(s["pos"]), int(s["epoch"])


def resolve_device(name: str) -> torch.device:
    """``--device``: auto picks CUDA when present, else the CPU; an unavailable one is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda, but no CUDA GPU is available here; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("--device mps, but MPS is not available here; use --device cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``--precision``: None for fp32, else the autocast dtype (GPUs only)."""
    if name == "fp32":
        return None
    if device.type == "cpu":
        raise TrainingError(
            f"--precision {name} uses GPU autocast; on the CPU train in fp32 (the default)"
        )
    return torch.bfloat16 if name == "bf16" else torch.float16
