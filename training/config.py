"""Every option of a training run, in one place: :class:`TrainConfig` and its command line.

Each field of :class:`TrainConfig` (and of the model's :class:`gan.models.ModelConfig`) carries
its help text; :func:`add_config_arguments` turns the fields into ``gan-train`` options and
:func:`config_from_args` turns parsed options back into a config, so a new option is one new
field here and nothing else. The config is saved in ``run.json`` and in every checkpoint.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gan.errors import UserError
from gan.kinds import MODEL_KINDS
from gan.models import (
    ARCHITECTURES,
    SUPPORTED_CHANNELS,
    SUPPORTED_RESOLUTIONS,
    ConfigError,
    ModelConfig,
)
from training.augment import parse_policies
from training.losses import LOSSES


class TrainingError(UserError):
    """A training run cannot start or continue; the message says what to fix."""


def _opt(default: Any, help: str, **cli: Any) -> Any:
    """A config field with its command-line help; ``cli`` holds extra argparse settings
    (``flag`` renames the option, ``negate`` makes a ``--no-x`` switch for a True default)."""
    return field(default=default, metadata={"help": help, **cli})


#: ``--mode``: what a run trains (docs/lecture.md): the name of a model kind (gan/kinds.py), or
#: ``ae``, the older spelling of the auto-encoders that ``--ae-kind`` picks between (``--mode ae``
#: alone is a vae, as it always was).
MODES = ("gan", "ae", "ebm", *(k for k in MODEL_KINDS if k not in ("gan", "ae", "ebm")))
AE_KINDS = ("vae", "plain")
#: ``--lr-schedule``, ``--gamma-schedule``, ``--beta2-schedule`` (training/schedules.py).
SCHEDULES = ("constant", "cosine")
_R3GAN: dict[str, Any] = {
    "arch": "r3gan",
    "loss": "rpgan",
    "beta1": 0.0,
    "beta2": 0.99,
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "r1_gamma": 0.1,
    "r1_every": 1,
    # R3GAN's schedules (brownvc/R3GAN train.py): lr 2e-4 -> 5e-5, gamma to a tenth, beta2
    # 0.9 -> 0.99, all cosine; the ratios are the fields' defaults. The EMA is StyleGAN2-ADA's
    # half-life for batch 64 (batch * 10 / 32 kimg) with its ramp-up of 0.05.
    "lr_schedule": "cosine",
    "gamma_schedule": "cosine",
    "beta2_schedule": "cosine",
    "ema_kimg": 20.0,
    "ema_rampup": 0.05,
}
#: ``--recipe``: named sets of defaults. ``dcgan`` is the default configuration as it stands;
#: ``r3gan`` the R3GAN baseline (Huang et al. 2025): its residual networks, the relativistic
#: pairing loss with R1 and R2, Adam with beta1 = 0, its cosine schedules and a half-life EMA;
#: ``r3gan-small`` the same at a CPU's size (one block per stage, no expansion, width 32).
#: Options given explicitly still win.
RECIPES: dict[str, dict[str, Any]] = {
    "dcgan": {},
    "r3gan": _R3GAN,
    "r3gan-small": {
        **_R3GAN,
        "g_width": 32,
        "d_width": 32,
        "blocks_per_stage": 1,
        "expansion": 1,
    },
}
#: Defaults of a new run on an image folder (``--data folder``) with fewer training images than
#: FOLDER_DEFAULTS_MAX_IMAGES, for every option neither given on the command line nor set by the
#: run's recipe: what measured best on small folders at equal CPU time (docs/training.md,
#: "Small folders"; bench/augment_folder.py). gan-train says which it applied.
FOLDER_DEFAULTS: dict[str, Any] = {"augment": "diff", "g_width": 32, "d_width": 32}
#: Added to FOLDER_DEFAULTS for a ``--conditional`` run: DiffAugment without cutout (53 % clean
#: shapes against 37 % with it, same coverage; an unconditional model lost coverage without it).
FOLDER_DEFAULTS_CONDITIONAL: dict[str, Any] = {"augment_policies": "color,translation"}
FOLDER_DEFAULTS_MAX_IMAGES = 10_000
#: ``--augment``: none, DiffAugment or ADA (a bare ``--augment`` is diff, as it always was).
AUGMENTS = ("none", "diff", "ada")


@dataclass
class TrainConfig:
    """Every option of a run (saved in run.json and in each checkpoint)."""

    mode: str = _opt(
        "gan",
        "what to train: gan (G and D, the default); vae (G alone: the decoder of a variational "
        "auto-encoder); ae with --ae-kind plain (G alone: a plain auto-encoder's decoder; "
        "--mode ae alone, or with --ae-kind vae, is the vae); or ebm (D alone: an energy-based "
        "model trained on negatives from Langevin search and sampled the same way). "
        "training/objectives/ holds each one's objective",
        choices=MODES,
    )
    ae_kind: str = _opt(
        "vae",
        "--mode ae: vae (pixel loss + KL, sampled from the prior N(0, I); the same as --mode "
        "vae) or plain (pixel loss only; its codes do not follow the prior, which is why "
        "sampling it fails)",
        choices=AE_KINDS,
    )
    ebm_steps: int = _opt(20, "--mode ebm: Langevin steps per negative in training")
    ebm_sample_steps: int = _opt(
        100,
        "--mode ebm: Langevin steps from uniform noise when sampling the checkpoint (0: "
        "--ebm-steps); at most the server's GAN_MAX_LANGEVIN_STEPS (default 100) to be served",
    )
    ebm_step_size: float = _opt(
        10.0, "--mode ebm: Langevin step size on D's clipped pixel gradient"
    )
    ebm_grad_clip: float = _opt(
        0.01, "--mode ebm: clip each pixel's gradient to +-this in a Langevin step"
    )
    ebm_noise: float = _opt(0.005, "--mode ebm: standard deviation of a Langevin step's noise")
    ebm_buffer: float = _opt(
        0.95,
        "--mode ebm: share of negatives continued from the replay buffer of earlier "
        "negatives (the rest start from fresh uniform noise); 0: short-run chains from noise",
    )
    ebm_buffer_size: int = _opt(10000, "--mode ebm: images in the replay buffer")
    ebm_alpha: float = _opt(
        0.1, "--mode ebm: weight of the L2 penalty alpha * (D(real)^2 + D(neg)^2) on D's logits"
    )
    ebm_clip_norm: float = _opt(
        1.0, "--mode ebm: clip the norm of D's parameter gradient to this (0: off)"
    )
    steps: int = _opt(5000, "G updates (iterations)")
    batch_size: int = _opt(64, "images per D and G update")
    d_steps: int = _opt(1, "D updates per G update")
    recipe: str = _opt(
        "dcgan",
        "a named set of defaults: dcgan (the options' own defaults); r3gan (--arch r3gan "
        "--loss rpgan --beta1 0 --beta2 0.99 --lr-g 2e-4 --lr-d 2e-4 --r1-gamma 0.1 "
        "--r1-every 1 --lr-schedule cosine --gamma-schedule cosine --beta2-schedule cosine "
        "--ema-kimg 20 --ema-rampup 0.05); or r3gan-small (r3gan with --g-width 32 --d-width 32 "
        "--blocks-per-stage 1 --expansion 1, sized for a CPU); options given explicitly "
        "override it",
        choices=tuple(RECIPES),
    )
    loss: str = _opt("nonsat", "GAN objective (training/losses.py)", choices=tuple(LOSSES))
    # Learning rates and beta2: the winner of bench/recipe_search.py (docs/training.md).
    lr_g: float = _opt(5e-4, "G's Adam learning rate")
    lr_d: float = _opt(5e-4, "D's Adam learning rate")
    beta1: float = _opt(0.5, "Adam beta1")
    beta2: float = _opt(0.99, "Adam beta2")
    # The penalty is (gamma / 2) * E||grad D(x)||^2 on real images; 0 disables it.
    r1_gamma: float = _opt(0.0, "R1 weight on real images (0: off)")
    r1_every: int = _opt(4, "lazy R1 interval: apply R1 every k D steps, scaled by k")
    ema_decay: float = _opt(
        0.999, "EMA of G (0: off, export the raw G, unless --ema-kimg is given)"
    )
    # The decay ramps as min(ema_decay, (1 + t) / (ema_warmup + t)).
    ema_warmup: int = _opt(100, "EMA warm-up steps")
    # The schedules (training/schedules.py): cosine from step 0 to --steps, the horizon.
    lr_schedule: str = _opt(
        "constant",
        "learning-rate schedule: constant, or cosine from --lr-g / --lr-d at step 0 to "
        "--lr-min-ratio times them at --steps (under --time-budget too: set --steps to what "
        "the budget holds, which gan-train prints after its first steps, for the decay to end "
        "with the budget)",
        choices=SCHEDULES,
    )
    lr_min_ratio: float = _opt(
        0.25, "--lr-schedule cosine: the final learning rate as a share of the first, in [0, 1]"
    )
    gamma_schedule: str = _opt(
        "constant",
        "schedule of the R1 (and rpgan's R2) weight: constant, or cosine from --r1-gamma at "
        "step 0 to --gamma-min-ratio times it at --steps",
        choices=SCHEDULES,
    )
    gamma_min_ratio: float = _opt(
        0.1, "--gamma-schedule cosine: the final gamma as a share of --r1-gamma, in [0, 1]"
    )
    beta2_schedule: str = _opt(
        "constant",
        "schedule of Adam's beta2: constant (--beta2), or cosine from --beta2-start at step 0 "
        "to --beta2 at --steps (R3GAN ramps it from 0.9 to 0.99)",
        choices=SCHEDULES,
    )
    beta2_start: float = _opt(0.9, "--beta2-schedule cosine: beta2 at step 0, in [0, 1)")
    ema_kimg: float = _opt(
        0.0,
        "EMA half-life in thousands of images (StyleGAN2-ADA, R3GAN): each step of B images "
        "decays the EMA by 0.5 ** (B / half-life); > 0 replaces --ema-decay and --ema-warmup "
        "(0: off, the --ema-decay ramp)",
    )
    ema_rampup: float = _opt(
        0.05,
        "--ema-kimg: the half-life is at most this times the images trained on so far, so the "
        "EMA follows G early in a run (0: no ramp-up)",
    )
    seed: int = _opt(0, "seed of initialisation, data order and latents")
    threads: int = _opt(0, "torch threads (0: torch default)")
    channels_last: bool = _opt(True, "disable channels_last tensors", negate=True)
    sample_every: int = _opt(500, "write a sample grid every N steps")
    checkpoint_every: int = _opt(1000, "write a checkpoint every N steps")
    eval_every: int = _opt(0, "quick FID every N steps (0: at checkpoints only)")
    eval_samples: int = _opt(2000, "samples for the quick FID")
    keep_last: int = _opt(3, "step checkpoints to keep")
    log_every: int = _opt(50, "log line every N steps")
    time_budget_s: float = _opt(
        0.0, "stop after N seconds of training (0: no budget; still saves)", flag="--time-budget"
    )
    augment: str = _opt(
        "none",
        "augment real and fake images before D, for folders of a few hundred to a few thousand "
        "images: diff (DiffAugment, always: colour, translation and cutout, or "
        "--augment-policies; what a bare --augment means) or ada (adaptive: each transform "
        "with a probability p steered by D's overfitting, training/augment.py)",
        choices=AUGMENTS,
        const="diff",
    )
    augment_policies: str = _opt(
        "color,translation,cutout",
        "--augment diff: DiffAugment's operations, comma-separated, of color, translation, "
        "cutout (a new --conditional run on a folder under 10,000 images leaves out cutout, "
        "which hides most of a small object: docs/training.md)",
    )
    device: str = _opt(
        "auto",
        "training device (auto: CUDA when present, else CPU)",
        choices=("auto", "cpu", "cuda", "mps"),
    )
    precision: str = _opt(
        "fp32", "fp32, or bf16/fp16 autocast on a GPU", choices=("fp32", "bf16", "fp16")
    )
    tensorboard: bool = _opt(
        False,
        "also write TensorBoard event files to <out>/tensorboard (needs the tensorboard "
        "package: pip install tensorboard)",
    )
    conditional: bool = _opt(
        False,
        "class-conditional G and D (projection D) on the dataset's labels: MNIST's "
        "digits, or a folder's first-level sub-folders",
    )
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.augment, bool):  # run.json and checkpoints before --augment ada
            self.augment = "diff" if self.augment else "none"
        if self.augment not in AUGMENTS:
            raise TrainingError(
                f"--augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}"
            )
        try:
            parse_policies(self.augment_policies)
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
        if isinstance(self.model, dict):
            try:
                self.model = ModelConfig.from_dict(self.model)
            except (ConfigError, TypeError) as exc:
                raise TrainingError(str(exc)) from exc
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise TrainingError(f"--device must be auto, cpu, cuda or mps, got {self.device!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise TrainingError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.loss not in LOSSES:
            raise TrainingError(f"--loss must be one of {tuple(LOSSES)}, got {self.loss!r}")
        for name, low in (
            ("steps", 1),
            ("batch_size", 1),
            ("d_steps", 1),
            ("r1_every", 1),
            ("log_every", 1),
            ("sample_every", 1),
            ("checkpoint_every", 1),
            ("keep_last", 1),
            ("eval_samples", 2),
            ("eval_every", 0),
            ("ema_warmup", 0),
            ("threads", 0),
            ("seed", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TrainingError(f"{_flag_of(name)} must be an integer >= {low}, got {value!r}")
        for name in ("lr_g", "lr_d"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise TrainingError(
                    f"{_flag_of(name)} must be a positive number, got {getattr(self, name)}"
                )
        for name in ("beta1", "beta2", "ema_decay", "beta2_start"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainingError(
                    f"{_flag_of(name)} must be in [0, 1), got {getattr(self, name)}"
                )
        self._check_mode()
        self._check_schedules()
        for name in ("r1_gamma", "time_budget_s"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise TrainingError(
                    f"{_flag_of(name)} must be a number >= 0 (0: off), got {getattr(self, name)}"
                )

    def _check_schedules(self) -> None:
        """The options of training/schedules.py."""
        for name in ("lr_schedule", "gamma_schedule", "beta2_schedule"):
            if getattr(self, name) not in SCHEDULES:
                raise TrainingError(
                    f"{_flag_of(name)} must be one of {', '.join(SCHEDULES)}, got "
                    f"{getattr(self, name)!r}"
                )
        for name in ("lr_min_ratio", "gamma_min_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise TrainingError(f"{_flag_of(name)} must be in [0, 1], got {value!r}")
        for name in ("ema_kimg", "ema_rampup"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise TrainingError(f"{_flag_of(name)} must be a number >= 0, got {value!r}")

    @property
    def ema_on(self) -> bool:
        """Whether the run keeps an EMA copy of G (--ema-decay > 0 or --ema-kimg > 0)."""
        return self.ema_decay > 0 or self.ema_kimg > 0

    def _check_mode(self) -> None:
        """The options of --mode ae and --mode ebm."""
        if self.mode not in MODES:
            raise TrainingError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.ae_kind not in AE_KINDS:
            raise TrainingError(f"--ae-kind must be vae or plain, got {self.ae_kind!r}")
        if self.mode == "vae" and self.ae_kind != "vae":
            raise TrainingError(
                "--mode vae trains the variational auto-encoder; for the plain one use --mode ae "
                "--ae-kind plain"
            )
        if self.mode != "gan" and (self.conditional or self.augment != "none"):
            raise TrainingError(
                f"--mode {self.mode} trains unconditional models without augmentation: drop "
                "--conditional and --augment (they are GAN options)"
            )
        gan_only = {"loss": "nonsat", "d_steps": 1, "r1_gamma": 0.0}
        changed = [_flag_of(k) for k, default in gan_only.items() if getattr(self, k) != default]
        if self.mode != "gan" and changed:
            raise TrainingError(
                f"{', '.join(changed)} only apply to --mode gan (the adversarial game); --mode "
                f"{self.mode} has its own objective (docs/lecture.md): drop them"
            )
        if self.mode == "ebm" and self.model.arch != "dcgan":
            raise TrainingError(
                "--mode ebm needs --arch dcgan: the classic D has BatchNorm and dropout, so its "
                "logit of one image depends on its batch and the Langevin search would too"
            )
        for name, low in (("ebm_steps", 1), ("ebm_sample_steps", 0), ("ebm_buffer_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TrainingError(f"{_flag_of(name)} must be an integer >= {low}, got {value!r}")
        for name in ("ebm_step_size", "ebm_grad_clip"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise TrainingError(
                    f"{_flag_of(name)} must be a positive number, got {getattr(self, name)}"
                )
        for name in ("ebm_noise", "ebm_alpha", "ebm_clip_norm"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise TrainingError(
                    f"{_flag_of(name)} must be a number >= 0, got {getattr(self, name)}"
                )
        if not 0.0 <= self.ebm_buffer <= 1.0:
            raise TrainingError(f"--ebm-buffer must be in [0, 1], got {self.ebm_buffer}")
        if self.mode == "ebm" and self.ebm_buffer > 0 and self.ebm_buffer_size < self.batch_size:
            raise TrainingError(
                f"--ebm-buffer-size {self.ebm_buffer_size} is smaller than --batch-size "
                f"{self.batch_size}: the buffer must hold at least one batch"
            )

    @property
    def kind(self) -> str:
        """The model kind this run trains and writes (gan/kinds.py): ``--mode``, except that
        ``--mode ae`` is the auto-encoder of ``--ae-kind`` (vae or plain, kind ae)."""
        if self.mode == "ae":
            return "vae" if self.ae_kind == "vae" else "ae"
        return self.mode

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a saved config; keys of older versions that no longer exist are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Help and choices for the model's fields (ModelConfig lives in gan/ and knows no CLI).
_MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "resolution": {"help": "image size in pixels", "choices": SUPPORTED_RESOLUTIONS},
    "channels": {"help": "1 (gray) or 3 (RGB)", "choices": SUPPORTED_CHANNELS},
    "z_dim": {"help": "latent size"},
    "g_width": {"help": "channels of G's last hidden block; earlier blocks double it"},
    "d_width": {"help": "channels of D's first block; later blocks double it"},
    "arch": {"help": "network family (gan/models.py)", "choices": ARCHITECTURES},
    "blocks_per_stage": {
        "help": "--arch r3gan: residual blocks per resolution (fewer: a cheaper network)"
    },
    "expansion": {
        "help": "--arch r3gan: a residual block's inner channels per channel (its inverted "
        "bottleneck; 1: no expansion, a cheaper network)"
    },
}


def _flag(name: str, meta: dict[str, Any]) -> str:
    if "flag" in meta:
        return str(meta["flag"])
    return ("--no-" if meta.get("negate") else "--") + name.replace("_", "-")


def _add(group: Any, name: str, default: Any, meta: dict[str, Any]) -> None:
    flag = _flag(name, meta)
    if isinstance(default, bool):
        action = "store_false" if meta.get("negate") else "store_true"
        group.add_argument(
            flag, dest=name, action=action, default=argparse.SUPPRESS, help=meta["help"]
        )
        return
    choices = meta.get("choices")
    extra: dict[str, Any] = {"nargs": "?", "const": meta["const"]} if "const" in meta else {}
    group.add_argument(
        flag,
        dest=name,
        type=type(default),
        default=argparse.SUPPRESS,
        choices=list(choices) if choices is not None else None,
        help=f"{meta['help']} (default: {default})",
        **extra,
    )


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per config field; options left out stay absent from the namespace."""
    model = parser.add_argument_group("model")
    for f in fields(ModelConfig):
        if f.name in _MODEL_OPTIONS:  # num_classes comes from the data (--conditional)
            _add(model, f.name, f.default, _MODEL_OPTIONS[f.name])
    opt = parser.add_argument_group("optimisation and run")
    for f in fields(TrainConfig):
        if f.name != "model":
            _add(opt, f.name, f.default, dict(f.metadata))


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields that were given on the command line, by field name."""
    names = {f.name for f in fields(TrainConfig)} | {f.name for f in fields(ModelConfig)}
    return {k: v for k, v in vars(args).items() if k in names}


def _flag_of(name: str) -> str:
    """The command-line option of a TrainConfig field, for messages."""
    for f in fields(TrainConfig):
        if f.name == name:
            return _flag(name, dict(f.metadata))
    return "--" + name.replace("_", "-")


def option_names(names: list[str]) -> str:
    """Field names as the command-line options a user typed, for messages."""
    meta = {f.name: dict(f.metadata) for f in fields(TrainConfig)}
    return ", ".join(_flag(n, meta.get(n, {})) for n in names)


def folder_defaults(
    cfg: TrainConfig, given: set[str], images: int
) -> tuple[TrainConfig, dict[str, Any]]:
    """``cfg`` with :data:`FOLDER_DEFAULTS` (and for a conditional run
    :data:`FOLDER_DEFAULTS_CONDITIONAL`) applied to the options not in ``given`` (the ones
    typed) nor set by ``cfg.recipe``, when the folder holds fewer than
    :data:`FOLDER_DEFAULTS_MAX_IMAGES` training images; and the options it changed."""
    if cfg.mode != "gan" or images >= FOLDER_DEFAULTS_MAX_IMAGES:  # augmentation is a GAN's
        return cfg, {}
    model_names = {f.name for f in fields(ModelConfig)}
    taken = given | set(RECIPES.get(cfg.recipe, {}))
    changed: dict[str, Any] = {}
    defaults = {**FOLDER_DEFAULTS, **(FOLDER_DEFAULTS_CONDITIONAL if cfg.conditional else {})}
    for key, value in defaults.items():
        current = getattr(cfg.model if key in model_names else cfg, key)
        if key not in taken and current != value:
            changed[key] = value
    if not changed:
        return cfg, {}
    return config_from_options(changed, base=cfg), changed


def config_from_options(options: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with ``options`` (field name -> value) applied."""
    data = (base or TrainConfig()).to_dict()
    model_names = {f.name for f in fields(ModelConfig)}
    recipe = options.get("recipe")
    if recipe is not None and base is None:
        if recipe not in RECIPES:
            raise TrainingError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
        options = {**RECIPES[recipe], **options}
    for key, value in options.items():
        if key in model_names:
            data["model"][key] = value
        else:
            data[key] = value
    return TrainConfig.from_dict(data)
