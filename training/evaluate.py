"""Sample-quality metrics in the feature space of the project's MNIST classifier (``gan-eval``).

Every metric compares a set of images with the MNIST **test** set (10,000 images) in the 128-d
penultimate-layer space of :mod:`training.classifier`:

* **FID** — Fréchet distance between Gaussians fitted to the two feature sets (lower is better).
* **KID** — unbiased MMD² with the cubic polynomial kernel ``(x·y / d + 1)³``, averaged over
  random subsets, with its standard deviation (lower is better; can be slightly negative).
* **precision / recall** — the k-NN manifold estimate of Kynkäänniemi et al. (2019): the share of
  generated samples inside the real manifold (union of k-NN balls around real features) and the
  share of real samples inside the generated manifold. The real set is a random test subset of
  the same size as the sample (when the sample is smaller), as the method assumes equal sizes.
* **class coverage** — the classifier's predicted-label histogram: normalised entropy
  (entropy / log 10; 1 = all digits equally often), the smallest class share, per-class shares.

Each result comes with a **real-vs-real baseline**: the same metrics for an equally sized random
subset of MNIST *train* against the same test set. Sample-size effects (FID is biased upwards for
small sets, k-NN radii depend on the set size) hit both numbers alike, so compare model against
baseline, not against numbers measured at another size.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_config,
    update_config,
    write_json_atomic,
)
from training.classifier import (
    Classifier,
    ClassifierError,
    default_classifier_dir,
    load_classifier,
    train_classifier,
)
from training.data import DataError, ImageData, load_mnist
from training.models import to_uint8

NUM_CLASSES = 10
DEFAULT_K = 3
DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000
# Metric keys in display order: (key, label, True when lower is better).
METRIC_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("fid", "FID", True),
    ("kid", "KID ± std", True),
    ("kid_std", "KID std over subsets", True),
    ("precision", "precision", False),
    ("recall", "recall", False),
    ("coverage_entropy", "class entropy (norm.)", False),
    ("coverage_min_share", "smallest class share", False),
)


class EvalError(Exception):
    """A user error in evaluation (bad input, missing data, classifier or checkpoint)."""


# --------------------------------------------------------------------------------------------
# Metrics on feature arrays (float64 numpy [N, D] unless stated otherwise)
# --------------------------------------------------------------------------------------------


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D] (float64)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise EvalError(f"need at least 2 feature vectors [N, D] for FID, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (negative rounding noise in eigenvalues -> 0)."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    sqrt_sigma1: np.ndarray | None = None,
) -> float:
    """||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½).

    ``tr((S1 S2)^½)`` is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix ``S1^½ S2 S1^½`` (same spectrum as ``S1 S2``), which avoids the complex values and
    non-convergence that ``scipy.linalg.sqrtm`` can produce for near-singular covariances.
    Negative eigenvalues from rounding are clipped to 0, and so is a result of -1e-12.
    """
    root1 = _psd_sqrt(sigma1) if sqrt_sigma1 is None else sqrt_sigma1
    m = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2.0)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets [N, D] and [M, D]."""
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    return frechet_distance(mu1, s1, mu2, s2)


def kid_from_features(
    a: np.ndarray,
    b: np.ndarray,
    num_subsets: int = DEFAULT_KID_SUBSETS,
    subset_size: int = DEFAULT_KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std over subsets of the unbiased MMD² estimate
    with kernel ``k(x, y) = (x·y / d + 1)³``. Subsets have ``min(subset_size, N, M)`` rows."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise EvalError(f"KID needs at least 2 images per set, got {a.shape[0]} and {b.shape[0]}")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1.0) ** 3
        kyy = (y @ y.T / d + 1.0) ** 3
        kxy = (x @ y.T / d + 1.0) ** 3
        sum_xx = kxx.sum() - np.trace(kxx)
        sum_yy = kyy.sum() - np.trace(kyy)
        values[i] = (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m)
    return float(values.mean()), float(values.std())


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [M, N] between rows of a [M, D] and b [N, D]."""
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


def knn_radii(x: torch.Tensor, k: int, chunk: int = 1000) -> torch.Tensor:
    """Squared distance from each row of x [N, D] to its k-th nearest other row -> [N]."""
    if x.shape[0] <= k:
        raise EvalError(f"precision/recall with k={k} needs more than {k} images, got {x.shape[0]}")
    out = []
    for s in range(0, x.shape[0], chunk):
        d = _sq_dists(x[s : s + chunk], x)  # [c, N]; each row holds its own 0 self-distance
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def _inside_manifold(
    queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1000
) -> torch.Tensor:
    """For each query row: is it within the k-NN ball of at least one support row? -> bool [M]."""
    out = []
    for s in range(0, queries.shape[0], chunk):
        out.append((_sq_dists(queries[s : s + chunk], support) <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(
    real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = DEFAULT_K
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    precision = _inside_manifold(f, r, knn_radii(r, k)).double().mean().item()
    recall = _inside_manifold(r, f, knn_radii(f, k)).double().mean().item()
    return float(precision), float(recall)


def class_coverage(predicted: np.ndarray, num_classes: int = NUM_CLASSES) -> dict[str, Any]:
    """Histogram of predicted labels: normalised entropy, smallest share, per-class shares."""
    pred = np.asarray(predicted, dtype=np.int64)
    if pred.size == 0:
        raise EvalError("class coverage needs at least one image")
    counts = np.bincount(pred, minlength=num_classes)[:num_classes]
    shares = counts / counts.sum()
    nz = shares[shares > 0]
    entropy = float(-(nz * np.log(nz)).sum() / math.log(num_classes))
    return {
        "coverage_entropy": max(0.0, min(1.0, entropy)),
        "coverage_min_share": float(shares.min()),
        "class_shares": [round(float(s), 6) for s in shares],
        "class_counts": [int(c) for c in counts],
    }


# --------------------------------------------------------------------------------------------
# The evaluator
# --------------------------------------------------------------------------------------------


def _as_images(data: ImageData | torch.Tensor, what: str) -> torch.Tensor:
    images = data.images if isinstance(data, ImageData) else data
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise EvalError(f"{what} must be a uint8 tensor [N, C, H, W]")
    return images


class Evaluator:
    """Computes the metrics against a fixed reference (the MNIST test set by default).

    Construction loads the classifier and caches the reference's features and Gaussian
    statistics (a few seconds on one core); every call after that only featurises the images it
    is given. Real-vs-real baselines are cached per ``(n, seed)``.
    """

    def __init__(
        self,
        classifier: Classifier | str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        reference: ImageData | torch.Tensor | None = None,
        baseline_pool: ImageData | torch.Tensor | None = None,
        k: int = DEFAULT_K,
        kid_subsets: int = DEFAULT_KID_SUBSETS,
        kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE,
    ) -> None:
        try:
            self.classifier = (
                classifier if isinstance(classifier, Classifier) else load_classifier(classifier)
            )
        except ClassifierError as exc:
            raise EvalError(str(exc)) from exc
        self.data_dir = data_dir
        self.k = k
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        if reference is None:
            reference = self._load_mnist("test")
        ref_images = _as_images(reference, "reference")
        self.reference_info: dict[str, Any] = (
            dict(reference.info) if isinstance(reference, ImageData) else {"name": "custom"}
        )
        self.reference_info["num_images"] = int(ref_images.shape[0])
        self.ref_features, self.ref_predicted = self.features(ref_images)
        self.ref_mu, self.ref_sigma = feature_stats(self.ref_features)
        self._ref_sqrt = _psd_sqrt(self.ref_sigma)
        self._baseline_pool = baseline_pool
        self._baseline_cache: dict[tuple[int, int], dict[str, Any]] = {}

    def _load_mnist(self, split: str) -> ImageData:
        try:
            return load_mnist(self.data_dir, split)
        except DataError as exc:
            raise EvalError(str(exc)) from exc

    def features(self, images_uint8: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, C, H, W] -> (features float64 [N, D], predicted labels int64 [N])."""
        try:
            feats, logits = self.classifier.features_and_logits(images_uint8)
        except ClassifierError as exc:
            raise EvalError(str(exc)) from exc
        return feats.double().numpy(), logits.argmax(1).numpy()

    def quick_fid(self, images_uint8: torch.Tensor) -> float:
        """FID of the images against the reference only (no baseline, KID or P/R); cheap
        enough to pick the best checkpoint during training (~1 s for 2,000 images on a core)."""
        feats, _ = self.features(images_uint8)
        mu, sigma = feature_stats(feats)
        return frechet_distance(self.ref_mu, self.ref_sigma, mu, sigma, sqrt_sigma1=self._ref_sqrt)

    def metrics_from_features(
        self, feats: np.ndarray, predicted: np.ndarray, seed: int = 0
    ) -> dict[str, Any]:
        """All metrics for one feature set against the reference."""
        n, n_ref = feats.shape[0], self.ref_features.shape[0]
        if n < 2 or n <= self.k:
            raise EvalError(f"need more than {max(1, self.k)} images to evaluate, got {n}")
        mu, sigma = feature_stats(feats)
        kid, kid_std = kid_from_features(
            feats, self.ref_features, self.kid_subsets, self.kid_subset_size, seed
        )
        # Equal-size real set for the k-NN manifolds (the radii depend on the set size).
        if n < n_ref:
            rng = np.random.default_rng(seed)
            pr_real = self.ref_features[np.sort(rng.choice(n_ref, n, replace=False))]
        else:
            pr_real = self.ref_features
        precision, recall = precision_recall(pr_real, feats, self.k)
        return {
            "fid": frechet_distance(self.ref_mu, self.ref_sigma, mu, sigma, self._ref_sqrt),
            "kid": kid,
            "kid_std": kid_std,
            "precision": precision,
            "recall": recall,
            **class_coverage(predicted),
        }

    def baseline(self, n: int, seed: int = 0) -> dict[str, Any]:
        """Metrics of ``n`` random real images (MNIST train by default) vs the reference."""
        key = (int(n), int(seed))
        if key not in self._baseline_cache:
            if self._baseline_pool is None:
                self._baseline_pool = self._load_mnist("train")
            pool = _as_images(self._baseline_pool, "baseline pool")
            if n > pool.shape[0]:
                raise EvalError(
                    f"the real-vs-real baseline draws {n} images from a pool of "
                    f"{pool.shape[0]} (MNIST train); evaluate at most {pool.shape[0]} samples"
                )
            gen = torch.Generator().manual_seed(seed)
            idx = torch.randperm(pool.shape[0], generator=gen)[:n].sort().values
            feats, predicted = self.features(pool[idx])
            result = self.metrics_from_features(feats, predicted, seed)
            result["source"] = f"{n} random images of the real training set (seed {seed})"
            self._baseline_cache[key] = result
        return dict(self._baseline_cache[key])

    def evaluate_images(
        self, images_uint8: torch.Tensor, seed: int = 0, with_baseline: bool = True
    ) -> dict[str, Any]:
        """All metrics for uint8 images [N, C, H, W], with the real-vs-real baseline beside."""
        started = time.time()
        images = _as_images(images_uint8, "images")
        feats, predicted = self.features(images)
        result: dict[str, Any] = {
            "num_images": int(images.shape[0]),
            "seed": int(seed),
            "metrics": self.metrics_from_features(feats, predicted, seed),
        }
        if with_baseline:
            result["baseline"] = self.baseline(int(images.shape[0]), seed)
        result["reference"] = self.reference_info
        result["classifier"] = {
            "path": str(self.classifier.path),
            "weights_sha256": self.classifier.weights_sha256,
            "test_accuracy": self.classifier.test_accuracy,
            "feature_dim": self.classifier.feature_dim,
        }
        result["settings"] = {
            "k": self.k,
            "kid_subsets": self.kid_subsets,
            "kid_subset_size": min(self.kid_subset_size, result["num_images"],
                                   int(self.ref_features.shape[0])),
            "kid_kernel": "(x.y / d + 1)^3",
            "pr_reference_size": min(result["num_images"], int(self.ref_features.shape[0])),
        }
        result["seconds"] = round(time.time() - started, 2)
        return result

    def evaluate_checkpoint(
        self,
        ckpt_dir: str | os.PathLike[str],
        num_samples: int = 10000,
        seed: int = 0,
        batch_size: int = 500,
        allow_non_mnist: bool = False,
    ) -> dict[str, Any]:
        """Sample ``num_samples`` images from a checkpoint's generator and evaluate them.

        Latents are ``torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))``,
        so a (checkpoint, n, seed) triple always gives the same images.
        """
        if num_samples < 2 or batch_size < 1:
            raise EvalError(
                f"num_samples must be >= 2 and batch_size >= 1, got {num_samples} and {batch_size}"
            )
        try:
            ckpt = load_checkpoint(ckpt_dir)
        except CheckpointError as exc:
            raise EvalError(str(exc)) from exc
        ds_name = check_dataset(ckpt.config, ckpt_dir, allow_non_mnist)
        images = sample_images(ckpt.generator, ckpt.model_config.z_dim, num_samples, seed, batch_size)
        result = self.evaluate_images(images, seed=seed)
        result["checkpoint"] = {
            "path": str(ckpt.path),
            "model_id": ckpt.model_id,
            "step": ckpt.step,
            "checkpoint_hash": ckpt.checkpoint_hash,
            "dataset": ds_name,
        }
        result["sampling"] = {
            "num_samples": num_samples,
            "seed": seed,
            "z": "torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))",
        }
        return result


def check_dataset(
    config: dict[str, Any], ckpt_dir: str | os.PathLike[str], allow_non_mnist: bool
) -> str | None:
    """The checkpoint's dataset name; raise :class:`EvalError` unless it is MNIST or allowed."""
    dataset = config.get("dataset") or {}
    ds_name = dataset.get("name") if isinstance(dataset, dict) else None
    if ds_name != "mnist" and not allow_non_mnist:
        raise EvalError(
            f"{ckpt_dir}: the checkpoint was trained on dataset {ds_name!r}, not 'mnist'; the "
            "evaluation classifier only understands handwritten digits, so its metrics would "
            "be meaningless (pass --allow-non-mnist to compute them anyway)"
        )
    return ds_name if isinstance(ds_name, str) else None


@torch.inference_mode()
def sample_images(
    generator: torch.nn.Module, z_dim: int, n: int, seed: int, batch_size: int = 500
) -> torch.Tensor:
    """Draw n images (uint8 [n, C, H, W]) from a generator in eval mode with fixed latents."""
    generator.eval()
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([to_uint8(generator(z[s : s + batch_size])) for s in range(0, n, batch_size)])


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def _cell(key: str, values: dict[str, Any]) -> str:
    if key == "kid":
        return f"{values['kid']:.4f} ± {values['kid_std']:.4f}"
    return f"{values[key]:.3f}" if key == "fid" else f"{values[key]:.4f}"


def _ratio(key: str, model: dict[str, Any], base: dict[str, Any]) -> str:
    # Only meaningful against a baseline clearly above zero (KID: above its own subset noise).
    floor = max(1e-6, base["kid_std"]) if key == "kid" else 1e-6
    return f"{model[key] / base[key]:.2f}x" if base[key] > floor else "n/a"


def format_report(result: dict[str, Any]) -> str:
    """A readable table: metric, model, real-vs-real baseline, model/baseline ratio."""
    lines = []
    ck = result.get("checkpoint")
    if ck:
        lines.append(f"checkpoint: {ck['path']} ({ck['model_id']})")
    ref = result["reference"]
    cls = result["classifier"]
    lines.append(
        f"samples: {result['num_images']} (seed {result['seed']}) vs "
        f"{ref.get('name', 'custom')} {ref.get('split', '')} set ({ref['num_images']} images)"
    )
    lines.append(
        f"feature space: classifier {cls['path']} ({cls['feature_dim']}-d, test accuracy "
        f"{cls['test_accuracy']:.2%})"
    )
    base = result.get("baseline")
    if base:
        lines.append(f"baseline: {base['source']} vs the same reference")
    lines.append("")
    header = f"{'metric':<22}{'model':>20}{'real-vs-real':>20}{'ratio':>10}"
    lines += [header, "-" * len(header)]
    m = result["metrics"]
    for key, label, lower in METRIC_ROWS:
        if key == "kid_std":
            continue  # shown with KID
        arrow = "(lower better)" if lower else "(higher better)"
        base_s = _cell(key, base) if base else ""
        ratio_s = _ratio(key, m, base) if base else ""
        lines.append(f"{label:<22}{_cell(key, m):>20}{base_s:>20}{ratio_s:>10}  {arrow}")
    lines.append("")
    shares = " ".join(f"{d}:{s:.1%}" for d, s in enumerate(m["class_shares"]))
    lines.append(f"predicted-digit shares (model): {shares}")
    if base:
        shares = " ".join(f"{d}:{s:.1%}" for d, s in enumerate(base["class_shares"]))
        lines.append(f"predicted-digit shares (real):  {shares}")
    lines.append(f"({result['seconds']:.1f} s)")
    return "\n".join(lines)


def metrics_for_config(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a result that ``--write`` stores under a checkpoint's ``metrics``."""
    m, base = result["metrics"], result.get("baseline", {})
    keys = [k for k, _, _ in METRIC_ROWS] + ["class_shares"]
    return {
        **{k: m[k] for k in keys},
        "eval": {
            "num_samples": result["num_images"],
            "seed": result["seed"],
            "reference": f"{result['reference'].get('name', 'custom')} "
            f"{result['reference'].get('split', '')}".strip(),
            "classifier_sha256": result["classifier"]["weights_sha256"],
            "settings": result["settings"],
            "baseline": {k: base[k] for k in keys if k in base},
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-eval",
        description="Evaluate a generator checkpoint against MNIST test in the feature space of "
        "the project's MNIST classifier (FID, KID, precision/recall, class coverage), beside a "
        "real-vs-real baseline; or train that classifier.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", type=Path, help="checkpoint directory to evaluate")
    mode.add_argument(
        "--train-classifier", action="store_true",
        help="train the evaluation classifier on MNIST and write it to --out",
    )
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the MNIST IDX files (default: $GAN_DATA_DIR or the shared copy)")
    p.add_argument("--seed", type=int, default=0, help="sampling / subset / training seed (0)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for --train-classifier, torch's own otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    ev = p.add_argument_group("evaluation (--checkpoint)")
    ev.add_argument("--num", type=int, default=10000, help="number of samples (10000)")
    ev.add_argument("--batch-size", type=int, default=500, help="generator batch size (500)")
    ev.add_argument("--classifier", type=Path, default=None,
                    help="classifier directory (default: $GAN_CLASSIFIER_DIR or the shipped "
                    "checkpoints/mnist-classifier)")
    ev.add_argument("--write", action="store_true",
                    help="store the metrics in the checkpoint's config.json under 'metrics'")
    ev.add_argument("--json", type=Path, default=None, help="write the full result as JSON here")
    ev.add_argument("--allow-non-mnist", action="store_true",
                    help="evaluate a checkpoint not trained on MNIST anyway")
    tr = p.add_argument_group("classifier training (--train-classifier)")
    tr.add_argument("--out", type=Path, default=None,
                    help="output directory (default: the shipped checkpoints/mnist-classifier)")
    tr.add_argument("--epochs", type=int, default=3, help="training epochs (3)")
    tr.add_argument("--min-accuracy", type=float, default=0.99,
                    help="refuse to write a classifier below this test accuracy (0.99)")
    return p


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    out = args.out if args.out is not None else default_classifier_dir()
    try:
        cfg = train_classifier(
            args.data_dir, out, epochs=args.epochs, seed=args.seed,
            threads=args.threads if args.threads is not None else 1,
            min_accuracy=args.min_accuracy,
            command="gan-eval " + shlex.join(argv), progress=not args.quiet,
        )
    except DataError as exc:
        raise EvalError(str(exc)) from exc
    print(
        f"wrote {out}: test accuracy {cfg['test_accuracy']:.4f}, "
        f"{cfg['num_parameters']} parameters, {cfg['training']['seconds']:.0f} s"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Fail fast, before the classifier and the reference set are loaded.
    if args.num < 2 or args.batch_size < 1:
        raise EvalError(f"--num must be >= 2 and --batch-size >= 1, got {args.num} and {args.batch_size}")
    try:
        check_dataset(read_config(args.checkpoint), args.checkpoint, args.allow_non_mnist)
    except CheckpointError as exc:
        raise EvalError(str(exc)) from exc
    evaluator = Evaluator(args.classifier, args.data_dir)
    result = evaluator.evaluate_checkpoint(
        args.checkpoint, num_samples=args.num, seed=args.seed, batch_size=args.batch_size,
        allow_non_mnist=args.allow_non_mnist,
    )
    print(format_report(result))
    if args.json is not None:
        try:
            write_json_atomic(args.json, result)
        except OSError as exc:
            raise EvalError(f"cannot write {args.json}: {exc}") from exc
        print(f"wrote {args.json}")
    if args.write:
        try:
            update_config(args.checkpoint, {"metrics": metrics_for_config(result)})
        except (CheckpointError, OSError) as exc:
            raise EvalError(f"cannot update {args.checkpoint}/config.json: {exc}") from exc
        print(
            f"stored the metrics in {args.checkpoint}/config.json under 'metrics' (only "
            "config.json changed: the weight files, their SHA-256 hashes and the checkpoint "
            "hash are unchanged)"
        )
    return 0


def run_eval_cli(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-eval``; returns the exit status (2 for user errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage / help
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        if args.train_classifier:
            return _train(args, argv)
        return _evaluate(args)
    except (EvalError, ClassifierError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(run_eval_cli())
