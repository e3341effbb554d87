"""``gan-train --mode ebm``: D alone, trained the lecture's way, as an energy-based model.

D's logit is the negative energy of an image. Each iteration (Du and Mordatch 2019; Nijkamp et
al. 2019):

1. "find the images D now likes best among the fakes": negatives come from short-run Langevin
   ascent of D's logit in pixel space (:func:`gan.samplers.ebm.langevin_pixels`: ``--ebm-steps``
   steps of size ``--ebm-step-size`` on the pixel gradient clipped to ``--ebm-grad-clip``, with
   noise ``--ebm-noise``), started for a share ``--ebm-buffer`` (default 95 %) of the batch from
   a persistent replay buffer of earlier negatives and for the rest from fresh uniform noise;
   the results go back into the buffer;
2. "score real images high, those low": D minimises ``mean D(neg) - mean D(real)`` plus
   ``--ebm-alpha`` times ``mean D(real)^2 + mean D(neg)^2`` (keeps the logits near 0, as those
   papers do), with its gradient norm clipped to ``--ebm-clip-norm``;
3. repeat.

The replay buffer (uint8, so it is stored exactly) and its random generator are part of the
training state: ``--resume`` continues bit for bit. Sampling the checkpoint is the same search
from uniform noise only, with ``--ebm-sample-steps`` steps (default 100) recorded in
its config (``ebm``), so every image seed gives the same image (:func:`gan.samplers.ebm.ebm_search`).
Grids, quick FID and D's real/fake gap use those samples. The checkpoint (kind ``ebm``) holds
D alone, with its logits on held-out real images for ``/score``'s percentile.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan.io import save_grid
from gan.latents import image_seeds
from gan.models import to_model_range, to_uint8
from gan.samplers.ebm import EBMSearch, ebm_search, langevin_pixels
from training.config import TrainConfig
from training.data import ImageData
from training.loop import EVAL_SEED, Trainer, check_finite, with_memory_format

#: Images per Langevin search when drawing evaluation samples (memory stays small).
SEARCH_CHUNK = 500


class EBMTrainer(Trainer):
    """The EBM's training step on :class:`Trainer`'s machinery (``self.d`` and ``self.opt_d``;
    G is unused). Its "exported generator" is a frozen copy of D, the sampler."""

    def __init__(self, cfg: TrainConfig, data: ImageData, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(cfg, data, out_dir, **kwargs)
        self.search = EBMSearch(cfg.ebm_steps, cfg.ebm_step_size, cfg.ebm_grad_clip, cfg.ebm_noise)
        self.sample_search = replace(self.search, steps=cfg.ebm_sample_steps or cfg.ebm_steps)
        self.shape = (self.mc.channels, self.mc.resolution, self.mc.resolution)
        self.ebm_gen = torch.Generator().manual_seed(cfg.seed + 5)
        size = cfg.ebm_buffer_size if cfg.ebm_buffer > 0 else 1
        self.buffer = to_uint8(self._uniform(size))  # uint8 [N, C, R, R]

    def _uniform(self, n: int) -> torch.Tensor:
        return torch.rand((n, *self.shape), generator=self.ebm_gen).mul_(2.0).sub_(1.0)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "buffer": self.buffer, "ebm_gen": self.ebm_gen.get_state()}

    def load_state(self, s: dict[str, Any]) -> None:
        super().load_state(s)
        self.buffer = s["buffer"].clone()
        self.ebm_gen.set_state(s["ebm_gen"])

    def negatives(self, n: int) -> torch.Tensor:
        """``n`` negatives on D's device: Langevin search from the buffer or from noise; the
        buffer keeps the results."""
        cfg = self.cfg
        idx = torch.randint(len(self.buffer), (n,), generator=self.ebm_gen)
        fresh = torch.rand(n, generator=self.ebm_gen) >= cfg.ebm_buffer  # [n]
        start = torch.where(
            fresh.view(-1, 1, 1, 1), self._uniform(n), to_model_range(self.buffer[idx])
        )

        def noise(t: int) -> torch.Tensor:
            return torch.randn((n, *self.shape), generator=self.ebm_gen)

        self.d.requires_grad_(False)  # gradients for the pixels only
        try:
            neg = langevin_pixels(self.d, start.to(self.device), self.search, noise)
        finally:
            self.d.requires_grad_(True)
        if cfg.ebm_buffer > 0:
            self.buffer[idx] = to_uint8(neg).cpu()
        return neg

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        real_u8, _ = self.batches.next()
        real = self._prep(real_u8)
        neg = self.negatives(cfg.batch_size)
        with self._autocast():
            r = self.d(real).float()
            f = self.d(neg).float()
        loss = f.mean() - r.mean() + cfg.ebm_alpha * (r.pow(2).mean() + f.pow(2).mean())
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.ebm_clip_norm > 0:
            self.scaler.unscale_(self.opt_d)
            torch.nn.utils.clip_grad_norm_(self.d.parameters(), cfg.ebm_clip_norm)
        self.scaler.step(self.opt_d)
        self.scaler.update()
        self.step += 1
        stats = {"d_loss": loss.item(), "d_real": r.mean().item(), "d_fake": f.mean().item()}
        return check_finite(stats, self.step, "lower --lr-d or raise --ebm-alpha")

    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        return {
            "d": f"{stats['d_loss']:.3f}",
            "Dx": f"{stats['d_real']:.2f}",
            "Dneg": f"{stats['d_fake']:.2f}",
        }

    # ---- sampling: the checkpoint's own search on a frozen copy of D ------------------------

    def export_generator(self) -> nn.Module:
        d = with_memory_format(copy.deepcopy(self.d), torch.contiguous_format).eval()
        for p in d.parameters():
            p.requires_grad_(False)
        return d

    def _search(self, d: nn.Module, seeds: list[int]) -> torch.Tensor:
        parts = [
            ebm_search(d, seeds[i : i + SEARCH_CHUNK], self.mc, self.sample_search).images
            for i in range(0, len(seeds), SEARCH_CHUNK)
        ]
        return torch.cat(parts) if parts else torch.empty(0, *self.shape, dtype=torch.uint8)

    def save_samples(self, g: nn.Module | None = None) -> Path:
        d = g if g is not None else self.export_generator()
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        save_grid(self._search(d, list(self.grid_seeds)), path, nrow=self.grid_columns)
        return path

    def eval_images(self, g: nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._search(g, list(image_seeds(EVAL_SEED, n))), None

    def checkpoint_parts(
        self, g: nn.Module, d: nn.Module
    ) -> tuple[dict[str, Any], dict[str, nn.Module | None]]:
        extra = {"kind": "ebm", "ebm": self.sample_search}
        return extra, {"generator": None, "discriminator": d}
