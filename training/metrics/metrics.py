"""Sample-quality metrics on classifier features: the maths and the registry.

Every metric compares a set of sample features with a reference set (the MNIST test set) in
the 128-d penultimate-layer space of :mod:`training.metrics.classifier`:

* **FID** — Fréchet distance between Gaussians fitted to the two feature sets (lower is better).
* **KID** — unbiased MMD² with the cubic polynomial kernel ``(x·y / d + 1)³``, averaged over
  random subsets, with its standard deviation (lower is better; can be slightly negative).
* **precision / recall** — the k-NN manifold estimate of Kynkäänniemi et al. (2019): the share of
  generated samples inside the real manifold (union of k-NN balls around real features) and the
  share of real samples inside the generated manifold. The real set is a random reference
  subset of the same size as the sample (when the sample is smaller), as the method assumes
  equal sizes.
* **class coverage** — the classifier's predicted-label histogram: normalised entropy
  (entropy / log 10; 1 = all digits equally often), the smallest class share, per-class shares.

A metric is a function of a :class:`FeatureSet` registered with :func:`register_metric`; the
evaluator computes every registered metric, and :mod:`training.metrics.report` shows the rows
listed in its ``REPORT_ROWS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gan.errors import UserError

NUM_CLASSES = 10
DEFAULT_K = 3
DEFAULT_KID_SUBSETS = 100
DEFAULT_KID_SUBSET_SIZE = 1000


class EvalError(UserError):
    """A user error in evaluation (bad input, missing data, classifier or checkpoint)."""


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
# The registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The reference features and their Gaussian statistics (computed once per evaluator)."""

    features: np.ndarray  # float64 [M, D]
    mu: np.ndarray  # [D]
    sigma: np.ndarray  # [D, D]
    sqrt_sigma: np.ndarray  # [D, D], symmetric square root of sigma

    @classmethod
    def of(cls, features: np.ndarray) -> Reference:
        mu, sigma = feature_stats(features)
        return cls(features, mu, sigma, _psd_sqrt(sigma))


@dataclass(frozen=True)
class FeatureSet:
    """What a metric sees: sample features and predictions, the reference and the settings."""

    features: np.ndarray  # float64 [N, D]
    predicted: np.ndarray  # int64 [N], the classifier's labels
    reference: Reference
    seed: int
    k: int = DEFAULT_K
    kid_subsets: int = DEFAULT_KID_SUBSETS
    kid_subset_size: int = DEFAULT_KID_SUBSET_SIZE


Metric = Callable[[FeatureSet], dict[str, Any]]
#: name -> metric; each returns a dict of result keys (several metrics return two or more).
METRICS: dict[str, Metric] = {}


def register_metric(name: str) -> Callable[[Metric], Metric]:
    def add(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return add


@register_metric("fid")
def _fid(fs: FeatureSet) -> dict[str, Any]:
    mu, sigma = feature_stats(fs.features)
    ref = fs.reference
    return {"fid": frechet_distance(ref.mu, ref.sigma, mu, sigma, ref.sqrt_sigma)}


@register_metric("kid")
def _kid(fs: FeatureSet) -> dict[str, Any]:
    kid, kid_std = kid_from_features(
        fs.features, fs.reference.features, fs.kid_subsets, fs.kid_subset_size, fs.seed
    )
    return {"kid": kid, "kid_std": kid_std}


@register_metric("precision_recall")
def _precision_recall(fs: FeatureSet) -> dict[str, Any]:
    n, ref = fs.features.shape[0], fs.reference.features
    # Equal-size real set for the k-NN manifolds (the radii depend on the set size).
    if n < ref.shape[0]:
        rng = np.random.default_rng(fs.seed)
        ref = ref[np.sort(rng.choice(ref.shape[0], n, replace=False))]
    precision, recall = precision_recall(ref, fs.features, fs.k)
    return {"precision": precision, "recall": recall}


@register_metric("class_coverage")
def _class_coverage(fs: FeatureSet) -> dict[str, Any]:
    return class_coverage(fs.predicted)


def compute_metrics(fs: FeatureSet) -> dict[str, Any]:
    """Every registered metric for one feature set."""
    n = fs.features.shape[0]
    if n < 2 or n <= fs.k:
        raise EvalError(f"need more than {max(1, fs.k)} images to evaluate, got {n}")
    out: dict[str, Any] = {}
    for metric in METRICS.values():
        out.update(metric(fs))
    return out
