"""Command-line entry points: ``gan-train``, ``gan-sample``, ``gan-eval``, ``gan-calibrate``,
``gan-data``, ``gan-project``, ``gan-train-encoder`` and ``gan-export``.

Thin: they parse options and call the library. Any :class:`gan.errors.UserError` (bad paths,
options, broken checkpoints, classifiers or data) prints one ``error: ...`` line and exits with
status 2; they never show a traceback for something the user can fix. One module per command
(``gan_train``, with its options in ``train_options``; ``gan_sample``; ``gan_eval``;
``gan_calibrate``; ``gan_data``; ``gan_export``), the sampling-method options of gan-sample and gan-eval in ``methods``, and
``python -m training.cli`` is gan-train (torchrun starts it so).
"""

from __future__ import annotations

from training.cli.gan_calibrate import build_calibrate_parser, calibrate, calibrate_main
from training.cli.gan_data import data_main
from training.cli.gan_encoder import build_encoder_parser, encoder_main, train_encoder_cli
from training.cli.gan_eval import build_eval_parser, eval_cli, eval_main
from training.cli.gan_export import build_export_parser, export_cli, export_main
from training.cli.gan_project import build_project_parser, project_cli, project_main
from training.cli.gan_sample import sample, sample_main
from training.cli.gan_train import train, train_main
from training.cli.methods import add_method_arguments, method_options, method_summary
from training.cli.train_options import RESUME_OVERRIDES, build_train_parser

__all__ = [
    "RESUME_OVERRIDES",
    "add_method_arguments",
    "build_calibrate_parser",
    "build_encoder_parser",
    "build_eval_parser",
    "build_export_parser",
    "build_project_parser",
    "build_train_parser",
    "calibrate",
    "calibrate_main",
    "data_main",
    "encoder_main",
    "eval_cli",
    "eval_main",
    "export_cli",
    "export_main",
    "method_options",
    "method_summary",
    "project_cli",
    "project_main",
    "sample",
    "sample_main",
    "train",
    "train_encoder_cli",
    "train_main",
]
