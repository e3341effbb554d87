"""gan-calibrate --refit: D trained on against the frozen G, calibrated, written as a new
checkpoint beside the source (which never changes); the ``refit`` record and its validation;
the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gan.checkpoint import (
    CheckpointError,
    Refit,
    add_encoder,
    load_checkpoint,
    read_checkpoint_config,
    save_with_discriminator,
)
from gan.io import sha256_file
from gan.models import build_latent_encoder
from tests.conftest import make_checkpoint
from training.cli import calibrate_main
from training.refit import (
    RefitError,
    heldout_bce,
    heldout_set,
    logistic_loss,
    refit_discriminator,
)

DIGITS = [str(i) for i in range(10)]


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def refit_args(source: Path, out: Path, mnist_dir: Path, *extra: str) -> list[str]:
    return [
        "--checkpoint",
        str(source),
        "--data-dir",
        str(mnist_dir),
        "--num",
        "200",
        "--refit",
        "40",
        "--refit-lr",
        "1e-3",
        "--out",
        str(out),
        *extra,
    ]


def test_refit_writes_a_new_calibrated_checkpoint_with_the_same_g(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_checkpoint(tmp_path / "src", width=4, dataset="mnist", classes=DIGITS)
    old = load_checkpoint(source)
    add_encoder(source, build_latent_encoder(old.model_config, seed=0), {"trained_on": "test"})
    before = files_of(source)
    out = tmp_path / "refit"
    out.mkdir()  # an empty folder is fine
    assert calibrate_main(refit_args(source, out, mnist_dir, "--quiet")) == 0
    printed = capsys.readouterr().out
    assert files_of(source) == before  # the source never changes
    assert read_checkpoint_config(source).calibration is None
    new = load_checkpoint(out)  # loads: every hash checks out
    for name in ("generator.safetensors", "encoder.safetensors"):
        assert (out / name).read_bytes() == before[name]
    assert (out / "discriminator.safetensors").read_bytes() != before["discriminator.safetensors"]
    assert new.checkpoint_hash != old.checkpoint_hash and new.model_id != old.model_id
    assert new.config.file_hashes["discriminator.safetensors"] == sha256_file(
        out / "discriminator.safetensors"
    )
    assert not (out / "train_state.json").exists()
    cal, record = new.config.calibration, new.config.refit
    assert cal is not None and cal.num_real == 200 and cal.num_fake == 200
    assert cal.real_source == "MNIST test set (never trained on)"
    assert record is not None
    assert (record.steps, record.lr, record.batch) == (40, 1e-3, 64)
    assert record.source_model_id == old.model_id
    assert record.raw["trained_on"] == "MNIST train set"
    # A random G's images are easy to tell from digits: the ratio estimate must get better.
    assert record.heldout_bce_after < record.heldout_bce_before - 0.1
    rs = new.config.real_scores
    assert rs is not None and rs.num_images == 10_000  # D's quantiles, of the refit D
    # Everything else of the source's config is kept.
    assert new.config.classes == tuple(DIGITS) and new.step == old.step
    assert new.config.raw["encoder"] == {"trained_on": "test"}
    assert f"{record.heldout_bce_before:.4f} before, {record.heldout_bce_after:.4f} after" in (
        printed
    )
    assert f"wrote {out} ({new.model_id})" in printed and "is unchanged" in printed
    # The refit checkpoint serves the D-guided samplers.
    from gan.samplers import parse_options
    from gan.samplers.dispatch import Models, sample

    result = sample(Models.of(new), parse_options("drs", {"keep": 0.5}), seed=0, n=4)
    assert result.images.shape == (4, 1, 28, 28)
    # ... and the service says how its D was refit; the source's /info says it was not.
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    for path, refit in ((out, record.raw), (source, None)):
        with TestClient(create_app(Settings(checkpoint=path))) as client:
            info = client.get("/info").json()
        assert info["refit"] == refit
    assert info["calibration"] is None


def test_refit_progress_is_shown_unless_quiet(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_checkpoint(tmp_path / "src", width=4, dataset="mnist")
    args = refit_args(source, tmp_path / "a", mnist_dir)
    args[args.index("--refit") + 1] = "3"
    assert calibrate_main(args) == 0
    shown = capsys.readouterr()
    assert "refit D" in shown.err and "3/3" in shown.err
    assert "refitting D of" in shown.out and "held-out BCE" in shown.out
    args = refit_args(source, tmp_path / "b", mnist_dir, "--quiet")
    args[args.index("--refit") + 1] = "3"
    assert calibrate_main(args) == 0
    quiet = capsys.readouterr()
    assert "refit D" not in quiet.err and "refitting" not in quiet.out


def test_refit_of_a_folder_checkpoint_trains_on_its_training_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    folder = tmp_path / "shapes"
    folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(200):
        pixels = (torch.rand(28, 28, generator=gen) * 255).byte().numpy()
        Image.fromarray(pixels).save(folder / f"{i}.png")
    source = make_checkpoint(tmp_path / "src", width=4, dataset="folder")
    out = tmp_path / "refit"
    args = [
        "--checkpoint",
        str(source),
        "--data",
        "folder",
        "--data-dir",
        str(folder),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--num",
        "50",
        "--refit",
        "3",
        "--refit-batch",
        "16",
        "--out",
        str(out),
        "--quiet",
    ]
    assert calibrate_main(args) == 0, capsys.readouterr().err
    cfg = read_checkpoint_config(out)
    assert cfg.refit is not None and cfg.refit.batch == 16
    assert cfg.refit.raw["trained_on"] == "the 190 training images of the folder shapes"
    assert cfg.refit.raw["heldout_real_images"] == 10  # the 5 % training held out
    assert cfg.calibration is not None and cfg.calibration.num_real == 10


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (["--refit", "-1"], "--refit must be a number of steps >= 0"),
        (["--refit", "0"], "--out, --refit-lr only go with --refit STEPS"),
        (["--refit-lr", "0"], "--refit-lr must be a positive number"),
        (["--refit-lr", "nan"], "--refit-lr must be a positive number"),
        (["--refit-batch", "0"], "--refit-batch must be at least 1"),
        (["--out", "SOURCE"], "is the source checkpoint"),
        (["--out", "SOURCE/inner"], "or inside it"),
        (["--out", "FULL"], "already exists and is not an empty folder"),
        (["--out", "FILE"], "already exists and is not an empty folder"),
        (["--out", None], "--refit writes a new checkpoint: give its folder with --out DIR"),
    ],
)
def test_refit_refuses_with_one_error_line(
    tmp_path: Path,
    mnist_dir: Path,
    capsys: pytest.CaptureFixture[str],
    change: list[str | None],
    phrase: str,
) -> None:
    source = make_checkpoint(tmp_path / "src", width=4, dataset="mnist")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    (tmp_path / "file").write_text("x")
    before = files_of(source)
    args = refit_args(source, tmp_path / "new", mnist_dir, "--quiet")
    option, value = change
    where = {"SOURCE": source, "SOURCE/inner": source / "inner", "FULL": tmp_path / "full"}
    where["FILE"] = tmp_path / "file"
    if value is None:
        i = args.index(str(option))
        del args[i : i + 2]
    elif option in args:
        args[args.index(str(option)) + 1] = str(where.get(value, value))
    else:
        args += [str(option), value]
    assert calibrate_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and phrase in err, err
    assert files_of(source) == before
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert not (tmp_path / "new").exists()


def test_refit_options_without_refit_and_non_gan_checkpoints_are_refused(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_checkpoint(tmp_path / "src", width=4, dataset="mnist")
    for extra in (["--refit-lr", "1e-3"], ["--refit-batch", "8"], ["--out", str(tmp_path / "o")]):
        assert calibrate_main(["--checkpoint", str(source), *extra]) == 2
        assert "only go with --refit STEPS" in capsys.readouterr().err
    vae = make_checkpoint(tmp_path / "vae", width=4, dataset="mnist", kind="vae")
    assert calibrate_main(refit_args(vae, tmp_path / "o", mnist_dir, "--quiet")) == 2
    assert "is a vae checkpoint: --refit trains D" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="only a GAN's discriminator"):
        save_with_discriminator(vae, tmp_path / "o", torch.nn.Linear(1, 1), {})
    assert not (tmp_path / "o").exists()


def test_a_failed_write_leaves_no_checkpoint_and_the_source_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_checkpoint(tmp_path / "src", width=4)
    before = files_of(source)
    d = load_checkpoint(source).discriminator
    assert d is not None

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("gan.checkpoint.save_file", full)
    with pytest.raises(CheckpointError, match="is intact"):
        save_with_discriminator(source, tmp_path / "out", d, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no temporary left
    assert files_of(source) == before
    # A bad record is never written.
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="'refit' 'steps' must be a positive integer"):
        save_with_discriminator(source, tmp_path / "out", d, {"refit": {"steps": 0}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_refit_discriminator_trains_a_copy_reproducibly(tmp_path: Path) -> None:
    ckpt = load_checkpoint(make_checkpoint(tmp_path / "c", width=4, classes=["a", "b"]))
    g, d = ckpt.generator, ckpt.discriminator
    assert g is not None and d is not None
    mc = ckpt.model_config
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(64, 1, 28, 28, generator=gen) < 0.2).byte() * 255  # sparse strokes
    labels = torch.arange(64) % 2
    d_before = {k: v.clone() for k, v in d.state_dict().items()}
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    held = heldout_set(g, mc, images[:32], labels[:32], num=32)
    assert held.fakes.shape == (32, 1, 28, 28) and held.fake_labels is not None
    first = refit_discriminator(g, d, mc, images, labels, steps=5, lr=1e-3, progress=False)
    again = refit_discriminator(g, d, mc, images, labels, steps=5, lr=1e-3, progress=False)
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])
    assert any(not torch.equal(v, d_before[k]) for k, v in first.state_dict().items())
    assert all(torch.equal(v, d_before[k]) for k, v in d.state_dict().items())
    assert all(torch.equal(v, g_before[k]) for k, v in g.state_dict().items())
    assert not first.training
    assert heldout_bce(first, held) < heldout_bce(d, held)
    with pytest.raises(RefitError, match="need their class labels"):
        refit_discriminator(g, d, mc, images, None, steps=1, progress=False)


def test_logistic_loss_is_the_equal_prior_bce() -> None:
    zero = torch.zeros(3)
    assert float(logistic_loss(zero, torch.zeros(5))) == pytest.approx(0.6931, abs=1e-4)
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 0.5, -3.0])
    expected = 0.5 * (
        torch.nn.functional.binary_cross_entropy_with_logits(real, torch.ones(2))
        + torch.nn.functional.binary_cross_entropy_with_logits(fake, torch.zeros(3))
    )
    assert float(logistic_loss(real, fake)) == pytest.approx(float(expected))


def valid_record() -> dict[str, Any]:
    return {
        "steps": 100,
        "lr": 1e-4,
        "batch": 64,
        "source_model_id": "mnist-dcgan-28px-step6000-6cf47507",
        "heldout_bce_before": 0.45,
        "heldout_bce_after": 0.41,
    }


@pytest.mark.parametrize(
    ("mutate", "phrase"),
    [
        (lambda r: r.update(steps=0), "'steps' must be a positive integer"),
        (lambda r: r.update(batch=True), "'batch' must be a positive integer"),
        (lambda r: r.update(lr=-1.0), "'lr' must be a positive number"),
        (lambda r: r.update(heldout_bce_after=float("nan")), "'heldout_bce_after' must be"),
        (lambda r: r.pop("source_model_id"), "'source_model_id' must be"),
    ],
)
def test_a_bad_refit_record_is_refused(mutate: Any, phrase: str) -> None:
    record = valid_record()
    mutate(record)
    with pytest.raises(CheckpointError, match=phrase) as err:
        Refit.from_config(record, "/x/config.json")
    assert str(err.value).startswith("/x/config.json: 'refit'")
    assert Refit.from_config(valid_record(), "x") is not None
    assert Refit.from_config(None, "x") is None
    with pytest.raises(CheckpointError, match="must be an object or null"):
        Refit.from_config([1], "x")


def test_checkpoints_without_a_refit_record_load_as_before(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "old", width=4)
    raw = json.loads((path / "config.json").read_text())
    assert "refit" not in raw
    assert load_checkpoint(path).config.refit is None
    raw["refit"] = {"steps": "many"}
    (path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="'refit' 'steps'"):
        load_checkpoint(path)
