"""Augmentation of real AND fake images before D: DiffAugment (Zhao et al. 2020), fixed, and
ADA (Karras et al. 2020, :class:`AdaptiveAugment`), whose strength follows D's overfitting.

With a few hundred to a few thousand training images D memorises the reals and training
collapses; augmenting both what D sees of the data and of G's samples (with the same random
operations, differentiably, so G's gradient passes through) keeps D from overfitting without
teaching G to make augmented images. Off by default (``gan-train --augment``).

Policies, applied in this order to images in [-1, 1] ``[B, C, H, W]``:

* ``color``: brightness (add U(-0.5, 0.5)), saturation (scale the deviation from the per-pixel
  channel mean by U(0, 2)), contrast (scale the deviation from the image mean by U(0.5, 1.5));
* ``translation``: shift by up to 1/8 of the size in x and y, filling with -1 (black);
* ``cutout``: set a random square of half the size to 0 (mid-gray).

``--augment-policies`` picks a subset (all three by default; a new ``--conditional`` run on a
folder under 10,000 images leaves out cutout, which hides most of a small object:
docs/training.md, "Small folders").

Randomness comes from a ``torch.Generator`` the trainer owns and saves, so runs stay
reproducible and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _u(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, 1, 1, 1, generator=gen) * (high - low) + low).to(device)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + _u(n, -0.5, 0.5, gen, dev)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _u(n, 0.0, 2.0, gen, dev) + mean  # saturation (no-op for gray)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _u(n, 0.5, 1.5, gen, dev) + mean  # contrast


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    ty = torch.randint(-sy, sy + 1, (n,), generator=gen).tolist()
    tx = torch.randint(-sx, sx + 1, (n,), generator=gen).tolist()
    padded = F.pad(x, (sx, sx, sy, sy), value=-1.0)  # [B, C, H + 2sy, W + 2sx]
    rows = [
        padded[i, :, sy - ty[i] : sy - ty[i] + h, sx - tx[i] : sx - tx[i] + w] for i in range(n)
    ]
    return torch.stack(rows)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (n,), generator=gen)
    cx = torch.randint(0, w + 1 - cw % 2, (n,), generator=gen)
    ys = torch.arange(h)[None, :, None]
    xs = torch.arange(w)[None, None, :]
    inside = ((ys - cy[:, None, None]).abs() < ch / 2) & ((xs - cx[:, None, None]).abs() < cw / 2)
    return x * (~inside).to(x.dtype).to(x.device)[:, None]  # cut squares go to 0 (mid-gray)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policies(text: str) -> tuple[str, ...]:
    """``--augment-policies``' comma-separated list -> the policies, in :data:`POLICIES`' order
    (the order they are applied in); unknown, repeated or no names raise ``ValueError``."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(
            f"--augment-policies takes one or more of {', '.join(POLICIES)}, comma-separated, "
            f"each once; got {text!r}"
        )
    return tuple(n for n in POLICIES if n in names)


def diff_augment(
    x: torch.Tensor, gen: torch.Generator, policies: tuple[str, ...] = POLICIES
) -> torch.Tensor:
    """Apply the policies to a batch; differentiable with respect to ``x``."""
    for name in policies:
        x = _OPS[name](x, gen)
    return x


# --------------------------------------------------------------------------------------------
# ADA: adaptive discriminator augmentation (Karras et al. 2020)
# --------------------------------------------------------------------------------------------

#: ADA's transforms, each applied to an image with probability p, in this order. None leaks
#: into G's samples as long as p < 1: an augmented image is still, with probability 1 - p, the
#: image itself, so the augmented distribution determines the clean one.
ADA_TRANSFORMS = ("xflip", "translation", "brightness", "contrast", "saturation", "cutout")


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.to(a.device)[:, None, None, None], a, b)


def _translate_reflect(
    x: torch.Tensor, ty: list[int], tx: list[int], sy: int, sx: int
) -> torch.Tensor:
    h, w = x.shape[2:]
    padded = F.pad(x, (sx, sx, sy, sy), mode="reflect")  # [B, C, H + 2sy, W + 2sx]
    rows = [
        padded[i, :, sy - ty[i] : sy - ty[i] + h, sx - tx[i] : sx - tx[i] + w]
        for i in range(x.shape[0])
    ]
    return torch.stack(rows)


class AdaptiveAugment:
    """ADA: augment real and fake images before D with a probability ``p`` that follows D's
    overfitting.

    The heuristic ``r_t = E[sign(D(real))]`` is near 0 while D cannot tell the training images
    from the rest and near 1 when it has memorised them; every ``interval`` D steps ``p`` moves
    up when ``r_t`` is above ``target`` and down when below, by as much as would take it from 0
    to 1 in ``speed_images`` real images (ADA uses 500k images on GPUs; CPU runs see far fewer,
    so the default here is 20k). ``p`` is part of the resume state.
    """

    def __init__(
        self,
        *,
        target: float = 0.6,
        interval: int = 4,
        speed_images: int = 20_000,
        xflip: bool = False,
        p: float = 0.0,
    ) -> None:
        if not 0.0 < target < 1.0:
            raise ValueError(f"the ADA target must be in (0, 1), got {target}")
        self.target = target
        self.interval = max(1, interval)
        self.speed_images = max(1, speed_images)
        self.xflip = xflip
        self.p = float(p)
        self.r_t = 0.0
        self._sign_sum = 0.0
        self._count = 0
        self._steps = 0

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Each transform applied to each image with probability ``p``; differentiable."""
        p = self.p
        if p <= 0.0:
            return x
        n, _, h, w = x.shape
        dev = x.device

        def chosen() -> torch.Tensor:
            return torch.rand(n, generator=gen) < p

        if self.xflip:
            x = _where(chosen(), x.flip(3), x)
        mask = chosen()
        sy, sx = max(1, int(h * 0.125 + 0.5)), max(1, int(w * 0.125 + 0.5))
        ty = torch.randint(-sy, sy + 1, (n,), generator=gen).tolist()
        tx = torch.randint(-sx, sx + 1, (n,), generator=gen).tolist()
        if bool(mask.any()):
            x = _where(mask, _translate_reflect(x, ty, tx, sy, sx), x)
        mask = chosen()
        x = _where(mask, x + _u(n, -0.2, 0.2, gen, dev), x)  # brightness
        mask = chosen()
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = _where(mask, (x - mean) * torch.exp2(_u(n, -0.5, 0.5, gen, dev)) + mean, x)  # contrast
        mask = chosen()
        mean = x.mean(dim=1, keepdim=True)
        x = _where(
            mask, (x - mean) * torch.exp2(_u(n, -1.0, 1.0, gen, dev)) + mean, x
        )  # saturation
        mask = chosen()
        x = _where(mask, cutout(x, gen), x)
        return x

    def observe(self, real_logits: torch.Tensor) -> None:
        """Account for D's logits on a batch of real images; adjusts ``p`` every ``interval``."""
        signs = torch.sign(real_logits.detach().float())
        self._sign_sum += float(signs.sum())
        self._count += int(signs.numel())
        self._steps += 1
        if self._steps % self.interval:
            return
        self.r_t = self._sign_sum / max(1, self._count)
        direction = 1.0 if self.r_t > self.target else -1.0
        self.p = min(1.0, max(0.0, self.p + direction * self._count / self.speed_images))
        self._sign_sum, self._count = 0.0, 0

    def state_dict(self) -> dict[str, float | int]:
        return {
            "p": self.p,
            "r_t": self.r_t,
            "sign_sum": self._sign_sum,
            "count": self._count,
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.p = float(state["p"])
        self.r_t = float(state["r_t"])
        self._sign_sum = float(state["sign_sum"])
        self._count = int(state["count"])
        self._steps = int(state["steps"])
