"""minilora.stats: binomial SE, McNemar's exact paired test, the paired bootstrap, compare."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from minilora.stats import (
    Z_95,
    Z_POWER_80,
    binomial_se,
    compare,
    mcnemar,
    paired_bootstrap,
    paired_se,
)


def outcomes(both, a_only, b_only, neither):
    """Per-row correctness of two models with the given counts of each (A, B) outcome."""
    a = [True] * both + [True] * a_only + [False] * b_only + [False] * neither
    b = [True] * both + [False] * a_only + [True] * b_only + [False] * neither
    return np.array(a), np.array(b)


GRID = [(a_only, b_only) for a_only in (0, 1, 3, 10, 25) for b_only in (0, 2, 7, 30)]


# --- binomial_se ------------------------------------------------------------------------------

def test_binomial_se_by_hand():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)


def test_binomial_se_of_a_perfect_score_is_zero():
    assert binomial_se(1.0, 10) == 0.0


@pytest.mark.parametrize("accuracy", [-0.01, 1.01, float("nan")])
def test_binomial_se_rejects_accuracy_outside_0_1(accuracy):
    with pytest.raises(ValueError, match="accuracy"):
        binomial_se(accuracy, 100)


@pytest.mark.parametrize("n", [0, -5])
def test_binomial_se_rejects_n_below_one(n):
    with pytest.raises(ValueError, match="n must be"):
        binomial_se(0.5, n)


# --- compare (two independent samples) -------------------------------------------------------------

def test_compare_two_points_apart_on_1000_rows_is_within_two_se():
    n = 1000
    se = math.hypot(binomial_se(0.80, n), binomial_se(0.78, n))
    assert 0.02 < 2 * se
    assert compare(0.80, 0.78, n) == "no difference"


def test_compare_ten_points_apart_is_higher_or_lower():
    assert compare(0.85, 0.75, 1000) == "higher"
    assert compare(0.75, 0.85, 1000) == "lower"


# --- mcnemar ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("a_only, b_only", GRID)
def test_mcnemar_pvalue_is_binomtest_on_the_discordant_rows(a_only, b_only):
    test = mcnemar(*outcomes(50, a_only, b_only, 10))
    expected = 1.0 if a_only + b_only == 0 else scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert test.pvalue == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("a_only, b_only", [(a, b) for a, b in GRID if a + b > 0])
def test_mcnemar_pvalue_is_the_exact_binomial_tail_by_hand(a_only, b_only):
    """Without scipy: p = min(1, 2 · P(X <= min(a, b))), X ~ Binomial(a + b, ½) (symmetric at ½)."""
    m = a_only + b_only
    tail = sum(math.comb(m, k) for k in range(min(a_only, b_only) + 1)) / 2**m
    assert mcnemar(*outcomes(50, a_only, b_only, 10)).pvalue == pytest.approx(min(1.0, 2 * tail), rel=1e-9)


@pytest.mark.parametrize("a_only, b_only", GRID)
def test_mcnemar_counts_the_discordant_rows(a_only, b_only):
    test = mcnemar(*outcomes(50, a_only, b_only, 10))
    assert (test.a_only, test.b_only, test.n) == (a_only, b_only, 60 + a_only + b_only)


@pytest.mark.parametrize("a_only, b_only", GRID)
def test_mcnemar_difference_is_the_accuracy_difference(a_only, b_only):
    n = 60 + a_only + b_only
    test = mcnemar(*outcomes(50, a_only, b_only, 10))
    assert test.accuracy_a == pytest.approx((50 + a_only) / n)
    assert test.accuracy_b == pytest.approx((50 + b_only) / n)
    assert test.difference == pytest.approx((a_only - b_only) / n)
    assert test.difference == pytest.approx(test.accuracy_a - test.accuracy_b)


@pytest.mark.parametrize("a_only, b_only", [(g, h) for g, h in GRID if g + h > 1])
def test_paired_se_by_hand(a_only, b_only):
    n = 60 + a_only + b_only
    test = mcnemar(*outcomes(50, a_only, b_only, 10))
    expected = math.sqrt((a_only + b_only) - (a_only - b_only) ** 2 / n) / n
    assert test.se == pytest.approx(expected) and paired_se(a_only, b_only, n) == pytest.approx(expected)


def test_paired_se_without_discordant_rows_is_one_row():
    assert paired_se(0, 0, 200) == pytest.approx(1 / 200)


def test_paired_se_is_never_below_one_row():
    # one discordant row: sqrt(1 − 1/n)/n by the formula, floored at the resolution 1/n
    assert paired_se(1, 0, 61) == pytest.approx(1 / 61)


@pytest.mark.parametrize("a_only, b_only", GRID)
def test_detectable_difference_is_z_975_plus_z_80_times_the_se(a_only, b_only):
    test = mcnemar(*outcomes(50, a_only, b_only, 10))
    assert test.detectable == pytest.approx((Z_95 + Z_POWER_80) * test.se)
    assert Z_95 == pytest.approx(scipy_stats.norm.ppf(0.975)) and Z_POWER_80 == pytest.approx(
        scipy_stats.norm.ppf(0.8))


def test_a_null_result_is_not_detectable_at_this_size():
    test = mcnemar(*outcomes(300, 6, 5, 40))
    assert test.pvalue > 0.05 and test.verdict() == "not detectable at this size"


def test_a_clear_difference_is_higher_or_lower():
    assert mcnemar(*outcomes(300, 40, 5, 40)).verdict() == "higher"
    assert mcnemar(*outcomes(300, 5, 40, 40)).verdict() == "lower"


def test_mcnemar_summary_states_difference_counts_and_verdict():
    line = mcnemar(*outcomes(300, 6, 5, 40)).summary("LoRA", "full")
    assert "LoRA − full" in line and "LoRA only right 6" in line and "full only right 5" in line
    assert line.endswith("→ not detectable at this size")


def test_mcnemar_accepts_tensors_and_0_1_values():
    a, b = outcomes(20, 4, 1, 5)
    assert mcnemar(torch.tensor(a), torch.tensor(b.astype(int))) == mcnemar(a, b)


def test_mcnemar_rejects_outcomes_of_different_rows():
    with pytest.raises(ValueError, match="same rows"):
        mcnemar([True, False, True], [True, False])


@pytest.mark.parametrize("bad", [[0, 2, 1], [[True, False]], []])
def test_mcnemar_rejects_values_that_are_not_per_row_booleans(bad):
    with pytest.raises(ValueError, match="correct_a"):
        mcnemar(bad, [True, True, True])


def test_verdict_rejects_alpha_outside_0_1():
    with pytest.raises(ValueError, match="alpha"):
        mcnemar(*outcomes(10, 1, 1, 1)).verdict(alpha=1.5)


# --- paired_bootstrap -------------------------------------------------------------------------------

@pytest.fixture
def shifted():
    """Paired values whose true mean difference is 0.3: a ~ N(0.3, 1) + noise shared with b."""
    rng = np.random.default_rng(1)
    shared = rng.normal(size=400)
    return shared + 0.3 + rng.normal(scale=0.5, size=400), shared + rng.normal(scale=0.5, size=400)


def test_paired_bootstrap_interval_contains_the_true_mean_difference(shifted):
    ci = paired_bootstrap(*shifted)
    assert ci.low < 0.3 < ci.high and ci.low < ci.difference < ci.high


def test_paired_bootstrap_difference_is_the_mean_paired_difference(shifted):
    a, b = shifted
    ci = paired_bootstrap(a, b)
    assert ci.difference == pytest.approx(float(np.mean(a - b))) and ci.n == 400 and ci.level == 0.95


def test_paired_bootstrap_excludes_zero_for_a_clear_difference(shifted):
    ci = paired_bootstrap(*shifted)
    assert ci.excludes_zero and ci.verdict() == "higher"


def test_paired_bootstrap_of_a_null_difference_is_not_detectable():
    ci = paired_bootstrap([0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0])
    assert not ci.excludes_zero and ci.verdict() == "not detectable at this size"


def test_paired_bootstrap_is_reproducible_with_a_seed(shifted):
    assert paired_bootstrap(*shifted, seed=7) == paired_bootstrap(*shifted, seed=7)
    assert paired_bootstrap(*shifted, seed=7) != paired_bootstrap(*shifted, seed=8)


def test_paired_bootstrap_accepts_tensors(shifted):
    a, b = shifted
    assert paired_bootstrap(torch.tensor(a), torch.tensor(b)) == paired_bootstrap(a, b)


@pytest.mark.parametrize("a, b", [([1.0, 2.0, 3.0], [1.0, 2.0]), ([1.0], [2.0]),
                                  ([[1.0, 2.0]], [[1.0, 2.0]])])
def test_paired_bootstrap_rejects_mismatched_or_too_short_values(a, b):
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap(a, b)


def test_paired_bootstrap_rejects_non_finite_values():
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([1.0, float("nan")], [1.0, 2.0])


@pytest.mark.parametrize("kwargs, name", [(dict(n_boot=10), "n_boot"), (dict(level=1.0), "level"),
                                          (dict(seed=-1), "seed")])
def test_paired_bootstrap_rejects_a_bad_argument_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name):
        paired_bootstrap([1.0, 2.0], [0.0, 1.0], **kwargs)
