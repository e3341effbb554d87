"""The evaluation classifier: the shipped weights, input conversion, validation, training."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli import eval_main as run_eval_cli
from training.data import ImageData, load_mnist
from training.metrics.classifier import (
    CONFIG_FILE,
    ENV_CLASSIFIER_DIR,
    WEIGHTS_FILE,
    Classifier,
    ClassifierArch,
    ClassifierError,
    default_classifier_dir,
    load_classifier,
    prepare_images,
    random_shift,
    train_classifier,
)

SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints" / "mnist-classifier"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    torch.set_num_threads(1)
    return load_classifier(SHIPPED)


@pytest.fixture(scope="module")
def test_set() -> ImageData:
    return load_mnist(None, "test")


def test_default_dir_is_the_shipped_one_and_env_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_CLASSIFIER_DIR, raising=False)
    assert default_classifier_dir() == SHIPPED
    monkeypatch.setenv(ENV_CLASSIFIER_DIR, str(tmp_path))
    assert default_classifier_dir() == tmp_path


def test_shipped_classifier_is_small_and_self_describing(classifier: Classifier) -> None:
    total = sum(f.stat().st_size for f in SHIPPED.iterdir())
    assert total < 1_000_000
    cfg = classifier.config
    assert cfg["test_accuracy"] >= 0.99
    assert cfg["feature_dim"] == classifier.feature_dim == 128
    assert cfg["training"]["command"].startswith("gan-eval --train-classifier")
    assert isinstance(cfg["seed"], int)
    assert len(classifier.weights_sha256) == 64
    assert not list(SHIPPED.glob("*.pt*")) and not list(SHIPPED.glob("*.pkl"))


def test_shipped_classifier_accuracy_on_a_test_subset(
    classifier: Classifier, test_set: ImageData
) -> None:
    assert test_set.labels is not None
    pred = classifier.predict(test_set.images[:2000])
    assert (pred == test_set.labels[:2000]).double().mean().item() >= 0.985


def test_features_and_logits_shapes(classifier: Classifier, test_set: ImageData) -> None:
    feats, logits = classifier.features_and_logits(test_set.images[:37], batch_size=16)
    assert feats.shape == (37, 128) and logits.shape == (37, 10)
    assert feats.dtype == torch.float32 and (feats >= 0).all()  # post-ReLU features
    empty_f, empty_l = classifier.features_and_logits(test_set.images[:0])
    assert empty_f.shape == (0, 128) and empty_l.shape == (0, 10)


def test_colour_and_other_sizes_are_converted(classifier: Classifier, test_set: ImageData) -> None:
    gray = test_set.images[:200]
    rgb = gray.expand(-1, 3, -1, -1).contiguous()
    assert torch.allclose(prepare_images(rgb), prepare_images(gray), atol=1e-6)
    big = torch.nn.functional.interpolate(gray.float(), size=(64, 64), mode="nearest")
    big_rgb = big.round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()  # [200, 3, 64, 64]
    assert prepare_images(big_rgb).shape == (200, 1, 28, 28)
    same = (classifier.predict(big_rgb) == classifier.predict(gray)).double().mean().item()
    assert same > 0.95
    small = gray[:, :, ::2, ::2].contiguous()  # [200, 1, 14, 14]: upsampled bilinearly
    assert prepare_images(small).shape == (200, 1, 28, 28)


def test_bad_inputs_are_refused(classifier: Classifier) -> None:
    with pytest.raises(ClassifierError, match="uint8"):
        classifier.features(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ClassifierError, match=r"\[N, C, H, W\]"):
        classifier.features(torch.zeros(2, 28, 28, dtype=torch.uint8))


def test_random_shift_moves_content_without_losing_it() -> None:
    img = torch.zeros(4, 1, 28, 28)
    img[:, :, 10:18, 10:18] = 1.0
    gen = torch.Generator().manual_seed(0)
    out = random_shift(img, 2, gen, fill=0.0)
    assert out.shape == img.shape
    assert torch.equal(out.sum(dim=(1, 2, 3)), img.sum(dim=(1, 2, 3)))  # nothing cut off
    assert not all(torch.equal(out[i], img[i]) for i in range(4))  # at least one moved
    assert random_shift(img, 0, gen) is img


def _copy_shipped(tmp_path: Path) -> Path:
    dst = tmp_path / "cls"
    shutil.copytree(SHIPPED, dst)
    return dst


def test_load_refuses_a_tampered_weight_file(tmp_path: Path) -> None:
    d = _copy_shipped(tmp_path)
    raw = bytearray((d / WEIGHTS_FILE).read_bytes())
    raw[-10] ^= 0xFF
    (d / WEIGHTS_FILE).write_bytes(bytes(raw))
    with pytest.raises(ClassifierError, match="SHA-256"):
        load_classifier(d)


def test_load_refuses_shapes_that_do_not_match_the_architecture(tmp_path: Path) -> None:
    d = _copy_shipped(tmp_path)
    cfg = json.loads((d / CONFIG_FILE).read_text())
    cfg["architecture"]["feature_dim"] = 64
    (d / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ClassifierError, match="shape"):
        load_classifier(d)


def test_load_reports_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(ClassifierError, match=r"does not exist.*--train-classifier"):
        load_classifier(tmp_path / "nowhere")
    d = _copy_shipped(tmp_path)
    (d / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ClassifierError, match="not valid JSON"):
        load_classifier(d)
    (d / CONFIG_FILE).unlink()
    with pytest.raises(ClassifierError, match="missing"):
        load_classifier(d)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def tiny_mnist(tmp_path: Path, test_set: ImageData) -> Path:
    """A 512-train / 256-test MNIST folder cut from the real test split."""
    assert test_set.labels is not None
    d = tmp_path / "tiny-mnist"
    d.mkdir()
    imgs, labels = test_set.images[:, 0].numpy(), test_set.labels.numpy()
    _write_idx(d / "train-images-idx3-ubyte.gz", imgs[:512])
    _write_idx(d / "train-labels-idx1-ubyte.gz", labels[:512])
    _write_idx(d / "t10k-images-idx3-ubyte.gz", imgs[512:768])
    _write_idx(d / "t10k-labels-idx1-ubyte.gz", labels[512:768])
    return d


def test_train_classifier_writes_a_loadable_directory(tiny_mnist: Path, tmp_path: Path) -> None:
    out = tmp_path / "trained"
    cfg = train_classifier(
        tiny_mnist, out, epochs=1, seed=3, min_accuracy=0.0, progress=False, command="x"
    )
    assert {p.name for p in out.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    loaded = load_classifier(out)
    assert loaded.config == cfg
    assert loaded.config["seed"] == 3 and loaded.config["training"]["command"] == "x"
    assert 0.0 <= loaded.test_accuracy <= 1.0


def test_train_classifier_takes_another_architecture(tiny_mnist: Path, tmp_path: Path) -> None:
    """A second, independent feature space (bench/d_refit.py): other widths and features."""
    arch = ClassifierArch(widths=(8, 16, 24), feature_dim=32, dropout=0.1)
    out = tmp_path / "other"
    train_classifier(tiny_mnist, out, epochs=1, seed=1, min_accuracy=0.0, progress=False, arch=arch)
    loaded = load_classifier(out)
    assert loaded.model.arch == arch and loaded.feature_dim == 32
    assert loaded.features(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)).shape == (3, 32)


def test_train_classifier_refuses_to_write_below_min_accuracy(
    tiny_mnist: Path, tmp_path: Path
) -> None:
    out = tmp_path / "trained"
    with pytest.raises(ClassifierError, match="below the required"):
        train_classifier(tiny_mnist, out, epochs=1, min_accuracy=1.01, progress=False)
    assert not out.exists()


def test_cli_train_classifier_records_its_command(
    tiny_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli-trained"
    argv = [
        "--train-classifier",
        "--data-dir",
        str(tiny_mnist),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--min-accuracy",
        "0",
        "--quiet",
    ]
    assert run_eval_cli(argv) == 0
    assert "wrote" in capsys.readouterr().out
    cfg = json.loads((out / CONFIG_FILE).read_text())
    assert cfg["training"]["command"] == "gan-eval " + " ".join(argv)


def test_cli_train_classifier_reports_missing_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = run_eval_cli(
        [
            "--train-classifier",
            "--data-dir",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "does not exist" in err
    assert "Traceback" not in err
