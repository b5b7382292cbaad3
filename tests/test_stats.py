"""The statistical building blocks of the claims engine, against exact values and scipy."""
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from mlpsim import stats
from mlpsim.analysis import compare_tail_models


def test_sign_test_exact_values():
    assert stats.sign_test([1, 2, 3, 4, 5], "greater") == {"p": pytest.approx(1 / 32), "n": 5, "k": 5}
    assert stats.sign_test([1, 2, 3, 4, 5], "less")["p"] == 1.0
    r = stats.sign_test([0, 0, 1, -1, 2], "greater")  # zeros carry no sign
    assert r["n"] == 3 and r["k"] == 2 and r["p"] == pytest.approx(0.5)
    assert stats.sign_test([0, 0], "greater") == {"p": 1.0, "n": 0, "k": 0}
    d = np.random.default_rng(0).normal(0.3, 1, 40)
    k = int(np.sum(d > 0))
    assert stats.sign_test(d, "greater")["p"] == pytest.approx(sps.binomtest(k, 40, 0.5, "greater").pvalue)


def test_count_test_against_the_binomial():
    p = np.r_[np.full(4, 0.01), np.full(16, 0.6)]
    r = stats.count_test(p, 0.05)
    assert r["k"] == 4 and r["p"] == pytest.approx(sps.binom.sf(3, 20, 0.05))
    assert stats.count_test(np.full(20, 0.9), 0.05)["p"] == 1.0


def test_monte_carlo_p_value_counts_the_observation():
    null = np.arange(1, 100, dtype=float)   # 99 draws
    assert stats.mc_p_value(100.0, null, "greater") == pytest.approx(1 / 100)
    assert stats.mc_p_value(0.0, null, "greater") == 1.0
    assert stats.mc_p_value(50.0, null, "less") == pytest.approx(51 / 100)
    assert stats.mc_p_value(np.array([100.0, 0.0]), np.stack([null, null]), "greater").tolist() == [0.01, 1.0]


def test_monte_carlo_p_values_are_valid_under_the_null():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=4000)
    p = stats.mc_p_value(obs, rng.normal(size=(4000, 199)), "greater")
    assert np.mean(p <= 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 4000)


def test_holm_by_hand():
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(stats.holm([np.nan, 0.01])[0]) and stats.holm([np.nan, 0.01])[1] == 0.01
    assert stats.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_median_interval_covers_at_the_level():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(2000):
        lo, hi = stats.median_ci(rng.normal(size=20))
        hits += lo <= 0 <= hi
    assert 0.95 <= hits / 2000 <= 0.985  # exact order statistics: conservative, coverage 0.959 for n = 20
    assert stats.median_ci([1.0, 2.0, 3.0]) == (1.0, 3.0)


def test_clopper_pearson_matches_scipy():
    for k, n in [(0, 20), (3, 20), (20, 20), (7, 11)]:
        lo, hi = stats.clopper_pearson(k, n)
        ci = sps.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_bootstrap_interval_is_seeded_and_sensible():
    x = np.random.default_rng(3).normal(5, 1, 200)
    a = stats.bootstrap_ci(x, np.mean, seed=1)
    assert a == stats.bootstrap_ci(x, np.mean, seed=1) and a[0] < 5 < a[1] and a[1] - a[0] < 0.5


def test_batched_bootstrap_gives_the_interval_of_the_loop():
    """The claims' headline effect (median over matrices of the median over instances) with
    NaNs, as one call on the stack of resamples: the same interval, to the bit."""
    from mlpsim.claims import median_of_medians, medians_of_medians
    m = np.random.default_rng(5).standard_cauchy((13, 4))
    m[[1, 6], 2] = np.nan
    m[:, 3] = np.nan  # a matrix with no finite effect at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loop = stats.bootstrap_ci(m, median_of_medians, n_boot=500, seed=2)
    once = stats.bootstrap_ci(m, median_of_medians, n_boot=500, seed=2, batched=medians_of_medians)
    other = stats.bootstrap_ci(m, median_of_medians, n_boot=500, seed=3, batched=medians_of_medians)
    assert loop == once and np.isfinite(loop).all() and other != once


def test_vuong_test():
    rng = np.random.default_rng(4)
    a = rng.normal(size=500)
    assert stats.vuong_test(a, a)["p"] == 1.0
    r = stats.vuong_test(a + 0.5, a)  # model a is better at every point
    assert r["R"] == pytest.approx(250.0) and r["p"] < 1e-12
    r = stats.vuong_test(a + 0.2 + 0.1 * rng.normal(size=500), a)
    assert r["R"] > 0 and r["p"] < 1e-6


def test_vuong_statistic_by_hand():
    d = np.array([1.0, 2.0, 3.0, -1.0])
    r = stats.vuong_test(d, np.zeros(4))
    sd = np.sqrt(np.mean((d - d.mean()) ** 2))
    assert r["R"] == 5.0 and r["z"] == pytest.approx(5.0 / (sd * 2.0))
    from scipy.special import erfc
    assert r["p"] == pytest.approx(erfc(abs(r["z"]) / np.sqrt(2)))
    assert stats.vuong_test(np.ones(5), np.zeros(5)) == {"R": 5.0, "p": 0.0, "z": np.inf}


def test_tail_models_are_not_compared_on_short_tails():
    rng = np.random.default_rng(6)
    r = compare_tail_models(rng.pareto(1.5, 60) + 1)
    assert r["n_tail"] < 50 and r["preferred"] == "undecided"


def test_power_law_is_preferred_only_where_the_tail_is_one():
    """Pareto samples: a power law; Gaussian (Marchenko-Pastur) spectra: never a power law."""
    rng = np.random.default_rng(5)
    pareto = [compare_tail_models(rng.pareto(1.5, 300) + 1)["preferred"] for _ in range(30)]
    assert pareto.count("power_law") >= 27
    gaussian = [compare_tail_models(np.linalg.svd(rng.normal(size=(64, 64)), compute_uv=False) ** 2)["preferred"]
                for _ in range(30)]
    assert gaussian.count("power_law") == 0
