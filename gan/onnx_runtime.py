"""G and D run by onnxruntime behind ``nn.Module`` faces: :class:`OnnxGenerator` and
:class:`OnnxDiscriminator` take and return torch tensors exactly as the networks they were
exported from (:mod:`gan.onnx_export`), so :func:`gan.sampling.generate` and
:func:`gan.sampling.score`, and everything built on them, run them unchanged.

They are forward-only: no gradients flow through an onnxruntime session, so whatever needs
them (langevin, pixel_ascent, projection) keeps the torch networks. A conditional generator's
rows that mix two classes (:class:`~gan.classmix.ClassMix`, interpolation across classes) are
no graph input either: rows whose mix is exactly one class (both ends of a path) run through
onnxruntime with that class, the others through the torch generator given as ``fallback``.

Needs ``onnxruntime`` (``pip install gan-serve[onnx]``), imported when a session is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from gan.classmix import Classes, ClassMix
from gan.onnx_export import OnnxGraph, example_inputs, require

if TYPE_CHECKING:
    from gan.models import ModelConfig


def make_session(graph: OnnxGraph, threads: int = 0) -> Any:
    """An onnxruntime CPU session of ``graph``: ``threads`` intra-op threads (0: onnxruntime's
    default, one per physical core), one inter-op thread (runs are sequential) and no
    spin-waiting between runs, so idle threads leave the cores to the rest of the process."""
    require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(graph.model, options, providers=["CPUExecutionProvider"])


def _numpy(t: torch.Tensor, dtype: type[np.generic]) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


class OnnxModule(nn.Module):
    """One graph's session; ``forward`` feeds torch tensors in and returns its one output as
    a float32 torch tensor (CPU)."""

    def __init__(self, graph: OnnxGraph, threads: int = 0) -> None:
        super().__init__()
        self.graph = graph
        self.session = make_session(graph, threads)
        self._inputs = graph.input_names
        self._output = graph.output_names[0]

    def run(self, *inputs: torch.Tensor) -> torch.Tensor:
        feed = {
            name: _numpy(t, np.int64 if name == "labels" else np.float32)
            for name, t in zip(self._inputs, inputs, strict=True)
        }
        (out,) = self.session.run([self._output], feed)
        return torch.from_numpy(out)


class OnnxGenerator(OnnxModule):
    """``z [B, z_dim]`` (and classes ``[B]`` or a class mix) -> images ``[B, C, R, R]``."""

    def __init__(
        self, graph: OnnxGraph, threads: int = 0, *, fallback: nn.Module | None = None
    ) -> None:
        super().__init__(graph, threads)
        self.conditional = "labels" in self._inputs
        # Not a registered submodule: this module has no parameters of its own, and the torch
        # generator stays where it is (eval mode, the checkpoint's).
        self._fallback = [fallback] if fallback is not None else []

    def forward(self, z: torch.Tensor, y: Classes | None = None) -> torch.Tensor:
        if not self.conditional:
            return self.run(z)
        if y is None:
            raise ValueError("this generator is class-conditional: pass class indices y")
        if not isinstance(y, ClassMix):
            return self.run(z, y)
        # Rows whose embedding is exactly one class's (gan.classmix.embed_classes): b where
        # t == 1 or a == b, a where t == 0; the others are mixes.
        to_b = (y.t == 1) | (y.a == y.b)
        pure = to_b | (y.t == 0)
        labels = torch.where(to_b, y.b, y.a)
        if bool(pure.all()):
            return self.run(z, labels)
        if not self._fallback:
            raise ValueError("an ONNX generator takes one class per row, not a mix of two")
        mixed = ~pure
        mixes = ClassMix(y.a[mixed], y.b[mixed], y.t[mixed])
        from_torch = self._fallback[0](z[mixed], mixes).float().cpu()
        if not bool(pure.any()):
            return from_torch
        from_onnx = self.run(z[pure], labels[pure])
        out = from_onnx.new_empty((int(z.shape[0]), *from_onnx.shape[1:]))
        out[pure] = from_onnx
        out[mixed] = from_torch
        return out


class OnnxDiscriminator(OnnxModule):
    """images ``[B, C, R, R]`` in [-1, 1] (and classes ``[B]``) -> logits ``[B]``."""

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if "labels" not in self._inputs:
            return self.run(x)
        if y is None:
            raise ValueError("this discriminator is class-conditional: pass class indices y")
        return self.run(x, y)


def max_abs_difference(
    module: nn.Module, onnx_module: OnnxModule, model_config: ModelConfig, rows: int, seed: int = 0
) -> float:
    """The largest absolute difference between the torch module's outputs and its graph's on
    ``rows`` seeded inputs (:func:`gan.onnx_export.example_inputs`)."""
    args = example_inputs(model_config, onnx_module.graph.network, rows, seed)
    with torch.inference_mode():
        expected = module(*args).float()
    got = onnx_module.run(*args)
    if tuple(got.shape) != tuple(expected.shape):
        raise ValueError(
            f"the {onnx_module.graph.network}'s graph gives shape {tuple(got.shape)}, torch "
            f"{tuple(expected.shape)}"
        )
    return float((got - expected).abs().max())
