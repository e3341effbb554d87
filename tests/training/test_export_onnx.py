"""gan-export --format onnx: the files, their names and dynamic batch axis, onnxruntime against
torch at batch 1 and 64 (G and D, conditional and not, gray and RGB, the bundled model), the
kinds without G or D, and the one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gan.checkpoint import Checkpoint, load_checkpoint
from gan.classmix import ClassMix
from gan.models import ModelConfig, build_models
from gan.onnx_export import (
    MANIFEST_FILE,
    ONNX_FILES,
    OPSET,
    example_inputs,
    read_onnx_folder,
)
from tests.conftest import make_checkpoint
from training.cli import export_main

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "checkpoints" / "mnist"  # class-conditional, 28x28 gray, ten classes
#: The parity target: onnxruntime's outputs against the torch forwards.
TOLERANCE = 1e-4
BATCHES = (1, 64)


def _export(checkpoint: Path, out: Path) -> int:
    return export_main(["--checkpoint", str(checkpoint), "--format", "onnx", "--out", str(out)])


@pytest.fixture(scope="module")
def onnx_stack() -> None:
    """Skip (with the reason) where the onnx extra is not installed."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(
            name, reason=f"ONNX export needs {name}: pip install -e '.[dev]' (or gan-serve[onnx])"
        )


@pytest.fixture(scope="module")
def exports(
    onnx_stack: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """name -> (checkpoint, its gan-export folder), exported once for the module."""
    root = tmp_path_factory.mktemp("onnx")
    checkpoints = {
        "uncond": make_checkpoint(root / "uncond", width=4),
        "cond": make_checkpoint(root / "cond", width=4, classes=["zero", "one", "two"]),
        "rgb": make_checkpoint(root / "rgb", width=4, resolution=32, channels=3),
        "bundled": BUNDLED,
    }
    out = {}
    for name, ckpt in checkpoints.items():
        folder = root / f"{name}-onnx"
        assert _export(ckpt, folder) == 0
        out[name] = (ckpt, folder)
    return out


def _session(folder: Path, network: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        str(folder / ONNX_FILES[network]), options, providers=["CPUExecutionProvider"]
    )


def _torch_module(ck: Checkpoint, network: str) -> torch.nn.Module:
    module = ck.generator if network == "generator" else ck.discriminator
    assert module is not None
    return module


@pytest.mark.parametrize("name", ["uncond", "cond", "rgb", "bundled"])
def test_files_names_opset_and_dynamic_batch_axis(
    exports: dict[str, tuple[Path, Path]], name: str
) -> None:
    import onnx

    ckpt, folder = exports[name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["generator.onnx", "discriminator.onnx", "config.json", MANIFEST_FILE]
    )
    assert (folder / "config.json").read_bytes() == (ckpt / "config.json").read_bytes()
    config, graphs, info = read_onnx_folder(folder)  # every SHA-256 checked
    assert set(graphs) == {"generator", "discriminator"}
    assert info["opset"] == OPSET == 18 and info["batch_axis"] == "batch"
    assert info["exporter"] == "torch.onnx.export(dynamo=True)"
    assert info["model_id"] == load_checkpoint(ckpt).model_id
    mc = config.model
    image = ["batch", mc.channels, mc.resolution, mc.resolution]
    labels = [("labels", ["batch"], "tensor(int64)")] if mc.conditional else []
    expected = {
        "generator": ([("z", ["batch", mc.z_dim], "tensor(float)"), *labels], image),
        "discriminator": ([("images", image, "tensor(float)"), *labels], ["batch"]),
    }
    for network, (inputs, out_shape) in expected.items():
        model = onnx.load_model_from_string(graphs[network].model)
        assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
        session = _session(folder, network)
        assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == inputs
        (output,) = session.get_outputs()
        assert output.name == ("images" if network == "generator" else "logits")
        assert output.shape == out_shape and output.type == "tensor(float)"
        entry = info["files"][ONNX_FILES[network]]
        assert [i["name"] for i in entry["inputs"]] == [i[0] for i in inputs]
        assert entry["max_abs_diff_to_torch"] <= TOLERANCE


@pytest.mark.parametrize("network", ["generator", "discriminator"])
@pytest.mark.parametrize("name", ["uncond", "cond", "rgb", "bundled"])
def test_onnxruntime_matches_torch_at_batch_1_and_64(
    exports: dict[str, tuple[Path, Path]], name: str, network: str
) -> None:
    ckpt, folder = exports[name]
    ck = load_checkpoint(ckpt)
    module = _torch_module(ck, network)
    session = _session(folder, network)
    names = [i.name for i in session.get_inputs()]
    diffs = []
    for batch in BATCHES:
        args = example_inputs(ck.model_config, network, batch, seed=100 + batch)
        with torch.inference_mode():
            expected = module(*args)
        (got,) = session.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})
        assert got.shape == tuple(expected.shape)
        diffs.append(float((torch.from_numpy(got) - expected).abs().max()))
    print(f"\nparity {name} {network}: max abs diff at batch {BATCHES}: {diffs}")
    assert max(diffs) <= TOLERANCE, diffs


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(arch="r3gan", g_width=16, d_width=16, num_classes=10),
        ModelConfig(arch="r3gan", resolution=32, channels=3, g_width=16, d_width=16),
        ModelConfig(arch="classic", resolution=32),
        ModelConfig(resolution=64, channels=3, g_width=8, d_width=8),
    ],
    ids=["r3gan-cond", "r3gan-rgb32", "classic", "dcgan-rgb64"],
)
def test_every_architecture_exports_with_a_dynamic_batch(
    onnx_stack: None, cfg: ModelConfig
) -> None:
    """r3gan (grouped convolutions, bilinear upsampling, no tanh) and the classic baseline
    (nearest upsampling, BatchNorm in D) too, BatchNorm statistics away from their start."""
    from gan.onnx_export import export_network
    from gan.onnx_runtime import OnnxDiscriminator, OnnxGenerator, max_abs_difference

    g, d = build_models(cfg, seed=0)
    for m in (*g.modules(), *d.modules()):
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    for network, module in (("generator", g.eval()), ("discriminator", d.eval())):
        graph = export_network(module, network, cfg)
        runner = (OnnxGenerator if network == "generator" else OnnxDiscriminator)(graph, 1)
        diffs = [max_abs_difference(module, runner, cfg, rows, seed=rows) for rows in BATCHES]
        assert max(diffs) <= TOLERANCE, (network, diffs)


def test_generator_adapter_runs_class_mixes_through_torch(
    exports: dict[str, tuple[Path, Path]],
) -> None:
    """Rows that are exactly one class run in onnxruntime, true mixes in the torch fallback;
    either way the adapter agrees with the torch generator."""
    from gan.onnx_runtime import OnnxGenerator

    ckpt, folder = exports["bundled"]
    ck = load_checkpoint(ckpt)
    assert ck.generator is not None
    _, graphs, _ = read_onnx_folder(folder)
    z = torch.randn(5, ck.model_config.z_dim, generator=torch.Generator().manual_seed(3))
    mix = ClassMix(
        torch.tensor([3, 3, 3, 1, 4]),
        torch.tensor([8, 8, 8, 1, 2]),
        torch.tensor([0.0, 1.0, 0.5, 0.3, 0.25]),
    )
    with torch.inference_mode():
        expected = ck.generator(z, mix)
        onnx_only = OnnxGenerator(graphs["generator"], 1)
        pure = ClassMix(mix.a[[0, 1, 3]], mix.b[[0, 1, 3]], mix.t[[0, 1, 3]])
        assert float((onnx_only(z[[0, 1, 3]], pure) - expected[[0, 1, 3]]).abs().max()) <= TOLERANCE
        with pytest.raises(ValueError, match="not a mix of two"):
            onnx_only(z, mix)
        mixed = OnnxGenerator(graphs["generator"], 1, fallback=ck.generator)(z, mix)
    assert float((mixed - expected).abs().max()) <= TOLERANCE
    # The mixes are torch's own: bit for bit what the torch generator gives those rows (as a
    # batch of their own: a batch's size may change the last bits of a CPU convolution).
    rows = [2, 4]
    with torch.inference_mode():
        torch_rows = ck.generator(z[rows], ClassMix(mix.a[rows], mix.b[rows], mix.t[rows]))
    assert torch.equal(mixed[rows], torch_rows)


# --------------------------------------------------------------------------------------------
# Kinds without G or D, the output folder, errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "present"), [("vae", "generator"), ("ebm", "discriminator")])
def test_kinds_export_the_network_they_have(
    onnx_stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, present: str
) -> None:
    ckpt = make_checkpoint(tmp_path / kind, kind=kind, width=4)
    out = tmp_path / "out"
    assert _export(ckpt, out) == 0
    absent = "discriminator" if present == "generator" else "generator"
    printed = capsys.readouterr().out
    assert f"no {absent}: a{'n' if kind[0] in 'aeiou' else ''} {kind}" in printed
    _, graphs, info = read_onnx_folder(out)
    assert set(graphs) == {present} and list(info["files"]) == [f"{present}.onnx"]
    assert info["kind"] == kind and not (out / f"{absent}.onnx").exists()


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("how", ["missing", "not_a_checkpoint", "bad_json", "corrupt_weights"])
def test_broken_or_missing_checkpoint_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    ckpt = tmp_path / "ckpt"
    if how == "not_a_checkpoint":
        ckpt.mkdir()
        (ckpt / "notes.txt").write_text("hello")
    elif how != "missing":
        make_checkpoint(ckpt, width=4)
        if how == "bad_json":
            (ckpt / "config.json").write_text("{not json")
        else:
            data = bytearray((ckpt / "generator.safetensors").read_bytes())
            data[-1] ^= 0xFF
            (ckpt / "generator.safetensors").write_bytes(bytes(data))
    out = tmp_path / "out"
    assert _export(ckpt, out) == 2
    line = _one_error_line(capsys)
    assert str(ckpt) in line
    phrase = {
        "missing": "does not exist",
        "not_a_checkpoint": "config.json",
        "bad_json": "not valid JSON",
        "corrupt_weights": "SHA-256",
    }[how]
    assert phrase in line, line
    assert not out.exists()


def test_out_folder_with_other_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", width=4)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _export(ckpt, out) == 2
    assert "holds other files" in _one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _export(ckpt, ckpt) == 2
    assert "is the checkpoint itself" in _one_error_line(capsys)


def test_an_earlier_export_is_replaced_whole(
    onnx_stack: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_checkpoint(tmp_path / "a", width=4)
    second = make_checkpoint(tmp_path / "b", width=4, kind="ebm")
    out = tmp_path / "out"
    assert _export(first, out) == 0
    assert _export(second, out) == 0
    _, graphs, info = read_onnx_folder(out)
    assert set(graphs) == {"discriminator"} and info["kind"] == "ebm"
    assert not (out / "generator.onnx").exists()
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["checkpoint_hash"] == load_checkpoint(second).checkpoint_hash


def test_missing_onnxruntime_is_one_line_naming_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = make_checkpoint(tmp_path / "ckpt", width=4)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime: ImportError
    out = tmp_path / "out"
    assert _export(ckpt, out) == 2
    line = _one_error_line(capsys)
    assert "onnxruntime" in line and "pip install gan-serve[onnx]" in line, line
    assert not out.exists()


def test_tampered_export_folder_is_refused(tmp_path: Path) -> None:
    from gan.onnx_export import OnnxExportError

    folder = tmp_path / "export"
    folder.mkdir()
    ckpt = make_checkpoint(tmp_path / "ckpt", width=4)
    (folder / "config.json").write_bytes((ckpt / "config.json").read_bytes())
    (folder / "generator.onnx").write_bytes(b"not the exported graph")
    manifest = {
        "format": "gan-onnx",
        "format_version": 1,
        "files": {"generator.onnx": {"sha256": "0" * 64}},
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(OnnxExportError, match="SHA-256"):
        read_onnx_folder(folder)
    manifest["format_version"] = 99
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(OnnxExportError, match="format_version"):
        read_onnx_folder(folder)
