"""What the peer servers (BentoML, TorchServe) share: our checkpoint, our preprocessing, our
latents and our PNG encoding, so that they do the same work per request as gan-serve.

The peers run in their own virtual environments (bench/peers/setup.sh) but import the model code
from this repository: the repository root goes on ``sys.path`` (``GAN_REPO_ROOT``, else two levels
up from this file) and the imports below (the shared core, ``gan/``) are the only place that
names our packages.

Environment read by the peers:

* ``GAN_PEER_CHECKPOINT``: the checkpoint directory to serve (required);
* ``GAN_PEER_TORCH_THREADS``: torch intra-op threads (default 1, gan-serve's default);
* ``GAN_REPO_ROOT``: this repository's root (TorchServe copies the handler and this file into
  its own model directory, so they cannot find the repository from their own location).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

REPO_ROOT = Path(os.environ.get("GAN_REPO_ROOT") or Path(__file__).resolve().parents[2])
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# --- the one place that names our model code -------------------------------------------------
from gan.checkpoint import load_checkpoint  # noqa: E402
from gan.io import make_grid  # noqa: E402
from gan.models import to_model_range, to_uint8  # noqa: E402
from gan.preprocess import open_image, to_model_pixels  # noqa: E402

# ----------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    import torch

CHECKPOINT_ENV = "GAN_PEER_CHECKPOINT"
THREADS_ENV = "GAN_PEER_TORCH_THREADS"
#: Rows per forward pass at most, as gan-serve's GAN_MAX_BATCH default.
MAX_ROWS = 64
#: Requests per batch of the peers (gan-serve: GAN_MAX_BATCH=64; TorchServe: config.properties).
MAX_BATCH = 64
#: BentoML's max_latency_ms is not a batching delay but a latency budget: its adaptive
#: dispatcher picks the wait itself and answers 503 to requests it predicts will miss the budget
#: (with 2 ms it shed a third of the requests at 8 clients). gan-serve's equivalent is its
#: queue timeout, GAN_REQUEST_TIMEOUT_S = 30 s.
BENTOML_MAX_LATENCY_MS = 30_000
#: Seeds wrap around here, as in gan.latents (2**53: exact in JSON numbers).
SEED_LIMIT = 2**53
#: gan-serve's per-image upload limit (GAN_MAX_IMAGE_PIXELS default).
MAX_IMAGE_PIXELS = 4_194_304


def generate_request(body: Any) -> tuple[int, int, str]:
    """``(seed, n, format)`` of a ``/generate`` JSON body, checked as every peer checks it:
    ``n`` in 1..MAX_BATCH, ``format`` png (exactly one image) or grid; ValueError otherwise
    (each peer turns it into its own 400)."""
    try:
        seed, n, fmt = int(body.get("seed", 0)), int(body.get("n", 1)), str(body["format"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad request: {exc!r}") from exc
    check_generate(n, fmt)
    return seed, n, fmt


def check_generate(n: int, fmt: str) -> None:
    """ValueError unless ``n`` is in 1..MAX_BATCH and ``fmt`` is png (n = 1) or grid."""
    if not 1 <= n <= MAX_BATCH:
        raise ValueError(f"n must be 1..{MAX_BATCH}")
    if fmt not in ("png", "grid") or (fmt == "png" and n != 1):
        raise ValueError("format: png (exactly one image) or grid")


def configure_torch() -> int:
    """gan-serve's thread settings: 1 intra-op and 1 inter-op thread unless told otherwise."""
    import torch

    threads = int(os.environ.get(THREADS_ENV, "1"))
    if threads > 0:
        torch.set_num_threads(threads)
    # Refused once set, or after parallel work ran in this process: torch keeps its value then.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return threads


@dataclass
class PeerModel:
    """G and D of one checkpoint, in eval mode, with the service's input and output handling."""

    generator: Any
    discriminator: Any
    z_dim: int
    resolution: int
    channels: int

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """float32 latents ``[B, z_dim]`` -> uint8 images ``[B, C, R, R]``, MAX_ROWS at a time."""
        import torch

        with torch.inference_mode():
            parts = [to_uint8(self.generator(c)) for c in torch.split(z.float(), MAX_ROWS)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def score(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 model pixels ``[B, C, R, R]`` -> float32 logits ``[B]``, MAX_ROWS at a time."""
        import torch

        with torch.inference_mode():
            parts = [
                self.discriminator(to_model_range(c)).float() for c in torch.split(pixels, MAX_ROWS)
            ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def checkpoint_path() -> Path:
    value = os.environ.get(CHECKPOINT_ENV)
    if not value:
        raise RuntimeError(f"set {CHECKPOINT_ENV} to the checkpoint directory to serve")
    return Path(value)


def load_model(path: Path | None = None) -> PeerModel:
    """Load (with our own loader: hashes, shapes, finiteness checked) and warm up at batch 64."""
    import torch

    ckpt = load_checkpoint(path if path is not None else checkpoint_path())
    mc = ckpt.model_config
    model = PeerModel(
        ckpt.generator.eval(), ckpt.discriminator.eval(), mc.z_dim, mc.resolution, mc.channels
    )
    model.score(model.generate(torch.zeros(MAX_ROWS, mc.z_dim)))  # as gan-serve's warm-up
    return model


def latents(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """float32 ``[n, z_dim]``: image i uses seed S + i (gan.latents' contract, no
    truncation): ``torch.randn(z_dim, generator=torch.Generator().manual_seed(S + i))``."""
    import torch

    rows = []
    for i in range(n):
        gen = torch.Generator(device="cpu").manual_seed((seed + i) % SEED_LIMIT)
        rows.append(torch.randn(z_dim, generator=gen, dtype=torch.float32))
    return torch.stack(rows)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` -> PNG, as gan.io.encode_png (same bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def images_png(images: torch.Tensor, fmt: str) -> bytes:
    """uint8 ``[B, C, R, R]`` -> one PNG: the image itself (``png``, B == 1) or a grid of
    ceil(sqrt(B)) columns with 2 px black padding (``grid``), as gan-serve's /generate."""
    if fmt == "png":
        if images.shape[0] != 1:
            raise ValueError(
                f"format 'png' returns exactly one image, this request makes {images.shape[0]}"
            )
        arr = images[0].numpy()
        return encode_png(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    if fmt == "grid":
        columns = max(1, math.ceil(math.sqrt(int(images.shape[0]))))
        return encode_png(make_grid(images, nrow=columns))
    raise ValueError(f"format must be 'png' or 'grid', got {fmt!r}")


def inline_generate(n: int, resolution: int) -> bool:
    """gan-serve draws latents and encodes PNGs on its event loop up to 8 28x28 images."""
    return n * resolution * resolution <= 8 * 28 * 28


def decode_pixels(data: bytes, resolution: int, channels: int) -> np.ndarray:
    """Upload bytes -> uint8 ``[C, R, R]``: decode (first frame, pixel limit) and
    gan.preprocess.to_model_pixels, the conversion gan-serve and training use."""
    with open_image(data, max_pixels=MAX_IMAGE_PIXELS) as img:
        return to_model_pixels(img, resolution, channels)


def score_result(logit: float) -> dict[str, float]:
    """One image's answer: D's logit and its sigmoid."""
    p = 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))
    return {"logit": logit, "probability": p}
