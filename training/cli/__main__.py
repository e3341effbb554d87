"""``python -m training.cli``: gan-train (how torchrun starts each process of ``--nproc N``)."""

import sys

from training.cli.gan_train import train_main

sys.exit(train_main())
