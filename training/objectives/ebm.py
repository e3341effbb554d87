"""``gan-train --mode ebm`` (kind ``ebm``): D alone, trained the lecture's way, as an
energy-based model.

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
Grids, quick FID and D's real/fake gap use those samples. The checkpoint holds D alone (as the
discriminator), with its logits on held-out real images for ``/score``'s percentile.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from gan.models import to_model_range, to_uint8
from gan.samplers.ebm import EBMSearch, ebm_search, langevin_pixels
from training.objectives.base import Objective, register, with_memory_format

#: Images per Langevin search when drawing evaluation samples (memory stays small).
SEARCH_CHUNK = 500


@register("ebm")
class EBMObjective(Objective):
    """D and its optimiser, a replay buffer of negatives; it exports a frozen copy of D, the
    sampler."""

    hint: ClassVar[str] = "lower --lr-d or raise --ebm-alpha"

    def setup(self) -> None:
        cfg = self.cfg
        self.optimisers = {
            "opt_d": torch.optim.Adam(
                self.loop.d.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2)
            )
        }
        self.search = EBMSearch(cfg.ebm_steps, cfg.ebm_step_size, cfg.ebm_grad_clip, cfg.ebm_noise)
        self.sample_search = replace(self.search, steps=cfg.ebm_sample_steps or cfg.ebm_steps)
        self.shape = (self.mc.channels, self.mc.resolution, self.mc.resolution)
        self.ebm_gen = torch.Generator().manual_seed(cfg.seed + 5)
        size = cfg.ebm_buffer_size if cfg.ebm_buffer > 0 else 1
        self.buffer = to_uint8(self._uniform(size))  # uint8 [N, C, R, R]

    def _uniform(self, n: int) -> torch.Tensor:
        return torch.rand((n, *self.shape), generator=self.ebm_gen).mul_(2.0).sub_(1.0)

    def state(self) -> dict[str, Any]:
        return {"buffer": self.buffer, "ebm_gen": self.ebm_gen.get_state()}

    def load_state(self, s: dict[str, Any]) -> None:
        self.buffer = s["buffer"].clone()
        self.ebm_gen.set_state(s["ebm_gen"])

    def negatives(self, n: int) -> torch.Tensor:
        """``n`` negatives on D's device: Langevin search from the buffer or from noise; the
        buffer keeps the results."""
        cfg, d = self.cfg, self.loop.d
        idx = torch.randint(len(self.buffer), (n,), generator=self.ebm_gen)
        fresh = torch.rand(n, generator=self.ebm_gen) >= cfg.ebm_buffer  # [n]
        start = torch.where(
            fresh.view(-1, 1, 1, 1), self._uniform(n), to_model_range(self.buffer[idx])
        )

        def noise(t: int) -> torch.Tensor:
            return torch.randn((n, *self.shape), generator=self.ebm_gen)

        d.requires_grad_(False)  # gradients for the pixels only
        try:
            neg = langevin_pixels(d, start.to(self.loop.device), self.search, noise)
        finally:
            d.requires_grad_(True)
        if cfg.ebm_buffer > 0:
            self.buffer[idx] = to_uint8(neg).cpu()
        return neg

    def step(self) -> dict[str, float]:
        cfg, loop = self.cfg, self.loop
        real_u8, _ = loop.batches.next()
        real = loop.prep(real_u8)
        neg = self.negatives(cfg.batch_size)
        with loop.autocast():
            r = loop.d(real).float()
            f = loop.d(neg).float()
        loss = f.mean() - r.mean() + cfg.ebm_alpha * (r.pow(2).mean() + f.pow(2).mean())
        opt = self.optimisers["opt_d"]
        opt.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        if cfg.ebm_clip_norm > 0:
            loop.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(loop.d.parameters(), cfg.ebm_clip_norm)
        loop.scaler.step(opt)
        loop.scaler.update()
        return {"d_loss": loss.item(), "d_real": r.mean().item(), "d_fake": f.mean().item()}

    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        return {
            "d": f"{stats['d_loss']:.3f}",
            "Dx": f"{stats['d_real']:.2f}",
            "Dneg": f"{stats['d_fake']:.2f}",
        }

    # ---- sampling: the checkpoint's own search on a frozen copy of D ------------------------

    def export(self) -> nn.Module:
        d = with_memory_format(copy.deepcopy(self.loop.d), torch.contiguous_format).eval()
        for p in d.parameters():
            p.requires_grad_(False)
        return d

    def samples(
        self, exported: nn.Module, seeds: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts = [
            ebm_search(exported, seeds[i : i + SEARCH_CHUNK], self.mc, self.sample_search).images
            for i in range(0, len(seeds), SEARCH_CHUNK)
        ]
        images = torch.cat(parts) if parts else torch.empty(0, *self.shape, dtype=torch.uint8)
        return images, None

    def checkpoint_parts(
        self, exported: nn.Module, d: nn.Module | None
    ) -> tuple[dict[str, Any], dict[str, nn.Module | None]]:
        extra = {"kind": self.kind.name, "ebm": self.sample_search}
        return extra, {"generator": None, "discriminator": d}
