"""What an image folder holds and what training will make of it.

Before any training starts: counts and sizes, Pillow modes (L, RGB, alpha, 16-bit, palette,
...), the classes (first-level sub-folders, the ImageFolder convention that ``--conditional``
uses) and their balance, unreadable files with the reason, duplicates (the same bytes, and the
same pixels after conversion), what the conversion to the model's resolution and channels does
(upscaled, downscaled, cropped, alpha composited on black, 16-bit scaled, colour to gray), and a
contact sheet PNG of the converted images exactly as the model will see them.

Every file is decoded with the same code as ``gan-train`` (:mod:`gan.preprocess`), so a file
reported unreadable here is one that training skips.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gan import preprocess
from gan.models import SUPPORTED_CHANNELS, SUPPORTED_RESOLUTIONS
from training.config import FOLDER_DEFAULTS_MAX_IMAGES
from training.folder import IMAGE_EXTENSIONS, folder_classes, scan_folder
from training.imagedata import DataError

#: Below this many images, ``--augment`` (augmentation of real and fake images before D) is
#: what keeps D from memorising the set (Karras et al. 2020 see it matter below ~10k images),
#: and gan-train applies its folder defaults (training/config.py).
SMALL_FOLDER = FOLDER_DEFAULTS_MAX_IMAGES
#: Most images drawn on the contact sheet.
SHEET_MAX = 64
#: Files named per problem in the text report (the JSON report lists them all).
NAMES_SHOWN = 5
#: Classes whose largest/smallest count ratio exceeds this are reported as imbalanced.
IMBALANCE_RATIO = 1.5

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass
class FolderReport:
    """Everything ``gan-data check`` found (also its ``--json`` output)."""

    directory: str
    resolution: int
    channels: int
    image_files: int = 0
    other_files: int = 0
    total_bytes: int = 0
    readable: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    #: Width x height of the decoded files: extremes and the most common sizes.
    sizes: dict[str, int] = field(default_factory=dict)
    min_side: int | None = None
    max_side: int | None = None
    classes: dict[str, int] = field(default_factory=dict)
    duplicate_bytes: list[list[str]] = field(default_factory=list)
    duplicate_pixels: list[list[str]] = field(default_factory=list)
    #: What the conversion does, as counts of files: upscaled, downscaled, cropped, ...
    conversion: dict[str, int] = field(default_factory=dict)
    #: Mean share of each image's area that the centre crop removes.
    mean_cropped_share: float = 0.0
    animated: int = 0
    notes: list[str] = field(default_factory=list)
    sheet: str | None = None

    @property
    def imbalance(self) -> float | None:
        """Largest class count over the smallest (None without classes)."""
        if len(self.classes) < 2:
            return None
        counts = self.classes.values()
        return max(counts) / max(1, min(counts))

    def summary_line(self) -> str:
        """One line: what ``gan-train`` prints at start."""
        parts = [f"{self.readable} readable images of {self.image_files} files"]
        if self.classes:
            counts = ", ".join(f"{k} {v}" for k, v in self.classes.items())
            parts.append(f"{len(self.classes)} classes ({counts})")
        else:
            parts.append("no classes")
        parts.append(f"modes {', '.join(f'{m} {n}' for m, n in self.modes.items()) or 'none'}")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable")
        dups = sum(len(g) - 1 for g in self.duplicate_pixels)
        if dups:
            parts.append(f"{dups} duplicates")
        parts.append(f"converted to {self.channels}x{self.resolution}x{self.resolution}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["imbalance"] = self.imbalance
        out["summary"] = self.summary_line()
        return out


def _conversion_of(decoded: preprocess.DecodedImage, resolution: int, channels: int) -> list[str]:
    """The steps of :func:`gan.preprocess.to_model_pixels` that change this image."""
    steps: list[str] = []
    mode = decoded.mode
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in decoded.image.info):
        steps.append("alpha composited on black")
    if mode in SIXTEEN_BIT_MODES:
        steps.append("16-bit scaled to 8-bit")
    if mode == "F":
        steps.append("float pixels scaled to 8-bit")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        steps.append(f"{mode} converted to RGB")
    colour = mode not in ("L", "1", "LA", "La", "F") and mode not in SIXTEEN_BIT_MODES
    if channels == 1 and colour:
        steps.append("colour converted to gray")
    if channels == 3 and not colour:
        steps.append("gray replicated to RGB")
    w, h = decoded.width, decoded.height
    if min(w, h) < resolution:
        steps.append("upscaled")
    elif min(w, h) > resolution:
        steps.append("downscaled")
    if w != h:
        steps.append("centre-cropped to square")
    if decoded.frames > 1:
        steps.append("first frame of an animation")
    return steps


def _groups(keys: dict[str, list[str]]) -> list[list[str]]:
    return sorted((sorted(v) for v in keys.values() if len(v) > 1), key=lambda g: g[0])


def check_folder(
    directory: str | Path,
    *,
    resolution: int = 28,
    channels: int = 1,
    sheet: Path | None = None,
) -> FolderReport:
    """Read every image file under ``directory`` and report; write the contact sheet to
    ``sheet`` when given. :class:`DataError` if the folder does not exist."""
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; pass a folder of images")
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise DataError(
            f"--resolution must be one of {', '.join(map(str, SUPPORTED_RESOLUTIONS))}, "
            f"got {resolution}"
        )
    if channels not in SUPPORTED_CHANNELS:
        raise DataError(f"--channels must be 1 or 3, got {channels}")
    files, other = scan_folder(root)
    report = FolderReport(str(root), resolution, channels, len(files), other)
    by_bytes: dict[str, list[str]] = {}
    by_pixels: dict[str, list[str]] = {}
    formats: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    conversion: Counter[str] = Counter()
    cropped: list[float] = []
    converted: list[tuple[str, np.ndarray]] = []
    for rel in files:
        path = root / rel
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.unreadable.append((rel, f"cannot read: {exc.strerror or exc}"))
            continue
        report.total_bytes += len(data)
        by_bytes.setdefault(hashlib.sha256(data).hexdigest(), []).append(rel)
        try:
            decoded = preprocess.decode_image(data)
            pixels = preprocess.to_model_pixels(decoded.image, resolution, channels)
        except preprocess.ImageDecodeError as exc:
            report.unreadable.append((rel, str(exc)))
            continue
        except Exception as exc:  # what training would skip too; never a traceback here
            report.unreadable.append((rel, repr(exc)))
            continue
        report.readable += 1
        formats[decoded.format] += 1
        modes[decoded.mode] += 1
        sizes[f"{decoded.width}x{decoded.height}"] += 1
        side = min(decoded.width, decoded.height)
        report.min_side = side if report.min_side is None else min(report.min_side, side)
        longer = max(decoded.width, decoded.height)
        report.max_side = longer if report.max_side is None else max(report.max_side, longer)
        cropped.append(1.0 - side / longer)
        report.animated += decoded.frames > 1
        conversion.update(_conversion_of(decoded, resolution, channels))
        by_pixels.setdefault(hashlib.sha256(pixels.tobytes()).hexdigest(), []).append(rel)
        converted.append((rel, pixels))
    report.formats = dict(formats.most_common())
    report.modes = dict(modes.most_common())
    report.sizes = dict(sizes.most_common(8))
    report.conversion = dict(conversion.most_common())
    report.mean_cropped_share = float(np.mean(cropped)) if cropped else 0.0
    report.duplicate_bytes = _groups(by_bytes)
    report.duplicate_pixels = _groups(by_pixels)
    classes, labels = folder_classes(files, {rel for rel, _ in report.unreadable})
    if labels is not None:
        counts = Counter(int(i) for i in labels.tolist())
        report.classes = {name: counts.get(i, 0) for i, name in enumerate(classes)}
    report.notes = _notes(report)
    if sheet is not None and converted:
        report.sheet = str(write_contact_sheet(converted, sheet))
    return report


def _notes(report: FolderReport) -> list[str]:
    """Advice a user can act on before training."""
    notes: list[str] = []
    if report.readable == 0:
        notes.append("no image can be used: training would stop at once")
        return notes
    if report.readable < SMALL_FOLDER:
        notes.append(
            f"{report.readable} images is a small set for a GAN: gan-train augments it "
            "(--augment diff, one of its folder defaults) so that D does not memorise it"
        )
    if report.min_side is not None and report.min_side < report.resolution:
        notes.append(
            f"{report.conversion.get('upscaled', 0)} images are smaller than "
            f"{report.resolution} px on their shorter side and will be upscaled (blurred)"
        )
    if report.mean_cropped_share > 0.1:
        notes.append(
            f"the centre crop removes {report.mean_cropped_share:.0%} of an image on average: "
            "crop the images to squares yourself if their subjects are off-centre"
        )
    colour = sum(n for m, n in report.modes.items() if m in ("RGB", "RGBA", "P", "CMYK"))
    if report.channels == 1 and colour > report.readable / 2:
        notes.append("most images are in colour: --channels 3 keeps the colour")
    imbalance = report.imbalance
    if imbalance is not None and imbalance > IMBALANCE_RATIO:
        notes.append(
            f"the classes are imbalanced (largest {imbalance:.1f}x the smallest): a "
            "--conditional model still draws every class equally often"
        )
    if not report.classes:
        notes.append(
            "no classes: put the images in two or more sub-folders (one per class) for "
            "--conditional"
        )
    dups = sum(len(g) - 1 for g in report.duplicate_pixels)
    if dups:
        notes.append(f"{dups} images duplicate others after conversion; they weigh double")
    return notes


def write_contact_sheet(converted: Sequence[tuple[str, np.ndarray]], out: Path) -> Path:
    """Up to :data:`SHEET_MAX` converted images, spread evenly over the folder (and so over
    its classes, which are sorted sub-folders), as one PNG grid."""
    from gan.io import make_grid, save_png

    picks = np.linspace(0, len(converted) - 1, min(SHEET_MAX, len(converted))).round()
    chosen = [converted[int(i)][1] for i in dict.fromkeys(picks.astype(int).tolist())]
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_png(make_grid(np.stack(chosen)), out)


def _names(pairs: Sequence[Any]) -> str:
    shown = ", ".join(str(p) for p in pairs[:NAMES_SHOWN])
    more = len(pairs) - NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def format_report(report: FolderReport) -> str:
    """The text ``gan-data check`` prints."""
    mb = report.total_bytes / 1e6
    size = f"{mb:.1f} MB" if mb >= 0.1 else f"{report.total_bytes / 1e3:.0f} kB"
    lines = [
        f"folder      {report.directory}",
        f"files       {report.image_files} image files ({size}), "
        f"{report.other_files} other files ignored (extensions: {', '.join(IMAGE_EXTENSIONS)})",
        f"readable    {report.readable}; unreadable {len(report.unreadable)}"
        + (
            f": {_names([f'{r} ({why})' for r, why in report.unreadable])}"
            if report.unreadable
            else ""
        ),
        f"formats     {', '.join(f'{k} {v}' for k, v in report.formats.items()) or '-'}",
        f"modes       {', '.join(f'{k} {v}' for k, v in report.modes.items()) or '-'}",
        f"sizes       {', '.join(f'{k} ({v})' for k, v in report.sizes.items()) or '-'}"
        + (
            f"; sides from {report.min_side} to {report.max_side} px"
            if report.min_side is not None
            else ""
        ),
    ]
    if report.classes:
        counts = ", ".join(f"{k} {v}" for k, v in report.classes.items())
        balance = f", largest/smallest {report.imbalance:.2f}" if report.imbalance else ""
        lines.append(f"classes     {len(report.classes)}: {counts}{balance}")
    else:
        lines.append("classes     none (images are not all in two or more sub-folders)")
    dup_b = sum(len(g) - 1 for g in report.duplicate_bytes)
    dup_p = sum(len(g) - 1 for g in report.duplicate_pixels)
    lines.append(
        f"duplicates  {dup_b} identical files, {dup_p} identical after conversion"
        + (f": {_names([' = '.join(g) for g in report.duplicate_pixels])}" if dup_p else "")
    )
    target = f"{report.channels}x{report.resolution}x{report.resolution}"
    steps = ", ".join(f"{k} {v}" for k, v in report.conversion.items()) or "nothing to change"
    lines.append(f"conversion  to {target} uint8: {steps}")
    if report.conversion.get("centre-cropped to square"):
        lines.append(
            f"            the crop removes {report.mean_cropped_share:.0%} of an image on average"
        )
    if report.sheet:
        lines.append(f"sheet       {report.sheet} (the converted images as the model sees them)")
    lines.extend(f"note        {n}" for n in report.notes)
    return "\n".join(lines)
