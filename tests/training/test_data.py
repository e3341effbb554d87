"""training.data, training.mnist, training.folder: MNIST IDX loading, image folders, cache, and the
errors users see."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan import preprocess
from training import mnist
from training.data import DataError, DataWarning, ImageData, load_dataset
from training.folder import IMAGE_EXTENSIONS, default_cache_dir
from training.mnist import load_mnist, parse_idx

# ---- helpers -----------------------------------------------------------------------------------


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_split(
    directory: Path, images: np.ndarray, labels: np.ndarray, split: str = "test", gz: bool = False
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    img_stem, lbl_stem = mnist.MNIST_FILES[split]
    for stem, arr in ((img_stem, images), (lbl_stem, labels)):
        raw = _idx(arr)
        if gz:
            (directory / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / stem).write_bytes(raw)


def _load_folder(path: Path, **kw: object) -> tuple[ImageData, list[warnings.WarningMessage]]:
    opts: dict[str, object] = {"resolution": 16, "channels": 3, "progress": False}
    opts.update(kw)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        result = load_dataset("folder", path, **opts)  # type: ignore[arg-type]
    return result, [w for w in rec if issubclass(w.category, DataWarning)]


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---- MNIST ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_test() -> ImageData:
    return load_mnist(split="test")


def test_mnist_shared_train_and_test() -> None:
    train = load_mnist(split="train")
    assert train.images.dtype == torch.uint8 and tuple(train.images.shape) == (60000, 1, 28, 28)
    assert train.labels is not None and train.labels.dtype == torch.int64
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert sorted(train.labels.unique().tolist()) == list(range(10))
    assert train.info["num_images"] == 60000 and train.info["split"] == "train"


def test_mnist_test_split(mnist_test: ImageData) -> None:
    assert tuple(mnist_test.images.shape) == (10000, 1, 28, 28) and len(mnist_test) == 10000
    assert mnist_test.labels is not None and mnist_test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert int(mnist_test.images.max()) == 255 and int(mnist_test.images.min()) == 0


def test_mnist_raw_idx_dir_matches_gzipped(tmp_path: Path, mnist_test: ImageData) -> None:
    for stem in mnist.MNIST_FILES["test"]:
        with gzip.open(mnist.default_mnist_dir() / (stem + ".gz")) as fh:
            (tmp_path / stem).write_bytes(fh.read())
    raw = load_mnist(tmp_path, split="test")
    assert torch.equal(raw.images, mnist_test.images)
    assert raw.labels is not None and mnist_test.labels is not None
    assert torch.equal(raw.labels, mnist_test.labels)


def test_gan_data_dir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_split(tmp_path, _noise((3, 28, 28)), np.array([1, 2, 3]))
    monkeypatch.setenv("GAN_DATA_DIR", str(tmp_path))
    assert mnist.default_mnist_dir() == tmp_path
    got = load_dataset("mnist", None, resolution=28, channels=1, split="test")
    assert got.labels is not None and got.labels.tolist() == [1, 2, 3]
    assert got.info["path"] == str(tmp_path.resolve())


def test_load_dataset_mnist_identity_keeps_bytes(mnist_test: ImageData) -> None:
    got = load_dataset("mnist", None, resolution=28, channels=1, split="test", limit=500)
    assert torch.equal(got.images, mnist_test.images[:500])
    assert got.labels is not None and mnist_test.labels is not None
    assert torch.equal(got.labels, mnist_test.labels[:500])


@pytest.mark.parametrize(("res", "ch"), [(32, 1), (32, 3), (64, 1)])
def test_load_dataset_mnist_converted(res: int, ch: int, mnist_test: ImageData) -> None:
    got = load_dataset("mnist", None, resolution=res, channels=ch, split="test", limit=20)
    assert got.images.dtype == torch.uint8 and tuple(got.images.shape) == (20, ch, res, res)
    assert got.labels is not None and got.labels.tolist() == mnist_test.labels[:20].tolist()  # type: ignore[index]
    # Exactly what the service computes for the same digit uploaded as a PNG.
    for i in (0, 19):
        digit = Image.fromarray(mnist_test.images[i, 0].numpy(), "L")
        np.testing.assert_array_equal(
            got.images[i].numpy(), preprocess.to_model_pixels(digit, res, ch)
        )
    info = got.info
    assert info["name"] == "mnist" and info["split"] == "test" and info["num_images"] == 20
    assert info["source_num_images"] == 10000 and info["limit"] == 20
    assert (info["resolution"], info["channels"]) == (res, ch)
    assert info["preprocess"] == preprocess.preprocess_description(res, ch)
    json.dumps(info)  # goes into config.json


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist; pass --data-dir, set GAN_DATA_DIR"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("folder", tmp_path / "nope", resolution=28, channels=1)


def test_not_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(DataError, match="is not a directory"):
        load_mnist(f)
    with pytest.raises(DataError, match="is not a directory"):
        load_dataset("folder", f, resolution=28, channels=1)


def test_missing_idx_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"neither t10k-images-idx3-ubyte.gz nor .* --download"):
        load_mnist(tmp_path, split="test")


def test_wrong_magic(tmp_path: Path) -> None:
    _write_split(tmp_path, _noise((2, 28, 28)), np.array([1, 2]))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataError, match="bad magic number"):
        load_mnist(tmp_path, split="test")


def test_wrong_element_type_and_ndim() -> None:
    with pytest.raises(DataError, match="element type 0x0d"):
        parse_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 0]), "x", 1)
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        parse_idx(_idx(np.zeros(4)), "x", 3)


def test_truncated_idx(tmp_path: Path) -> None:
    _write_split(tmp_path, _noise((4, 28, 28)), np.array([1, 2, 3, 4]))
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated or corrupted"):
        load_mnist(tmp_path, split="test")
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(DataError, match="truncated IDX header"):
        load_mnist(tmp_path, split="test")


def test_corrupt_gzip(tmp_path: Path) -> None:
    _write_split(tmp_path, _noise((4, 28, 28)), np.array([1, 2, 3, 4]), gz=True)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(DataError, match=r"not a valid gzip file .* delete it"):
        load_mnist(tmp_path, split="test")


def test_mismatched_counts(tmp_path: Path) -> None:
    _write_split(tmp_path, _noise((3, 28, 28)), np.array([1, 2]), gz=True)
    with pytest.raises(DataError, match="3 images but 2 labels in the test split"):
        load_mnist(tmp_path, split="test")


def test_unknown_dataset_bad_split_bad_target(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'; use one of mnist, folder"):
        load_dataset("cifar", None, resolution=28, channels=1)
    with pytest.raises(DataError, match="unknown MNIST split 'validation'; use 'train' or 'test'"):
        load_dataset("mnist", None, resolution=28, channels=1, split="validation")
    with pytest.raises(DataError, match="unknown MNIST split"):
        load_mnist(split="val")
    with pytest.raises(DataError, match="image folders have no 'test' split"):
        load_dataset("folder", tmp_path, resolution=28, channels=1, split="test")
    with pytest.raises(DataError, match="channels must be 1"):
        load_dataset("mnist", None, resolution=28, channels=2)
    with pytest.raises(DataError, match="resolution must be a positive integer"):
        load_dataset("mnist", None, resolution=0, channels=1)
    with pytest.raises(DataError, match="limit must be a positive integer"):
        load_dataset("mnist", None, resolution=28, channels=1, limit=0)
    with pytest.raises(DataError, match="needs a data directory"):
        load_dataset("folder", None, resolution=28, channels=1)


# ---- image folders ----------------------------------------------------------------------------


def _save(path: Path, img: Image.Image, fmt: str | None = None, **kw: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kw)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    _save(root / "a_gray.png", Image.fromarray(_noise((30, 40), 1), "L"))
    rgba = _noise((20, 20, 4), 2)
    _save(root / "sub" / "b_rgba.png", Image.fromarray(rgba, "RGBA"))
    pal = Image.fromarray(_noise((12, 18), 3) % 4, "L").convert("P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255] + [0] * 756)
    _save(root / "sub" / "deeper" / "c_palette.png", pal, transparency=0)
    _save(root / "d_16bit.png", Image.fromarray(_noise((16, 16), 4).astype(np.uint16) * 257))
    _save(root / "e_cmyk.jpg", Image.new("CMYK", (24, 16), (10, 200, 30, 5)), quality=95)
    _save(root / "f.webp", Image.fromarray(_noise((16, 32, 3), 5), "RGB"), lossless=True)
    _save(root / "g.bmp", Image.fromarray(_noise((16, 16, 3), 6), "RGB"))
    _save(root / "h.gif", Image.fromarray(_noise((16, 16), 7), "L"))
    _save(root / "UPPER.PNG", Image.new("L", (16, 16), 99))
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_of_mixed_images(mixed_folder: Path) -> None:
    got, warns = _load_folder(mixed_folder)
    assert got.images.dtype == torch.uint8 and tuple(got.images.shape) == (9, 3, 16, 16)
    assert got.labels is None
    assert len(warns) == 1
    msg = str(warns[0].message)
    assert "skipped 1 of 10 image files" in msg and "sub/broken.png" in msg
    info = got.info
    assert info["name"] == "folder" and info["num_images"] == 9 and info["num_files"] == 10
    assert info["num_skipped"] == 1 and info["skipped"] == ["sub/broken.png"]
    assert info["num_ignored_files"] == 1  # notes.txt
    assert len(info["fingerprint"]) == 64 and info["split"] == "train"
    assert info["preprocess"] == preprocess.preprocess_description(16, 3)
    assert info["path"] == str(mixed_folder.resolve())
    json.dumps(info)
    # Sorted relative paths, each converted exactly as the service would convert the upload.
    expected_order = [
        "UPPER.PNG",
        "a_gray.png",
        "d_16bit.png",
        "e_cmyk.jpg",
        "f.webp",
        "g.bmp",
        "h.gif",
        "sub/b_rgba.png",
        "sub/deeper/c_palette.png",
    ]
    for i, rel in enumerate(expected_order):
        upload = preprocess.open_image((mixed_folder / rel).read_bytes())
        np.testing.assert_array_equal(
            got.images[i].numpy(), preprocess.to_model_pixels(upload, 16, 3), err_msg=rel
        )
    assert int(got.images[0].min()) == 99 == int(got.images[0].max())


def test_folder_gray_model(mixed_folder: Path) -> None:
    got, warns = _load_folder(mixed_folder, resolution=8, channels=1)
    assert tuple(got.images.shape) == (9, 1, 8, 8) and len(warns) == 1


def test_folder_cache_hit_does_not_decode(
    mixed_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = _load_folder(mixed_folder)
    assert first.info["cache_hit"] is False
    cache = Path(first.info["cache"])
    assert cache.parent == default_cache_dir() and cache.suffix == ".safetensors"
    assert not [p for p in mixed_folder.rglob("*") if "cache" in p.name]  # input left alone

    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(preprocess, "open_image", boom)
    second, warns = _load_folder(mixed_folder)
    assert second.info["cache_hit"] is True
    assert torch.equal(second.images, first.images)
    assert second.info["fingerprint"] == first.info["fingerprint"]
    assert len(warns) == 1 and "sub/broken.png" in str(warns[0].message)  # still reported


def test_folder_cache_invalidation(mixed_folder: Path) -> None:
    first, _ = _load_folder(mixed_folder)
    # Changing a file (new content and mtime) invalidates the cache.
    target = mixed_folder / "g.bmp"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    changed, _ = _load_folder(mixed_folder)
    assert changed.info["cache_hit"] is False
    assert changed.info["fingerprint"] != first.info["fingerprint"]
    assert changed.images[5].reshape(3, -1)[:, 0].tolist() == [1, 2, 3]
    # Adding a file too; and a different resolution is a separate cache entry.
    _save(mixed_folder / "new" / "z.png", Image.new("L", (16, 16), 7))
    added, _ = _load_folder(mixed_folder)
    assert added.info["cache_hit"] is False and len(added) == 10
    assert _load_folder(mixed_folder)[0].info["cache_hit"] is True
    other, _ = _load_folder(mixed_folder, resolution=8)
    assert other.info["cache_hit"] is False and tuple(other.images.shape[1:]) == (3, 8, 8)
    # Removing the file restores the earlier fingerprint and hits that cache.
    shutil.rmtree(mixed_folder / "new")
    back, _ = _load_folder(mixed_folder)
    assert back.info["cache_hit"] is True
    assert back.info["fingerprint"] == changed.info["fingerprint"]


def test_folder_corrupt_cache_is_rebuilt(mixed_folder: Path) -> None:
    first, _ = _load_folder(mixed_folder)
    Path(first.info["cache"]).write_bytes(b"garbage, not safetensors")
    again, _ = _load_folder(mixed_folder)
    assert again.info["cache_hit"] is False and torch.equal(again.images, first.images)
    assert _load_folder(mixed_folder)[0].info["cache_hit"] is True


def test_folder_explicit_and_default_cache_dir(
    mixed_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(p.relative_to(mixed_folder) for p in mixed_folder.rglob("*"))
    explicit = tmp_path / "my-cache"
    got, _ = _load_folder(mixed_folder, cache_dir=explicit)
    assert Path(got.info["cache"]).parent == explicit
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "gan-serve" / "datasets"
    assert Path(_load_folder(mixed_folder)[0].info["cache"]).parent == default_cache_dir()
    # The input folder is never written to.
    assert sorted(p.relative_to(mixed_folder) for p in mixed_folder.rglob("*")) == before


def test_cache_keeps_to_its_size_cap(
    mixed_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    a = Path(_load_folder(mixed_folder, cache_dir=cache, resolution=8)[0].info["cache"])
    size = a.stat().st_size
    os.utime(a, (1, 1))  # long unused
    monkeypatch.setenv("GAN_DATA_CACHE_MAX_BYTES", str(size + size // 2))
    b = Path(_load_folder(mixed_folder, cache_dir=cache, resolution=16)[0].info["cache"])
    assert b.is_file() and not a.exists()  # the least recently used entry made room
    monkeypatch.setenv("GAN_DATA_CACHE_MAX_BYTES", "0")
    c = Path(_load_folder(mixed_folder, cache_dir=cache, resolution=12)[0].info["cache"])
    assert c.is_file() and not b.exists()  # the entry in use always stays
    monkeypatch.setenv("GAN_DATA_CACHE_MAX_BYTES", "lots")
    with pytest.raises(DataError, match="GAN_DATA_CACHE_MAX_BYTES"):
        _load_folder(mixed_folder, cache_dir=cache, resolution=10)


def test_folder_cache_write_failure_is_a_warning(mixed_folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache directory should be")
    got, warns = _load_folder(mixed_folder, cache_dir=blocker / "cache")
    assert len(got) == 9 and got.info["cache"] is None
    assert any("could not write the dataset cache" in str(w.message) for w in warns)


def test_folder_decompression_bomb_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path / "small.png", Image.new("L", (20, 20), 5))
    _save(tmp_path / "huge.png", Image.new("L", (40, 40), 5))  # 1600 pixels
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 1000)
    got, warns = _load_folder(tmp_path)
    assert len(got) == 1 and len(warns) == 1
    assert "huge.png" in str(warns[0].message) and "the limit is 1000 pixels" in str(
        warns[0].message
    )


def test_folder_many_skipped_single_warning(tmp_path: Path) -> None:
    _save(tmp_path / "ok.png", Image.new("L", (4, 4)))
    for i in range(8):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = tmp_path / "trunc.png"
    _save(good, Image.fromarray(_noise((64, 64)), "L"))
    good.write_bytes(good.read_bytes()[:200])  # truncated PNG
    got, warns = _load_folder(tmp_path, resolution=4, channels=1)
    assert len(got) == 1 and len(warns) == 1
    msg = str(warns[0].message)
    assert "skipped 9 of 10 image files" in msg and "and 4 more" in msg
    assert got.info["num_skipped"] == 9


def test_folder_dangling_symlink_is_skipped(tmp_path: Path) -> None:
    _save(tmp_path / "ok.png", Image.new("L", (4, 4)))
    (tmp_path / "gone.png").symlink_to(tmp_path / "does-not-exist.png")
    got, warns = _load_folder(tmp_path, resolution=4, channels=1)
    assert len(got) == 1 and len(warns) == 1 and "gone.png" in str(warns[0].message)


def test_folder_no_images(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("x")
    _save(tmp_path / ".hidden" / "x.png", Image.new("L", (4, 4)))  # hidden folders are skipped
    with pytest.raises(DataError) as err:
        load_dataset("folder", tmp_path, resolution=28, channels=1)
    msg = str(err.value)
    assert "no images found" in msg and "1 other file(s) were ignored" in msg
    for ext in IMAGE_EXTENSIONS:
        assert ext in msg


def test_folder_nothing_decodable(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 image files"):
        _load_folder(tmp_path)


def test_folder_limit(mixed_folder: Path) -> None:
    got, warns = _load_folder(mixed_folder, limit=3)
    assert len(got) == 3 and warns == [] and got.info["limit"] == 3


def test_folder_progress_bar(mixed_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _load_folder(mixed_folder, progress=True)
    assert "decoding images" in capsys.readouterr().err
