"""``gan-sample``: images of a checkpoint, the same bytes for the same seed."""

from __future__ import annotations

from pathlib import Path

from gan.errors import UserError
from training.cli.common import CliParser, run_command
from training.cli.methods import add_method_arguments, method_options, method_summary


def sample(argv: list[str] | None = None) -> int:
    from gan.checkpoint import load_checkpoint
    from gan.io import check_grid_size, save_images
    from gan.latents import SEED_LIMIT, TRUNCATION_MAX, TRUNCATION_MIN
    from gan.samplers.dispatch import Models
    from gan.samplers.dispatch import sample as guided_sample
    from gan.sampling import resolve_label

    p = CliParser(
        prog="gan-sample",
        description=(
            "Sample images from a checkpoint's generator. Same seed, same bytes. Image i uses "
            "the image seed (seed + i), exactly as POST /generate and gan-eval do, so the API, "
            "the evaluation and this command see the same images for the same seed."
        ),
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    p.add_argument(
        "-n",
        "--n",
        "--num",
        dest="num",
        type=int,
        default=64,
        help="number of images (n, as in POST /generate; --num is the older spelling)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the first image (0 .. 2**53-1)")
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        help="redraw latent components with |z| > t (0.05 .. 10)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="CLASS",
        help="class-conditional models: the class (index or name) of the images; "
        "repeat it to cycle through several (image i gets the (i mod L)-th); left "
        "out: image seed s gets class s mod K, as in POST /generate",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="FILE.npy (uint8 [N,H,W] or [N,H,W,C]), FILE.png (grid) or a folder of PNGs",
    )
    add_method_arguments(p)
    args = p.parse_args(argv)
    if not 1 <= args.num <= 100_000:
        raise UserError(f"--num must be in 1..100000, got {args.num}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UserError(f"--seed must be in 0..{SEED_LIMIT - 1}, got {args.seed}")
    if args.truncation is not None and not TRUNCATION_MIN <= args.truncation <= TRUNCATION_MAX:
        raise UserError(f"--truncation must be in {TRUNCATION_MIN}..{TRUNCATION_MAX}")
    if args.out.suffix.lower() not in (".npy", ".png", ""):
        raise UserError(f"--out {args.out}: use a .npy file, a .png file, or a folder name")
    options = method_options(args)
    ck = load_checkpoint(args.checkpoint)
    if args.out.suffix.lower() == ".png":  # before sampling: refuse a grid no one can open
        check_grid_size(args.num, ck.model_config.resolution, args.out)
    labels: list[int] | None = None
    if args.label:
        given = [resolve_label(v, ck.config.classes) for v in args.label]
        labels = [given[i % len(given)] for i in range(args.num)]
    result = guided_sample(
        Models.of(ck),
        options,
        seed=args.seed,
        n=args.num,
        truncation=args.truncation,
        labels=labels,
    )
    try:
        out = save_images(result.images, args.out)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(f"wrote {args.num} images from {ck.model_id} to {out}")
    if result.method != "plain" or ck.kind == "ebm":
        print(method_summary(result))
    return 0


def sample_main(argv: list[str] | None = None) -> int:
    return run_command(lambda: sample(argv))
