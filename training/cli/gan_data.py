"""``gan-data check DIR``: look at an image folder before training on it
(:mod:`training.datacheck` does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gan.models import SUPPORTED_RESOLUTIONS
from training import datacheck
from training.cli.common import CliParser, run_command


def build_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="gan-data",
        description="Look at an image folder before training on it.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="counts, sizes, modes, classes, unreadable and duplicate files, the conversion",
        description=datacheck.__doc__.split("\n\n")[1] if datacheck.__doc__ else None,
    )
    check.add_argument("directory", type=Path, metavar="DIR", help="the image folder")
    check.add_argument(
        "--resolution",
        type=int,
        default=28,
        help=f"the model's resolution ({', '.join(map(str, SUPPORTED_RESOLUTIONS))}; default 28)",
    )
    check.add_argument("--channels", type=int, default=1, help="1 (gray) or 3 (RGB); default 1")
    check.add_argument(
        "--sheet",
        type=Path,
        default=None,
        help="contact sheet PNG (default: DIR-check.png beside the folder; 'none' for no sheet)",
    )
    check.add_argument("--json", type=Path, default=None, help="write the full report as JSON")
    return p


def data_cli(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    directory: Path = args.directory
    sheet: Path | None = args.sheet
    if sheet is None:
        sheet = directory.resolve().parent / f"{directory.resolve().name}-check.png"
    elif str(sheet) == "none":
        sheet = None
    report = datacheck.check_folder(
        directory, resolution=args.resolution, channels=args.channels, sheet=sheet
    )
    print(datacheck.format_report(report))
    if args.json is not None:
        from gan.io import write_json_atomic

        write_json_atomic(args.json, report.to_json())
    return 0 if report.readable else 1


def data_main(argv: list[str] | None = None) -> int:
    return run_command(lambda: data_cli(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(data_main())
