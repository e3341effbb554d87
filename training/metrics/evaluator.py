"""The evaluator: classifier features of samples and of a reference, all registered metrics, and
the real-vs-real baseline beside them (``gan-eval``).

Each result comes with a **real-vs-real baseline**: the same metrics for an equally sized random
subset of MNIST *train* against the same test set. Sample-size effects (FID is biased upwards for
small sets, k-NN radii depend on the set size) hit both numbers alike, so compare model against
baseline, not against numbers measured at another size.

Checkpoints are sampled with :func:`gan.samplers.dispatch.sample`: ``gan-eval --seed S --num N
[--method M]`` evaluates exactly the images that ``gan-sample --seed S --num N [--method M]``
writes.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from gan.checkpoint import CheckpointConfig, CheckpointError, load_checkpoint
from gan.latents import image_seeds
from gan.samplers import MethodOptions, options_dict
from gan.samplers.dispatch import Models
from gan.samplers.dispatch import sample as guided_sample
from gan.samplers.plain import PlainOptions
from gan.samplers.results import GuidedResult
from gan.sampling import class_labels
from training.data import DataError, ImageData, load_mnist
from training.metrics.classifier import Classifier, ClassifierError, load_classifier
from training.metrics.metrics import (
    DEFAULT_K,
    DEFAULT_KID_SUBSET_SIZE,
    DEFAULT_KID_SUBSETS,
    EvalError,
    FeatureSet,
    Reference,
    compute_metrics,
    feature_stats,
    frechet_distance,
)


def label_accuracies(predicted: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The classifier's agreement with the asked digits: ``label_accuracy`` over all images,
    ``label_accuracy_per_class`` (digit 0..9; None for a digit never asked) and
    ``label_accuracy_min``, the worst asked digit's (a target holds for every class, not only
    on average)."""
    right = predicted == labels
    per_class: list[float | None] = [
        float(right[labels == d].mean()) if (labels == d).any() else None for d in range(10)
    ]
    asked = [a for a in per_class if a is not None]
    return {
        "label_accuracy": float(right.mean()),
        "label_accuracy_min": min(asked) if asked else float(right.mean()),
        "label_accuracy_per_class": per_class,
    }


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
        self._reference_images = ref_images
        ref_features, _ = self.features(ref_images)
        self.reference = Reference.of(ref_features)
        self._baseline_pool = baseline_pool
        self._baseline_cache: dict[tuple[int, int], dict[str, Any]] = {}
        self._baseline_features: dict[tuple[int, int], np.ndarray] = {}

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
        ref = self.reference
        return frechet_distance(ref.mu, ref.sigma, mu, sigma, sqrt_sigma1=ref.sqrt_sigma)

    def metrics_from_features(
        self, feats: np.ndarray, predicted: np.ndarray, seed: int = 0
    ) -> dict[str, Any]:
        """All registered metrics for one feature set against the reference."""
        return compute_metrics(
            FeatureSet(
                feats,
                predicted,
                self.reference,
                seed,
                self.k,
                self.kid_subsets,
                self.kid_subset_size,
            )
        )

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
            self._baseline_features[key] = feats
            result = self.metrics_from_features(feats, predicted, seed)
            pool_labels = getattr(self._baseline_pool, "labels", None)
            if pool_labels is not None:  # the classifier's accuracy on these real digits
                result.update(label_accuracies(predicted, pool_labels[idx].numpy()))
            result["source"] = f"{n} random images of the real training set (seed {seed})"
            self._baseline_cache[key] = result
        return dict(self._baseline_cache[key])

    def evaluate_images(
        self,
        images_uint8: torch.Tensor,
        seed: int = 0,
        with_baseline: bool = True,
        labels: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """All metrics for uint8 images [N, C, H, W], with the real-vs-real baseline beside.

        ``labels`` (the digit each image was asked to show, for a conditional model) adds
        ``label_accuracy``: the share the classifier assigns to the requested digit, and per
        class (:func:`label_accuracies`).
        """
        started = time.time()
        images = _as_images(images_uint8, "images")
        feats, predicted = self.features(images)
        n_ref = int(self.reference.features.shape[0])
        result: dict[str, Any] = {
            "num_images": int(images.shape[0]),
            "seed": int(seed),
            "metrics": self.metrics_from_features(feats, predicted, seed),
        }
        if labels is not None:
            result["metrics"].update(label_accuracies(predicted, labels.numpy()))
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
            "kid_subset_size": min(self.kid_subset_size, result["num_images"], n_ref),
            "kid_kernel": "(x.y / d + 1)^3",
            "pr_reference_size": min(result["num_images"], n_ref),
        }
        result["seconds"] = round(time.time() - started, 2)
        return result

    def memorisation(
        self,
        images_uint8: torch.Tensor,
        n: int,
        seed: int = 0,
        pairs_png: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """The first ``n`` images' distances to their nearest training image (MNIST train, or
        the baseline pool) against those of ``n`` random held-out reference images, in pixels
        (all training images) and in the classifier's features (the real-vs-real baseline's
        training images, already featurised: as many as ``images``)
        (:mod:`training.metrics.memorisation`); with ``pairs_png``, the closest pairs written
        there."""
        from gan.preprocess import batch_to_model_pixels
        from training.metrics.memorisation import closest_pairs_grid, memorisation

        images = _as_images(images_uint8, "images")[:n]
        if self._baseline_pool is None:
            self._baseline_pool = self._load_mnist("train")
        shape = tuple(images.shape[1:])

        def as_model(real: torch.Tensor) -> torch.Tensor:
            if tuple(real.shape[1:]) == shape:
                return real
            return torch.from_numpy(batch_to_model_pixels(real.numpy(), shape[-1], shape[0]))

        train = as_model(_as_images(self._baseline_pool, "baseline pool"))
        ref = self._reference_images
        gen = torch.Generator().manual_seed(seed + 1)
        pick = torch.randperm(len(ref), generator=gen)[: min(n, len(ref))].sort().values
        held = as_model(ref[pick])

        n_pool = min(len(images_uint8), len(train))
        if (n_pool, seed) not in self._baseline_features:
            self.baseline(n_pool, seed)
        space = (
            torch.from_numpy(self.features(images)[0]),
            torch.from_numpy(self._baseline_features[(n_pool, seed)]),
            torch.from_numpy(self.reference.features[pick.numpy()]),
        )
        record, nearest_index = memorisation(
            images, train, held, features={"classifier_features": space}
        )
        pool_info = getattr(self._baseline_pool, "info", {}) or {}
        record["train_source"] = f"{pool_info.get('name', 'custom')} {pool_info.get('split', '')}"
        record["heldout_source"] = (
            f"{len(held)} random images of the reference ({self.reference_info.get('name')} "
            f"{self.reference_info.get('split', '')})".replace(" )", ")")
        )
        if pairs_png is not None:
            record["closest_pairs_png"] = str(
                closest_pairs_grid(images, train, nearest_index, pairs_png)
            )
        return record

    def evaluate_checkpoint(
        self,
        ckpt_dir: str | os.PathLike[str],
        num_samples: int = 10000,
        seed: int = 0,
        batch_size: int = 500,
        allow_non_mnist: bool = False,
        options: MethodOptions | None = None,
        memorisation_n: int = 0,
        pairs_png: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Sample ``num_samples`` images from a checkpoint's generator and evaluate them.

        Image ``i`` uses the image seed ``seed + i`` (:func:`gan.samplers.dispatch.sample`), so these are
        exactly the images ``gan-sample --seed S --num N`` writes and the API returns; with
        ``options`` (a sampling method's, :mod:`gan.samplers`), exactly those of
        ``gan-sample --method ...`` and of ``POST /generate`` with that method.
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
        drawn = guided_sample(
            Models.of(ckpt),
            options if options is not None else PlainOptions(),
            seed=seed,
            n=num_samples,
            chunk=batch_size,
        )
        images = drawn.images
        result = self.evaluate_images(
            images, seed=seed, labels=digit_labels(ckpt.config.classes, seed, num_samples)
        )
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
            "z": "image i uses seed + i: torch.randn(z_dim) from "
            "torch.Generator('cpu').manual_seed(seed + i) (as gan-sample and POST /generate)",
            **sampling_record(drawn),
        }
        if memorisation_n > 0:
            result["memorisation"] = self.memorisation(images, memorisation_n, seed, pairs_png)
        return result


def sampling_record(result: GuidedResult) -> dict[str, Any]:
    """The method, its options, acceptance, D's mean logit before and after, and the cost per
    image of a sampled set (``gan-eval``'s ``sampling`` record, ``bench/d_guided.py``)."""
    n = max(1, len(result.stats))
    before = [s.logit_before for s in result.stats if s.logit_before is not None]
    after = [s.logit_after for s in result.stats if s.logit_after is not None]
    cost = result.cost
    return {
        "method": result.method,
        "method_options": options_dict(result.options),
        "acceptance_rate": result.acceptance_rate,
        "mean_proposals": sum(s.proposals for s in result.stats) / n,
        "mean_logit_before": float(np.mean(before)) if before else None,
        "mean_logit_after": float(np.mean(after)) if after else None,
        "cost_per_image": {
            "forwards": (cost.generator_forwards + cost.discriminator_forwards) / n,
            "backwards": (cost.generator_backwards + cost.discriminator_backwards) / n,
            **{k: v / n for k, v in cost.as_dict().items()},
            "ms": 1000.0 * result.seconds / n,
        },
        "seconds": result.seconds,
    }


def check_dataset(
    config: CheckpointConfig, ckpt_dir: str | os.PathLike[str], allow_non_mnist: bool
) -> str | None:
    """The checkpoint's dataset name; raise :class:`EvalError` unless it is MNIST or allowed."""
    ds_name = config.dataset.get("name")
    if ds_name != "mnist" and not allow_non_mnist:
        raise EvalError(
            f"{ckpt_dir}: the checkpoint was trained on dataset {ds_name!r}, not 'mnist'; the "
            "evaluation classifier only understands handwritten digits, so its metrics would "
            "be meaningless (pass --allow-non-mnist to compute them anyway)"
        )
    return ds_name if isinstance(ds_name, str) else None


def digit_labels(classes: tuple[str, ...], seed: int, n: int) -> torch.Tensor | None:
    """The digit each sampled image of a conditional MNIST model shows (class ``(seed + i) mod
    K``, named "0".."9"), for ``label_accuracy``; None for other models."""
    if not classes or not all(c.isdigit() and int(c) < 10 for c in classes):
        return None
    labels = class_labels(image_seeds(seed, n), len(classes))
    assert labels is not None
    return torch.tensor([int(classes[i]) for i in labels.tolist()], dtype=torch.int64)
