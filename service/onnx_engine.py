"""``GAN_ENGINE=onnxruntime``: plain G and D forwards through onnxruntime sessions.

At start-up the checkpoint's G and D (those its kind has) are exported to ONNX in memory
(:func:`gan.onnx_export.export_checkpoint`; nothing is written, so a read-only checkpoint
folder serves as well), checked against torch on a few seeded rows and swapped into the
:class:`~service.inference.InferenceEngine` as its forward modules
(:meth:`~service.inference.InferenceEngine.use_forwards`). Everything around the forwards stays
as with torch: the seeds and latents, truncation, batching, the step machines of drs and mh,
pixel conversion and PNG encoding. What needs gradients (langevin, pixel_ascent, an ebm's
Langevin search, ``POST /project``) and the encoder keep the torch networks, loaded beside the
sessions; so do the rows of an interpolation that mix two classes.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from service.inference import StartupError

if TYPE_CHECKING:
    from service.inference import InferenceEngine

logger = logging.getLogger("service")

#: The setting's values.
ENGINES = ("torch", "onnxruntime")


def check_onnxruntime_installed() -> None:
    """Fail fast, before any checkpoint is read, when the packages are missing."""
    from gan.onnx_export import OnnxUnavailable, require

    try:
        require("onnxruntime", "onnx", "onnxscript")
    except OnnxUnavailable as exc:
        raise StartupError(f"GAN_ENGINE=onnxruntime: {exc}") from None


def use_onnxruntime(engine: InferenceEngine, threads: int) -> None:
    """Export the engine's G and D, check them and make them its forward modules; every problem
    is one :class:`StartupError` line."""
    from gan.errors import UserError
    from gan.onnx_export import PARITY_ROWS, PARITY_TOLERANCE, export_checkpoint
    from gan.onnx_runtime import OnnxDiscriminator, OnnxGenerator, max_abs_difference

    if engine.device != "cpu":
        raise StartupError(
            f"GAN_ENGINE=onnxruntime runs on the CPU (onnxruntime's CPU provider), but "
            f"GAN_DEVICE={engine.device}; set GAN_DEVICE=cpu, or GAN_ENGINE=torch for {engine.device}"
        )
    check_onnxruntime_installed()
    ckpt = engine.checkpoint
    started = time.perf_counter()
    try:
        graphs = export_checkpoint(ckpt)
    except UserError as exc:
        raise StartupError(f"GAN_ENGINE=onnxruntime: {ckpt.path}: {exc}") from exc
    exported = time.perf_counter() - started
    generator = discriminator = None
    diffs: dict[str, float] = {}
    try:
        if "generator" in graphs:
            generator = OnnxGenerator(graphs["generator"], threads, fallback=ckpt.generator)
            assert ckpt.generator is not None
            diffs["generator"] = max_abs_difference(
                ckpt.generator, generator, ckpt.model_config, PARITY_ROWS
            )
        if "discriminator" in graphs:
            discriminator = OnnxDiscriminator(graphs["discriminator"], threads)
            assert ckpt.discriminator is not None
            diffs["discriminator"] = max_abs_difference(
                ckpt.discriminator, discriminator, ckpt.model_config, PARITY_ROWS
            )
    except Exception as exc:  # onnxruntime's own error types (Fail, InvalidGraph, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StartupError(
            f"GAN_ENGINE=onnxruntime: {ckpt.path}: onnxruntime cannot run the exported graphs: "
            f"{first}"
        ) from exc
    for network, diff in diffs.items():
        if not diff <= PARITY_TOLERANCE:
            raise StartupError(
                f"GAN_ENGINE=onnxruntime: {ckpt.path}: the {network}'s ONNX graph differs from "
                f"torch by {diff:.3g} (more than {PARITY_TOLERANCE:g}) on {PARITY_ROWS} rows; "
                "serve it with GAN_ENGINE=torch"
            )
    engine.use_forwards(generator, discriminator, "onnxruntime")
    logger.info(
        "onnxruntime engine ready",
        extra={
            "export_s": round(exported, 2),
            "networks": list(graphs),
            "max_abs_diff_to_torch": diffs,
        },
    )
