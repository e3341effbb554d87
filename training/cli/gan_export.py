"""``gan-export``: a checkpoint's G and D as ONNX files (:mod:`gan.onnx_export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.cli.common import CliParser, apply_threads, run_command

FORMATS = ("onnx",)


def build_export_parser() -> argparse.ArgumentParser:
    from gan.onnx_export import BATCH_AXIS, OPSET

    p = CliParser(
        prog="gan-export",
        description="Export a checkpoint's generator and discriminator (those its kind has) to "
        f"ONNX (opset {OPSET}, a dynamic '{BATCH_AXIS}' axis): generator.onnx takes z "
        "[B, z_dim] float32 (and labels [B] int64 for a class-conditional model) and gives "
        "images [B, C, R, R] float32 in [-1, 1]; discriminator.onnx takes images (and labels) "
        "and gives logits [B]. The folder also gets the checkpoint's config.json and onnx.json "
        "(opset, inputs and outputs, SHA-256 of each file, the difference to torch measured "
        "with onnxruntime). Needs pip install gan-serve[onnx].",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    p.add_argument(
        "--format", choices=FORMATS, default="onnx", help="what to export to (onnx, the default)"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder to write (new, empty or an earlier gan-export folder, replaced whole)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def export_cli(argv: list[str] | None = None) -> int:
    from gan.checkpoint import load_checkpoint
    from gan.errors import UserError
    from gan.kinds import Network, model_kind
    from gan.onnx_export import (
        MANIFEST_FILE,
        OPSET,
        PARITY_ROWS,
        PARITY_TOLERANCE,
        check_output_folder,
        export_checkpoint,
        exportable_networks,
        require,
        write_onnx_folder,
    )
    from gan.runs import resolve_checkpoint

    args = build_export_parser().parse_args(argv)
    apply_threads(args.threads)
    checkpoint, note = resolve_checkpoint(args.checkpoint)
    if note:
        print(note)
    check_output_folder(args.out, checkpoint)
    ck = load_checkpoint(checkpoint)  # a broken checkpoint is reported first
    require("onnx", "onnxscript", "onnxruntime")
    from gan.onnx_runtime import OnnxDiscriminator, OnnxGenerator, OnnxModule, max_abs_difference

    declared = model_kind(ck.kind)
    networks = exportable_networks(ck.kind)
    missing = [n for n in ("generator", "discriminator") if n not in networks]
    graphs = export_checkpoint(ck, networks)
    parity: dict[Network, float] = {}
    for network, graph in graphs.items():
        module = ck.generator if network == "generator" else ck.discriminator
        assert module is not None
        runner: OnnxModule = (
            OnnxGenerator(graph) if network == "generator" else OnnxDiscriminator(graph)
        )
        parity[network] = max_abs_difference(module, runner, ck.model_config, PARITY_ROWS)
        if not parity[network] <= PARITY_TOLERANCE:
            raise UserError(
                f"{checkpoint}: the {network}'s ONNX graph differs from torch by "
                f"{parity[network]:.3g} (more than {PARITY_TOLERANCE:g}) on {PARITY_ROWS} rows; "
                "nothing was written"
            )
    write_onnx_folder(args.out, ck, graphs, parity)
    for network, graph in graphs.items():
        names = f"{', '.join(graph.input_names)} -> {', '.join(graph.output_names)}"
        print(
            f"{args.out / graph.file}: {network} ({names}), {_size(len(graph.model))}, "
            f"sha256 {graph.sha256[:16]}, max |onnxruntime - torch| {parity[network]:.2g} on "
            f"{PARITY_ROWS} rows"
        )
    if missing:
        print(f"no {' or '.join(missing)}: {declared.what()}")
    print(
        f"wrote {ck.model_id} as ONNX opset {OPSET} to {args.out} (with config.json and "
        f"{MANIFEST_FILE})"
    )
    return 0


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"


def export_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-export``; returns the exit status (2 for user errors)."""
    return run_command(lambda: export_cli(argv))
