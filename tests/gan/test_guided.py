"""gan.samplers: D-guided sampling. DRS on a toy whose answer is known, then every method on a
tiny checkpoint: count, per-seed reproducibility, batching, cost, proposal 0 = plain."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gan.checkpoint import Calibration, load_checkpoint
from gan.latents import image_seeds, seed_latent
from gan.samplers import CalibrationMissing, MethodOptions, parse_options
from gan.samplers.dispatch import Models, sample, sample_method
from gan.samplers.drs import DRSOptions, drs_log_odds, drs_steps
from gan.samplers.seeds import method_generator, proposal_latents, proposal_seed
from gan.samplers.steps import run_steps
from gan.sampling import class_labels
from gan.sampling import sample as plain_sample
from tests.conftest import make_checkpoint

# --------------------------------------------------------------------------------------------
# A toy where the answer is known: G(z) = z with z ~ N(0, 1), data ~ N(MU, SIGMA^2), and D the
# exact log density ratio. DRS with gamma = 0 and the true d_max is exact rejection sampling.
# --------------------------------------------------------------------------------------------

MU, SIGMA = 1.0, 0.5


def toy_logit(x: torch.Tensor) -> torch.Tensor:
    """log p_data(x) - log p_G(x) for the toy, per row of ``x`` [N, 1]."""
    x = x[:, 0].double()
    return math.log(1.0 / SIGMA) - (x - MU) ** 2 / (2 * SIGMA**2) + x**2 / 2


def toy_d_max() -> float:
    x_star = MU / (1.0 - SIGMA**2)  # where the quadratic peaks
    return float(toy_logit(torch.tensor([[x_star]])))


def identity_calibration(drs: dict[str, Any]) -> Calibration:
    entry = {
        "kind": "platt",
        "platt": {"a": 1.0, "b": 0.0},
        "ece": 0.0,
        "num_real": 10,
        "num_fake": 10,
        "drs": drs,
    }
    calibration = Calibration.from_config(entry, "toy")
    assert calibration is not None
    return calibration


def toy_drs(seeds: list[int], calibration: Calibration, options: DRSOptions) -> Any:
    steps = drs_steps(seeds, 1, None, options, calibration)
    return run_steps(steps, lambda z, y: z.clone(), lambda x, y: toy_logit(x).float())


def normal_cdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)((x - mu) / (sigma * math.sqrt(2.0))))


def ks_distance(samples: np.ndarray, cdf: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of sorted ``samples`` to the model CDF at them."""
    n = samples.size
    upper = np.arange(1, n + 1) / n - cdf
    lower = cdf - np.arange(0, n) / n
    return float(max(upper.max(), lower.max()))


def test_drs_with_gamma_zero_samples_the_data_density_exactly() -> None:
    d_max = toy_d_max()
    drs = {
        "d_max": d_max,
        "eps": 1e-6,
        "keep_levels": [0.0, 0.5],
        "gammas": [0.0, 0.0],
        "acceptance": [0.25, 0.25],
        "num_images": 10,
    }
    n = 4000
    result = toy_drs(
        list(range(n)), identity_calibration(drs), DRSOptions(keep=0.5, max_proposals=300)
    )
    assert result.images.shape == (n, 1)
    assert all(s.accepted for s in result.stats)  # 300 proposals at 1/M = 0.26 always suffice
    accepted = np.sort(result.images[:, 0].double().numpy())
    # n = 4000: the 0.1 % critical KS distance is 1.95 / sqrt(n) = 0.031.
    assert ks_distance(accepted, normal_cdf(accepted, MU, SIGMA)) < 0.031
    # The proposals alone (G's density, N(0, 1)) are far from it: the test can tell.
    plain = np.sort(torch.cat([seed_latent(s, 1) for s in range(n)]).double().numpy())
    assert ks_distance(plain, normal_cdf(plain, MU, SIGMA)) > 0.3
    # Exact rejection sampling accepts 1/M = exp(-d_max) of the proposals.
    assert result.acceptance_rate == pytest.approx(math.exp(-d_max), abs=0.015)
    assert result.trials == sum(s.proposals for s in result.stats)
    assert result.cost.generator_forwards == result.cost.discriminator_forwards == result.trials


def test_drs_log_odds_is_the_papers_formula_and_capped_at_d_max() -> None:
    d = torch.tensor([-3.0, -0.5, 0.0, 2.0])
    f = drs_log_odds(d, 0.0, 0.25, 1e-6)
    delta = torch.tensor([-3.0, -0.5, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(f, delta - torch.log(1 - torch.exp(delta - 1e-6)) - 0.25)
    assert f[2] == f[3]  # above the pilot's maximum: the largest acceptance, no NaN
    # With gamma = 0, sigmoid(F) is the rejection-sampling acceptance exp(d - d_max).
    p = torch.sigmoid(drs_log_odds(torch.tensor([-2.0]), 0.0, 0.0, 1e-6))
    assert float(p) == pytest.approx(math.exp(-2.0), rel=1e-4)


def test_drs_runs_out_of_proposals_into_the_best_one() -> None:
    drs = {
        "d_max": toy_d_max(),
        "eps": 1e-6,
        "keep_levels": [0.0],
        "gammas": [40.0],
        "acceptance": [1e-12],
        "num_images": 10,
    }
    result = toy_drs([5, 6], identity_calibration(drs), DRSOptions(keep=0.0, max_proposals=4))
    for i, seed in enumerate([5, 6]):
        stats = result.stats[i]
        assert stats.proposals == 4 and stats.accepted is False
        tried = proposal_latents([(seed, k) for k in range(4)], 1)
        best = int(toy_logit(tried).argmax())
        assert float(result.images[i, 0]) == float(tried[best, 0])
        assert stats.logit_after == pytest.approx(float(toy_logit(tried)[best]))
    assert result.acceptance_rate == 0.0


def test_proposal_zero_is_the_plain_latent_and_the_others_are_unrelated() -> None:
    assert proposal_seed(42, 0) == 42
    z = proposal_latents([(42, 0), (42, 1), (42, 2), (43, 0)], 8)
    assert torch.equal(z[0], seed_latent(42, 8)) and torch.equal(z[3], seed_latent(43, 8))
    assert len({proposal_seed(42, k) for k in range(1, 100)} | {42, 43}) == 101
    a = torch.rand(3, generator=method_generator(42, "drs"))
    assert not torch.equal(a, torch.rand(3, generator=method_generator(42, "mh")))
    assert torch.equal(a, torch.rand(3, generator=method_generator(42, "drs")))


# --------------------------------------------------------------------------------------------
# Every method on a tiny checkpoint
# --------------------------------------------------------------------------------------------

FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "plain": {},
    "drs": {"keep": 0.9, "max_proposals": 6},
    "mh": {"proposals": 4},
    "langevin": {"steps": 3, "step_size": 0.05},
    "pixel_ascent": {"steps": 3},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    from training.export import calibrate_checkpoint

    path = make_checkpoint(tmp_path_factory.mktemp("guided") / "c", width=4)
    real = (torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).byte()
    calibrate_checkpoint(path, real, None, num=200)
    return Models.of(load_checkpoint(path))


@pytest.fixture(scope="module")
def cond_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    from training.export import calibrate_checkpoint

    path = make_checkpoint(
        tmp_path_factory.mktemp("guided") / "cond", width=4, classes=["a", "b", "c"]
    )
    real = (torch.rand(60, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255).byte()
    calibrate_checkpoint(path, real, torch.arange(60) % 3, num=200)
    return Models.of(load_checkpoint(path))


def options_of(method: str, **extra: Any) -> MethodOptions:
    return parse_options(method, {**FAST_OPTIONS[method], **extra})


@pytest.mark.parametrize("method", list(FAST_OPTIONS))
def test_every_method_returns_the_count_and_keeps_its_cost_cap(models: Models, method: str) -> None:
    options = options_of(method)
    result = sample(models, options, seed=11, n=5)
    assert result.method == method and result.options == options
    assert result.images.shape == (5, 1, 28, 28) and result.images.dtype == torch.uint8
    assert len(result.stats) == 5
    for stats in result.stats:
        if method == "drs":
            assert 1 <= stats.proposals <= 6 and stats.steps == 0
        elif method == "mh":
            assert stats.proposals == 4 and stats.steps == 0
        elif method in ("langevin", "pixel_ascent"):
            assert stats.steps == 3
        else:
            assert (stats.proposals, stats.steps, stats.logit_after) == (1, 0, None)
        if method != "plain":
            assert stats.logit_before is not None and stats.logit_after is not None
    cost = result.cost
    per_image = cost.generator_forwards + cost.discriminator_forwards
    backward = cost.generator_backwards + cost.discriminator_backwards
    assert (
        per_image <= 5 * {"plain": 1, "drs": 12, "mh": 8, "langevin": 10, "pixel_ascent": 5}[method]
    )
    assert (backward > 0) == (method in ("langevin", "pixel_ascent"))
    if result.latents is not None:
        assert result.latents.shape == (5, 8)


@pytest.mark.parametrize("method", list(FAST_OPTIONS))
def test_a_seed_gives_the_same_image_alone_in_a_request_and_in_any_chunking(
    models: Models, method: str
) -> None:
    options = options_of(method)
    together = sample(models, options, seed=100, n=6, chunk=4)  # chunks of 4 and 2
    again = sample(models, options, seed=100, n=6)
    assert torch.equal(together.images, again.images)
    for i, seed in enumerate(image_seeds(100, 6)):
        alone = sample(models, options, seed=seed, n=1)
        diff = (alone.images[0].int() - together.images[i].int()).abs().max()
        assert int(diff) <= 1, (method, i)  # the last bits of a forward may differ by batch size
        assert alone.stats[0].proposals == together.stats[i].proposals


def test_plain_is_the_plain_sampler_and_proposal_zero(models: Models) -> None:
    plain = sample(models, options_of("plain"), seed=3, n=8)
    assert torch.equal(plain.images, plain_sample(models.generator, 8, seed=3, n=8))
    drs = sample(models, options_of("drs"), seed=3, n=8)
    first = [i for i, s in enumerate(drs.stats) if s.proposals == 1]
    assert first, "no image accepted its first proposal"
    for i in first:
        assert torch.equal(drs.images[i], plain.images[i])
    one = sample(models, parse_options("mh", {"proposals": 1}), seed=3, n=8)
    assert torch.equal(one.images, plain.images) and one.acceptance_rate is None
    assert drs.latents is not None
    assert torch.equal(drs.latents[first[0]], seed_latent(3 + first[0], 8))


def test_gradient_methods_move_d_upwards_and_leave_the_networks_alone(models: Models) -> None:
    before = {k: v.clone() for k, v in models.discriminator.state_dict().items()}
    with torch.inference_mode():  # the caller's mode does not matter: they enable gradients
        ascent = sample(
            models, parse_options("pixel_ascent", {"steps": 20, "step_size": 0.05}), seed=1, n=4
        )
        langevin = sample(models, options_of("langevin"), seed=1, n=4)
    gains = [s.logit_after - s.logit_before for s in ascent.stats]  # type: ignore[operator]
    assert all(g > 0 for g in gains), gains
    assert langevin.latents is not None and not torch.equal(
        langevin.latents, torch.stack([seed_latent(s, 8) for s in image_seeds(1, 4)])
    )
    for k, v in models.discriminator.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in models.discriminator.parameters())
    assert all(p.grad is None for p in models.generator.parameters())
    assert ascent.latents is None


def test_conditional_models_use_each_images_class(cond_models: Models) -> None:
    for method in FAST_OPTIONS:
        result = sample(cond_models, options_of(method), seed=7, n=4, labels=2)
        assert result.images.shape[0] == 4
    seeds = image_seeds(7, 6)
    labels = class_labels(seeds, 3)
    by_seed = sample_method(cond_models, options_of("mh"), seeds=seeds, labels=labels)
    assert torch.equal(by_seed.images, sample(cond_models, options_of("mh"), seed=7, n=6).images)
    other = sample(cond_models, options_of("mh"), seed=7, n=6, labels=0)
    assert not torch.equal(by_seed.images, other.images)


def test_methods_that_need_calibration_say_how_to_add_it(tmp_path: Path) -> None:
    ck = load_checkpoint(make_checkpoint(tmp_path / "raw", width=4))
    models = Models.of(ck)
    for method in ("drs", "mh"):
        with pytest.raises(CalibrationMissing, match=r"gan-calibrate --checkpoint .*raw"):
            sample(models, options_of(method), seed=0, n=2)
    assert sample(models, options_of("langevin"), seed=0, n=2).images.shape[0] == 2
