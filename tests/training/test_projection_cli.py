"""gan-train-encoder and gan-project: the encoder goes into the checkpoint (hash-checked, model
id kept), gan-project writes its files, and both refuse what they cannot do in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gan.checkpoint import ENCODER_FILE, CheckpointError, load_checkpoint
from gan.io import encode_png
from tests.conftest import make_checkpoint
from training.cli import encoder_main, project_main
from training.encoder import EncoderOptions, train_encoder


def _image(path: Path, value: int = 220) -> Path:
    img = torch.zeros(28, 28, dtype=torch.uint8)
    img[5:23, 12:16] = value
    path.write_bytes(encode_png(img.numpy()))
    return path


def test_gan_train_encoder_adds_a_hash_checked_encoder_and_keeps_the_model_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint(tmp_path / "c", classes=["a", "b"])
    before = load_checkpoint(ckpt)
    assert before.encoder is None
    code = encoder_main(["--checkpoint", str(ckpt), "--steps", "3", "--batch-size", "8", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "added an encoder" in capsys.readouterr().out
    after = load_checkpoint(ckpt)
    assert after.encoder is not None and after.model_id == before.model_id
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["encoder"]["steps"] == 3 and ENCODER_FILE in cfg["files"]
    # The generator and discriminator files are untouched.
    for name in ("generator.safetensors", "discriminator.safetensors"):
        assert cfg["files"][name] == json.loads(json.dumps(before.config.raw["files"][name]))
    # A corrupted encoder is refused like any weight file.
    raw = bytearray((ckpt / ENCODER_FILE).read_bytes())
    raw[-1] ^= 0xFF
    (ckpt / ENCODER_FILE).write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(ckpt)


class _LinearG(torch.nn.Module):
    """z [B, 8] -> [B, 1, 28, 28]: a generator whose every latent dimension shows."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.w = torch.nn.Linear(8, 28 * 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.w(z)).view(-1, 1, 28, 28)


def test_encoder_training_lowers_its_losses() -> None:
    from gan.models import ModelConfig

    mc, g = ModelConfig(z_dim=8, g_width=4, d_width=4), _LinearG().eval()
    _, untrained = train_encoder(g, mc, EncoderOptions(steps=0))
    _, report = train_encoder(g, mc, EncoderOptions(steps=200, batch_size=32, lr=3e-3))
    assert report.steps == 200
    assert report.latent_mse < 0.5 * untrained.latent_mse
    assert report.pixel_mse < 0.5 * untrained.pixel_mse
    assert all(p.requires_grad for p in g.parameters())  # G is given back as it came


def test_gan_train_encoder_refuses_other_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vae = make_checkpoint(tmp_path / "vae", kind="vae")
    assert encoder_main(["--checkpoint", str(vae), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "only GAN checkpoints" in err and len(err.splitlines()) == 1


def test_gan_project_writes_reconstructions_side_by_sides_and_latents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = make_checkpoint(tmp_path / "c", classes=["zero", "one", "two"])
    a, b = _image(tmp_path / "a.png"), _image(tmp_path / "b.png", 120)
    out = tmp_path / "out"
    args = ["--checkpoint", str(ckpt), str(a), str(b), "--out", str(out), "--steps", "5"]
    assert project_main(args) == 0, capsys.readouterr().err
    report = json.loads((out / "projections.json").read_text())
    assert [Path(r["file"]).name for r in report["projections"]] == ["a.png", "b.png"]
    for stem in ("a", "b"):
        assert (out / f"{stem}.projection.png").is_file()
        assert (out / f"{stem}.side-by-side.png").is_file()
    first = report["projections"][0]
    assert len(first["z"]) == 8 and first["label"] in (0, 1, 2)
    assert first["upload"]["logit"] is not None and report["distance"] == "discriminator-features"
    # The same code path as the service: the reconstruction is G(z) of the reported latent.
    from gan.sampling import generate

    g = load_checkpoint(ckpt).generator
    assert g is not None
    again = generate(g, torch.tensor([first["z"]]), torch.tensor([first["label"]]))
    assert (out / "a.projection.png").read_bytes() == encode_png(again[0, 0].numpy())
    # --label picks the class.
    assert project_main([*args, "--label", "two"]) == 0
    report = json.loads((out / "projections.json").read_text())
    assert {r["label"] for r in report["projections"]} == {2}


def test_gan_project_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ebm = make_checkpoint(tmp_path / "ebm", kind="ebm")
    img = _image(tmp_path / "a.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    plain = make_checkpoint(tmp_path / "g")
    cases = [
        (["--checkpoint", str(ebm), str(img)], "projected"),
        (["--checkpoint", str(plain), str(bad)], "bad.png"),
        (["--checkpoint", str(plain), str(img), "--label", "1"], "unconditional"),
        (["--checkpoint", str(plain), str(img), "--steps", "999999"], "steps"),
    ]
    for argv, needle in cases:
        assert project_main([*argv, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and needle in err and len(err.splitlines()) == 1, err


def test_old_checkpoints_without_an_encoder_still_project(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "checkpoints" / "mnist-gan-small"
    if not (src / "config.json").is_file():
        pytest.skip("no bundled small checkpoint")
    ckpt = shutil.copytree(src, tmp_path / "small")
    img = _image(tmp_path / "a.png")
    assert (
        project_main(
            ["--checkpoint", str(ckpt), str(img), "--out", str(tmp_path / "o"), "--steps", "3"]
        )
        == 0
    )
