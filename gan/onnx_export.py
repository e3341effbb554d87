"""A checkpoint's G and D as ONNX graphs: ``gan-export --format onnx`` and the service's
``GAN_ENGINE=onnxruntime`` both export through :func:`export_checkpoint`.

What a graph takes and gives (``B`` is a dynamic axis named ``batch``; every graph is opset
:data:`OPSET` of the default ``ai.onnx`` domain):

* ``generator.onnx``: ``z`` float32 ``[B, z_dim]`` (and ``labels`` int64 ``[B]``, the class
  indices, for a class-conditional model) -> ``images`` float32 ``[B, C, R, R]`` in the model
  range ``[-1, 1]`` (``gan.models.to_uint8`` turns them into pixels, as for torch);
* ``discriminator.onnx``: ``images`` float32 ``[B, C, R, R]`` in ``[-1, 1]`` (``x / 127.5 - 1``
  of uint8 pixels; and ``labels`` int64 ``[B]`` when conditional) -> ``logits`` float32 ``[B]``.

The generator is the checkpoint's (the EMA copy when training kept one, as the service uses it),
both networks in eval mode: BatchNorm uses its running statistics, so one row never depends on
the others. A class mix (:class:`~gan.classmix.ClassMix`, interpolation across classes) is no
graph input: its callers run those rows through torch (:mod:`gan.onnx_runtime`).

The exporter is ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript's op library),
the default since torch 2.9: it traces with a symbolic batch size and fails if the model
specialises on it, so a graph that exports is batch-generic; the older TorchScript exporter
only marks axes as dynamic, warns about what it baked in, and is deprecated for removal. It
needs ``onnx`` and ``onnxscript`` (``pip install gan-serve[onnx]``); nothing here imports them
before an export is asked for.

``gan-export`` writes a folder (:func:`write_onnx_folder`)::

    generator.onnx        absent for kind ebm (no G)
    discriminator.onnx    absent for kinds vae and ae (no D)
    config.json           the checkpoint's own, byte for byte: the folder describes its model
    onnx.json             format, opset, exporter and versions, each graph's file, SHA-256,
                          inputs and outputs, and the largest difference to torch measured

:func:`read_onnx_folder` reads one back with every hash checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from gan.errors import UserError
from gan.io import atomic_directory
from gan.kinds import Network, model_kind
from gan.runs import CONFIG_FILE

if TYPE_CHECKING:
    from gan.checkpoint import Checkpoint, CheckpointConfig
    from gan.models import ModelConfig

#: The ONNX operator set of every exported graph: the one onnxscript's torch op library is
#: written for (torch.onnx's TORCHLIB_OPSET), so no version conversion runs; onnxruntime runs it
#: from 1.14 on.
OPSET = 18
#: How the graphs are made (recorded in onnx.json).
EXPORTER = "torch.onnx.export(dynamo=True)"
#: The name of the dynamic batch axis of every input and output.
BATCH_AXIS = "batch"
FORMAT_NAME = "gan-onnx"
FORMAT_VERSION = 1
MANIFEST_FILE = "onnx.json"
ONNX_FILES: dict[Network, str] = {
    "generator": "generator.onnx",
    "discriminator": "discriminator.onnx",
}
#: The networks that have a graph, in the order they are exported.
EXPORTABLE: tuple[Network, ...] = ("generator", "discriminator")
#: The largest difference to torch an export may show on its check rows (images in [-1, 1]
#: and logits); one grey level is 1 / 127.5 = 0.0078.
PARITY_TOLERANCE = 1e-3
#: Rows of the check after an export (random latents or images, seeded).
PARITY_ROWS = 8
INSTALL_HINT = "pip install gan-serve[onnx]"


class OnnxUnavailable(UserError):
    """onnx, onnxscript or onnxruntime is not installed; the message says how to install it."""


class OnnxExportError(UserError):
    """A network could not be exported, or an export folder is not a valid one."""


def require(*modules: str) -> None:
    """Import each of ``modules`` (``onnx``, ``onnxscript``, ``onnxruntime``) or raise
    :class:`OnnxUnavailable` naming the missing ones and the extra that installs them."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise OnnxUnavailable(
            f"ONNX needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: {INSTALL_HINT}"
        )


# --------------------------------------------------------------------------------------------
# What each graph takes and gives
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph: its name, its shape (``"batch"`` for the dynamic axis)
    and its element type."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str  # "float32" or "int64"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def signature(
    model_config: ModelConfig, network: Network
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The inputs and outputs of ``network``'s graph for this model."""
    mc = model_config
    image = TensorSpec("images", (BATCH_AXIS, mc.channels, mc.resolution, mc.resolution), "float32")
    labels = (TensorSpec("labels", (BATCH_AXIS,), "int64"),) if mc.conditional else ()
    if network == "generator":
        return (TensorSpec("z", (BATCH_AXIS, mc.z_dim), "float32"), *labels), (image,)
    if network == "discriminator":
        return (image, *labels), (TensorSpec("logits", (BATCH_AXIS,), "float32"),)
    raise ValueError(f"no ONNX graph for the {network}")


def example_inputs(
    model_config: ModelConfig, network: Network, rows: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """Seeded inputs of ``network``'s graph: standard normal latents or uniform images in
    [-1, 1], and random classes for a conditional model."""
    mc = model_config
    gen = torch.Generator().manual_seed(seed)
    if network == "generator":
        x = torch.randn(rows, mc.z_dim, generator=gen)
    else:
        shape = (rows, mc.channels, mc.resolution, mc.resolution)
        x = torch.rand(shape, generator=gen).mul_(2).sub_(1)
    if not mc.conditional:
        return (x,)
    return x, torch.randint(0, mc.num_classes, (rows,), generator=gen, dtype=torch.int64)


@dataclass(frozen=True)
class OnnxGraph:
    """One exported network: its serialised ONNX model and what it takes and gives."""

    network: Network
    model: bytes
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file(self) -> str:
        return ONNX_FILES[self.network]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


class _Graph(nn.Module):
    """``network(x)`` or ``network(x, labels)``: the graph's inputs as named, positional
    arguments (torch.export names the ONNX inputs after them)."""

    def __init__(self, network: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.network = network
        self.conditional = conditional

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.network(x, labels) if self.conditional else self.network(x)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines, deprecation warnings of its dependencies and its notes on
    torchvision (not needed here) are nothing a user can act on."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        onnx_logger.setLevel(level)


def export_network(module: nn.Module, network: Network, model_config: ModelConfig) -> OnnxGraph:
    """``module`` (G or D of ``model_config``, on the CPU) as an ONNX graph with a dynamic batch
    axis; the module is put in eval mode (checkpoints load so). :class:`OnnxUnavailable` without
    onnx and onnxscript, :class:`OnnxExportError` when the exporter fails."""
    require("onnx", "onnxscript")
    inputs, outputs = signature(model_config, network)
    graph = _Graph(module, model_config.conditional).eval()
    # Batch 2, not 1: torch.export specialises a size-1 axis to a constant.
    args = example_inputs(model_config, network, 2)
    batch = torch.export.Dim(BATCH_AXIS)
    dynamic: dict[str, Any] = {"x": {0: batch}}
    if model_config.conditional:
        dynamic["labels"] = {0: batch}
    try:
        with _quiet_exporter():
            program = torch.onnx.export(
                graph,
                args,
                input_names=[t.name for t in inputs],
                output_names=[t.name for t in outputs],
                opset_version=OPSET,
                dynamo=True,
                dynamic_shapes=dynamic,
                verbose=False,
            )
        assert program is not None
        model = program.model_proto.SerializeToString()
    except (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxExportError(
            f"the {network} ({model_config.arch}) could not be exported to ONNX: {first}"
        ) from exc
    return OnnxGraph(network, model, inputs, outputs)


def exportable_networks(kind: str) -> tuple[Network, ...]:
    """The networks of ``kind`` that have a graph: G and D where it has them (an auto-encoder's
    decoder counts as G; encoders are not exported)."""
    networks = model_kind(kind).networks
    return tuple(n for n in EXPORTABLE if n in networks)


def export_checkpoint(
    checkpoint: Checkpoint, networks: Sequence[Network] | None = None
) -> dict[Network, OnnxGraph]:
    """The graphs of a loaded checkpoint's G and D (``networks``, default: those its kind has);
    :class:`OnnxExportError` for a network the kind lacks."""
    have = exportable_networks(checkpoint.kind)
    wanted = tuple(networks) if networks is not None else have
    if not wanted:
        raise OnnxExportError(
            f"{checkpoint.path}: {model_kind(checkpoint.kind).what()} has no generator or "
            "discriminator to export"
        )
    modules: dict[Network, nn.Module | None] = {
        "generator": checkpoint.generator,
        "discriminator": checkpoint.discriminator,
    }
    graphs: dict[Network, OnnxGraph] = {}
    for network in wanted:
        module = modules.get(network)
        if network not in have or module is None:
            raise OnnxExportError(
                f"{checkpoint.path}: {model_kind(checkpoint.kind).what()} has no {network}"
            )
        graphs[network] = export_network(module, network, checkpoint.model_config)
    return graphs


# --------------------------------------------------------------------------------------------
# The export folder
# --------------------------------------------------------------------------------------------


def manifest(
    checkpoint: Checkpoint,
    graphs: dict[Network, OnnxGraph],
    parity: dict[Network, float] | None = None,
) -> dict[str, Any]:
    """``onnx.json``: what the folder holds and how it was made."""
    import onnx
    import onnxscript

    files: dict[str, Any] = {}
    for network, graph in graphs.items():
        entry: dict[str, Any] = {
            "network": network,
            "sha256": graph.sha256,
            "bytes": len(graph.model),
            "inputs": [t.to_dict() for t in graph.inputs],
            "outputs": [t.to_dict() for t in graph.outputs],
        }
        if parity is not None and network in parity:
            entry["max_abs_diff_to_torch"] = parity[network]
            entry["parity_rows"] = PARITY_ROWS
        files[graph.file] = entry
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "opset": OPSET,
        "batch_axis": BATCH_AXIS,
        "exporter": EXPORTER,
        "versions": {
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxscript": getattr(onnxscript, "__version__", "unknown"),
        },
        "model_id": checkpoint.model_id,
        "checkpoint_hash": checkpoint.checkpoint_hash,
        "kind": checkpoint.kind,
        "conditional": checkpoint.model_config.conditional,
        "classes": list(checkpoint.config.classes),
        "files": files,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def check_output_folder(out: Path, checkpoint_path: Path) -> None:
    """``out`` may be new, empty or an earlier export (then replaced whole); anything else is
    a :class:`UserError`, so an export never replaces a folder of other files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the ONNX files")
    if out.resolve() == checkpoint_path.resolve():
        raise UserError(f"--out {out} is the checkpoint itself; give another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_FILE).is_file():
        raise UserError(
            f"--out {out} exists and holds other files (no {MANIFEST_FILE} of an earlier "
            "export); give a new or empty folder"
        )


def write_onnx_folder(
    out: str | os.PathLike[str],
    checkpoint: Checkpoint,
    graphs: dict[Network, OnnxGraph],
    parity: dict[Network, float] | None = None,
) -> dict[str, Any]:
    """Write the graphs, the checkpoint's config.json and ``onnx.json`` into ``out``
    atomically (a previous folder there is replaced only once all is written); returns the
    manifest."""
    info = manifest(checkpoint, graphs, parity)
    final = Path(out)
    try:
        with atomic_directory(final) as tmp:
            for graph in graphs.values():
                (tmp / graph.file).write_bytes(graph.model)
            shutil.copyfile(checkpoint.path / CONFIG_FILE, tmp / CONFIG_FILE)
            (tmp / MANIFEST_FILE).write_text(json.dumps(info, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {final}: {exc.strerror or exc}") from exc
    return info


def read_onnx_folder(
    path: str | os.PathLike[str],
) -> tuple[CheckpointConfig, dict[Network, OnnxGraph], dict[str, Any]]:
    """An export folder's model config (its config.json), graphs and manifest, every graph's
    SHA-256 checked against ``onnx.json``; :class:`OnnxExportError` on any problem."""
    from gan.checkpoint import CheckpointConfig, CheckpointError, check_format, read_json_object

    folder = Path(path)
    info = read_json_object(folder / MANIFEST_FILE, OnnxExportError)
    check_format(info, folder / MANIFEST_FILE, FORMAT_NAME, FORMAT_VERSION, OnnxExportError)
    try:
        config = CheckpointConfig.from_dict(
            read_json_object(folder / CONFIG_FILE, CheckpointError), str(folder / CONFIG_FILE)
        )
    except CheckpointError as exc:
        raise OnnxExportError(str(exc)) from exc
    files = info.get("files")
    if not isinstance(files, dict) or not files:
        raise OnnxExportError(f"{folder / MANIFEST_FILE}: 'files' lists no ONNX file")
    graphs: dict[Network, OnnxGraph] = {}
    for network in EXPORTABLE:
        name = ONNX_FILES[network]
        entry = files.get(name)
        if entry is None:
            continue
        try:
            model = (folder / name).read_bytes()
        except OSError as exc:
            raise OnnxExportError(f"{folder / name}: {exc.strerror or exc}") from exc
        graph = OnnxGraph(network, model, *signature(config.model, network))
        if not isinstance(entry, dict) or entry.get("sha256") != graph.sha256:
            raise OnnxExportError(
                f"{folder / name}: SHA-256 {graph.sha256[:12]}… does not match the one in "
                f"{MANIFEST_FILE}; the file is corrupted or was replaced"
            )
        graphs[network] = graph
    return config, graphs, info
