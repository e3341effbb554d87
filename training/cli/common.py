"""What every command line of the training package shares: user errors become one line."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TextIO

from gan.errors import UserError


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors (a bad value, an unknown option) are one
    ``error: ...`` line and exit status 2, like every other user error; ``--help`` still
    prints the whole usage."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} ({self.prog} --help lists the options)", file=sys.stderr)
        sys.exit(2)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` of the commands: ``warning: <message>`` on one line, without
    the source file and line Python shows by default."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=file if file is not None else sys.stderr)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings raised inside as one ``warning: ...`` line each."""
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        yield
    finally:
        warnings.showwarning = previous


def run_command(fn: Callable[[], int]) -> int:
    """``fn()``'s exit status; a UserError prints ``error: ...`` and is 2, Ctrl+C 130;
    warnings are one ``warning: ...`` line each."""
    try:
        with one_line_warnings():
            return fn()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse: usage error (2) or --help (0), already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2


# --------------------------------------------------------------------------------------------
# gan-train
# --------------------------------------------------------------------------------------------

#: Options that ``--resume`` may change; every other option is the run's own.


def calibration_line(entry: dict[str, Any]) -> str:
    """One line on a calibration entry of config.json (gan-train --export, gan-calibrate)."""
    drs = entry["drs"]
    at = drs["keep_levels"].index(0.8) if 0.8 in drs["keep_levels"] else -1
    return (
        f"{entry['kind']}, ECE {entry['ece']:.4f} (uncalibrated sigmoid: "
        f"{entry['ece_uncalibrated']:.4f}) on the halves of {entry['num_real']} held-out real "
        f"and {entry['num_fake']} generated images it was not fitted on; DRS accepts "
        f"{100 * drs['acceptance'][at]:.0f}% of proposals at keep {drs['keep_levels'][at]:g}"
    )


def apply_threads(threads: int | None) -> None:
    """``--threads N``: torch's CPU threads (None: torch's default); below 1 is a UserError."""
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
