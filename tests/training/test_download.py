"""training.mnist.download_mnist against local HTTP mirrors (127.0.0.1 only, never the internet)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import shutil
import socket
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from training import data
from training.data import DataError, load_dataset
from training.mnist import MNIST_SHA256, default_mnist_dir, download_mnist

STEMS = list(MNIST_SHA256)


class _Mirror:
    """A directory served over HTTP on a free local port, recording the paths requested."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_GET(self) -> None:
                mirror.requests.append(self.path)
                super().do_GET()

        handler = functools.partial(Handler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def good_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("good")
    shutil.copytree(default_mnist_dir(), root / "mnist")
    return root


@pytest.fixture(scope="module")
def bad_root(tmp_path_factory: pytest.TempPathFactory, good_root: Path) -> Path:
    """A broken mirror: one file with altered content (valid gzip, wrong checksum), one that is
    not gzip at all, one missing (404) and one good."""
    root = tmp_path_factory.mktemp("bad")
    (root / "mnist").mkdir()
    labels = gzip.decompress((good_root / "mnist" / "train-labels-idx1-ubyte.gz").read_bytes())
    altered = labels[:-1] + bytes([(labels[-1] + 1) % 256])
    (root / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(altered))
    (root / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    shutil.copy(good_root / "mnist" / "train-images-idx3-ubyte.gz", root / "mnist")
    return root


@pytest.fixture
def good(good_root: Path) -> Iterator[_Mirror]:
    m = _Mirror(good_root)
    yield m
    m.close()


@pytest.fixture
def bad(bad_root: Path) -> Iterator[_Mirror]:
    m = _Mirror(bad_root)
    yield m
    m.close()


def _content_sha(path: Path) -> str:
    return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()


def _assert_complete(dest: Path) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(s + ".gz" for s in STEMS)
    for stem, sha in MNIST_SHA256.items():
        assert _content_sha(dest / (stem + ".gz")) == sha


def test_download_success(
    tmp_path: Path, good: _Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "nested" / "mnist"
    assert download_mnist(dest, mirrors=[good.url], progress=True) == dest
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # tqdm progress bar
    _assert_complete(dest)
    assert sorted(good.requests) == sorted(f"/mnist/{s}.gz" for s in STEMS)
    loaded = load_dataset("mnist", dest, resolution=28, channels=1, split="test", limit=5)
    assert loaded.labels is not None and loaded.labels.tolist() == [7, 2, 1, 0, 4]


def test_download_falls_back_to_next_mirror(tmp_path: Path, bad: _Mirror, good: _Mirror) -> None:
    dest = tmp_path / "mnist"
    download_mnist(dest, mirrors=[bad.url, good.url], progress=False)
    _assert_complete(dest)
    # train-images came from the first mirror; the three broken files from the second.
    assert sorted(bad.requests) == sorted(f"/mnist/{s}.gz" for s in STEMS)
    assert sorted(good.requests) == sorted(
        f"/mnist/{s}.gz"
        for s in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )


def test_download_all_mirrors_fail(tmp_path: Path, bad: _Mirror) -> None:
    # A port nobody listens on: connection refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/mnist/"
    dest = tmp_path / "mnist"
    with pytest.raises(DataError) as err:
        download_mnist(dest, mirrors=[bad.url, dead], progress=False)
    msg = str(err.value)
    assert "train-labels-idx1-ubyte.gz from any of 2 mirror(s)" in msg
    assert f"{bad.url}train-labels-idx1-ubyte.gz: checksum mismatch" in msg
    assert f"{dead}train-labels-idx1-ubyte.gz: " in msg and "refused" in msg.lower()
    assert "copy the four MNIST .gz files" in msg
    # The good file was kept; nothing partial or corrupt was left behind.
    assert sorted(p.name for p in dest.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_download_reports_404_and_non_gzip(tmp_path: Path, bad: _Mirror) -> None:
    (tmp_path / "mnist").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        shutil.copy(default_mnist_dir() / (stem + ".gz"), tmp_path / "mnist")
    with pytest.raises(DataError) as err:
        download_mnist(tmp_path / "mnist", mirrors=[bad.url], progress=False)
    assert "not a valid gzip file" in str(err.value)  # t10k-images is HTML
    assert not list((tmp_path / "mnist").glob("*.part")) and not list(
        (tmp_path / "mnist").glob(".*")
    )


def test_download_404(tmp_path: Path, bad: _Mirror, good_root: Path) -> None:
    dest = tmp_path / "mnist"
    dest.mkdir()
    for stem in STEMS[:3]:
        shutil.copy(good_root / "mnist" / (stem + ".gz"), dest)
    with pytest.raises(DataError, match="404"):
        download_mnist(dest, mirrors=[bad.url], progress=False)


def test_download_times_out_and_falls_through(tmp_path: Path, good: _Mirror) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hang = f"http://127.0.0.1:{silent.getsockname()[1]}/mnist/"
        dest = tmp_path / "mnist"
        download_mnist(dest, mirrors=[hang, good.url], timeout=0.2, progress=False)
    _assert_complete(dest)


def test_download_is_idempotent(tmp_path: Path, good: _Mirror) -> None:
    dest = tmp_path / "mnist"
    download_mnist(dest, mirrors=[good.url], progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    good.requests.clear()
    download_mnist(dest, mirrors=[good.url], progress=False)
    assert good.requests == []
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_download_accepts_raw_files_and_replaces_corrupt_ones(
    tmp_path: Path, good: _Mirror
) -> None:
    dest = tmp_path / "mnist"
    dest.mkdir()
    raw = gzip.decompress((default_mnist_dir() / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (dest / "t10k-labels-idx1-ubyte").write_bytes(raw)  # valid raw IDX: kept
    (dest / "train-labels-idx1-ubyte.gz").write_bytes(b"truncated")  # corrupt: replaced
    download_mnist(dest, mirrors=[good.url], progress=False)
    assert "/mnist/t10k-labels-idx1-ubyte.gz" not in good.requests
    assert "/mnist/train-labels-idx1-ubyte.gz" in good.requests
    assert (
        _content_sha(dest / "train-labels-idx1-ubyte.gz") == MNIST_SHA256["train-labels-idx1-ubyte"]
    )


def test_load_dataset_download_flag(
    tmp_path: Path, good: _Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "DEFAULT_MIRRORS", (good.url,))  # looked up by load_dataset
    dest = tmp_path / "fresh"
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", dest, resolution=28, channels=1, split="test")
    loaded = load_dataset(
        "mnist",
        dest,
        resolution=32,
        channels=1,
        split="test",
        download=True,
        limit=3,
        progress=False,
    )
    assert tuple(loaded.images.shape) == (3, 1, 32, 32)
    _assert_complete(dest)


def test_download_needs_a_mirror(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MNIST mirrors"):
        download_mnist(tmp_path / "m", mirrors=[], progress=False)


def test_download_dest_not_creatable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot create MNIST directory"):
        download_mnist(tmp_path / "file" / "mnist", mirrors=["http://127.0.0.1:9/"], progress=False)
