"""``gan-train`` (``--mode gan``, kind ``gan``): the adversarial game, G and D.

Each iteration runs ``d_steps`` updates of D on real images against ``G(z).detach()``, then one
update of G with D's parameters frozen (the loss of ``--loss``, training/losses.py). The loop
keeps an EMA copy of G for sampling and export.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from training.losses import build_loss
from training.objectives.base import Objective, register


@register("gan")
class GANObjective(Objective):
    """Fix G, update D; fix D, update G."""

    hint: ClassVar[str] = "lower the learning rates or enable --r1-gamma"

    def setup(self) -> None:
        cfg, loop = self.cfg, self.loop
        betas = (cfg.beta1, cfg.beta2)
        self.optimisers = {
            "opt_g": torch.optim.Adam(loop.g.parameters(), lr=cfg.lr_g, betas=betas),
            "opt_d": torch.optim.Adam(loop.d.parameters(), lr=cfg.lr_d, betas=betas),
        }
        self.loss = build_loss(cfg.loss, r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every)

    def step(self) -> dict[str, float]:
        cfg, loop = self.cfg, self.loop
        opt_g, opt_d = self.optimisers["opt_g"], self.optimisers["opt_d"]
        d_train, g_train = loop.train_networks["d"], loop.train_networks["g"]
        stats: dict[str, float] = {}
        # ---- fix G, update D: maximise log D(x) + log(1 - D(G(z))) ----
        loop.d.requires_grad_(True)
        for k in range(cfg.d_steps):
            real_u8, real_y = loop.batches.next()
            real = loop.prep(real_u8)
            real_y = None if real_y is None else real_y.to(loop.device)
            z, fake_y = loop._z(cfg.batch_size)
            with torch.no_grad(), loop.autocast():
                fake = loop.g(z, fake_y)
            d_iter = loop.step * cfg.d_steps + k
            with loop.autocast():
                loss, d_stats = self.loss.d_objective(
                    d_train, loop.augment(real), loop.augment(fake.float()), d_iter, real_y, fake_y
                )
            opt_d.zero_grad(set_to_none=True)
            loop.scaler.scale(loss).backward()
            loop.scaler.step(opt_d)
            loop.scaler.update()
            stats.update(d_stats)
            stats["d_loss"] = loss.item()
            if loop.ada is not None and self.loss.last_real_logits is not None:
                loop.ada.observe(self.loss.last_real_logits)
                stats["ada_p"], stats["ada_rt"] = loop.ada.p, loop.ada.r_t
        # ---- fix D, update G: maximise log D(G(z)) (or the chosen variant) ----
        loop.d.requires_grad_(False)
        z, fake_y = loop._z(cfg.batch_size)
        with loop.autocast():
            fake = g_train(z, fake_y)
            if self.loss.needs_real_for_g:  # a relativistic loss pairs G's images with reals
                loss_g = self.loss.g_objective(
                    loop.d, loop.augment(fake), fake_y, loop.augment(real), real_y
                )
            else:
                loss_g = self.loss.g_objective(loop.d, loop.augment(fake), fake_y)
        opt_g.zero_grad(set_to_none=True)
        loop.scaler.scale(loss_g).backward()
        loop.scaler.step(opt_g)
        loop.scaler.update()
        stats["g_loss"] = loss_g.item()
        return stats

    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        return {
            "d": f"{stats['d_loss']:.3f}",
            "g": f"{stats['g_loss']:.3f}",
            "Dx": f"{stats['d_real']:.2f}",
            "DGz": f"{stats['d_fake']:.2f}",
        }
