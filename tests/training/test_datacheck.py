"""``gan-data check``: a folder with broken, duplicate, RGBA, 16-bit and off-size files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan import preprocess
from training.cli import data_main
from training.datacheck import check_folder, format_report


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "shapes"
    for i in range(4):  # 4 RGB discs at 40x40 (downscaled to 32)
        _png(root / "discs" / f"d{i}.png", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    shutil.copy(root / "discs" / "d0.png", root / "discs" / "copy.png")  # same bytes
    # 2 squares: one RGBA, one 16-bit gray at 20x30 (upscaled and cropped)
    _png(root / "squares" / "rgba.png", rng.integers(0, 255, (32, 32, 4), dtype=np.uint8))
    sixteen = rng.integers(0, 65535, (30, 20), dtype=np.uint16)
    Image.fromarray(sixteen).save(root / "squares" / "gray16.png")
    (root / "squares" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (root / "squares" / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


def test_check_folder_counts_everything(folder: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    report = check_folder(folder, resolution=32, channels=3, sheet=sheet)
    assert report.image_files == 9
    assert report.other_files == 1
    assert report.readable == 7
    assert sorted(r for r, _ in report.unreadable) == ["squares/broken.png", "squares/empty.png"]
    assert all(why for _, why in report.unreadable)
    assert report.modes["RGB"] == 5 and report.modes["RGBA"] == 1
    assert any(m.startswith("I") for m in report.modes)  # the 16-bit file (I;16 or I)
    # the two unreadable files sit in squares/: counted out of the class balance
    assert report.classes == {"discs": 5, "squares": 2}
    assert report.imbalance == pytest.approx(2.5)
    assert report.duplicate_bytes == [["discs/copy.png", "discs/d0.png"]]
    assert report.duplicate_pixels == [["discs/copy.png", "discs/d0.png"]]
    conv = report.conversion
    assert conv["downscaled"] == 5
    assert conv["upscaled"] == 1
    assert conv["centre-cropped to square"] == 1
    assert conv["alpha composited on black"] == 1
    assert conv["16-bit scaled to 8-bit"] == 1
    assert conv["gray replicated to RGB"] == 1
    assert report.min_side == 20 and report.max_side == 40
    assert any("--augment" in n for n in report.notes)
    assert any("imbalanced" in n for n in report.notes)
    # the sheet is the 7 converted images on a grid of 32x32 cells
    with Image.open(sheet) as img:
        assert img.mode == "RGB"
        assert img.width >= 32 * 3 and img.height >= 32 * 2
        first_cell = np.asarray(img)[2:34, 2:34]  # grids are padded by 2 px
    with Image.open(folder / "discs" / "copy.png") as first:  # sorted first readable file
        expected = preprocess.to_model_pixels(first, 32, 3).transpose(1, 2, 0)
    assert np.array_equal(first_cell, expected)
    text = format_report(report)
    assert "unreadable 2" in text and "squares/broken.png" in text
    assert "1 identical files, 1 identical after conversion" in text
    line = report.summary_line()
    assert line.startswith("7 readable images of 9 files; 2 classes (discs 5, squares 2)")


def test_gray_model_reports_colour_conversion(folder: Path) -> None:
    report = check_folder(folder, resolution=28, channels=1, sheet=None)
    assert report.conversion["colour converted to gray"] == 6  # 5 RGB + the RGBA
    assert any("--channels 3" in n for n in report.notes)
    assert report.sheet is None


def test_cli_prints_report_and_writes_json(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    sheet = tmp_path / "contact.png"
    args = ["check", str(folder), "--resolution", "32", "--channels", "3"]
    code = data_main([*args, "--sheet", str(sheet), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "classes     2: discs 5, squares 2" in printed
    assert sheet.is_file()
    data = json.loads(out.read_text())
    assert data["readable"] == 7 and data["summary"].startswith("7 readable images")


GAN_DATA = "import sys; from training.cli import data_main; sys.exit(data_main(sys.argv[1:]))"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    for args in (
        ["check", str(tmp_path / "missing")],
        ["check", str(tmp_path), "--resolution", "48"],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", GAN_DATA, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_folder_with_no_readable_image_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"nope")
    assert data_main(["check", str(tmp_path), "--sheet", "none"]) == 1
