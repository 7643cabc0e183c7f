"""Error bars and tests for accuracies measured on a few hundred snippets.

    binomial_se(p, n)                   sqrt(p(1 − p)/n): the SE of one accuracy
    mcnemar(correct_a, correct_b)       two models on the SAME rows: exact paired test
    paired_bootstrap(a, b)              CI of mean(a − b) for paired per-row values
    compare(acc_a, acc_b, n)            two accuracies on independent samples (unpaired)

Two models scored on the same test rows are not independent: most rows are right (or
wrong) for both, and only the rows where they disagree carry information about which is
better. McNemar's test uses exactly those discordant rows; it is far more sensitive than
comparing two binomial intervals. A null result is reported with the smallest difference
the test could have detected (``detectable``), never as "the same".

Ground floor: imports nothing from minilora but ``checks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats as _scipy_stats

from .checks import check_int, check_number

Z_95 = 1.959963984540054  # two-sided 5 % level
Z_POWER_80 = 0.8416212335729143  # one-sided 80 % power


def binomial_se(accuracy: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` examples: ``sqrt(p(1 − p)/n)``."""
    p = check_number(accuracy, "accuracy", 0.0, 1.0)
    n = check_int(n, "n", 1, 2**53)
    return math.sqrt(p * (1 - p) / n)


def compare(acc_a: float, acc_b: float, n: int, z: float = 2.0) -> str:
    """Verdict on ``acc_a`` vs ``acc_b`` measured on two *independent* samples of ``n`` rows.

    The difference counts beyond ``z`` standard errors of a difference of two independent
    binomial estimates, ``sqrt(se_a² + se_b²)``. Returns "higher", "lower" or "no difference"
    (for a, relative to b). For two models on the same rows use ``mcnemar`` instead.
    """
    z = check_number(z, "z", 0.0, low_open=True)
    acc_a = check_number(acc_a, "acc_a", 0.0, 1.0)
    acc_b = check_number(acc_b, "acc_b", 0.0, 1.0)
    se = math.hypot(binomial_se(acc_a, n), binomial_se(acc_b, n))
    if acc_a - acc_b > z * se:
        return "higher"
    if acc_b - acc_a > z * se:
        return "lower"
    return "no difference"


def _as_array(x, name: str) -> np.ndarray:
    """``x`` (a list, array or tensor of any dtype/device) as a 1-D NumPy array."""
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            raise ValueError(f"{name} is a meta tensor: it holds no values")
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() and x.dtype != torch.float64 else x
        x = x.numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 1-D sequence of numbers ({e})") from None


def _as_bool_vector(x, name: str) -> np.ndarray:
    arr = _as_array(x, name)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of per-row outcomes, "
                         f"got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans (or 0/1): was each row predicted correctly")
        arr = arr.astype(bool)
    return arr


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of two models on the same ``n`` rows.

    ``a_only``: rows model A got right and B wrong; ``b_only``: the reverse.
    ``difference = (a_only − b_only)/n = acc_a − acc_b``; ``se`` its paired standard error;
    ``pvalue`` the exact two-sided binomial test of a_only vs b_only at ½;
    ``detectable`` the smallest true difference this test would find 80 % of the time at
    the 5 % level, ``(z_.975 + z_.80)·se``.
    """

    n: int
    accuracy_a: float
    accuracy_b: float
    a_only: int
    b_only: int
    difference: float
    se: float
    pvalue: float
    detectable: float

    def __post_init__(self):
        n = check_int(self.n, "n", 1)
        check_int(self.a_only, "a_only", 0, n)
        check_int(self.b_only, "b_only", 0, n - self.a_only, " (a_only + b_only <= n)")
        for name in ("accuracy_a", "accuracy_b", "pvalue"):
            check_number(getattr(self, name), name, 0.0, 1.0)
        check_number(self.difference, "difference", -1.0, 1.0)
        for name in ("se", "detectable"):
            check_number(getattr(self, name), name, 0.0)

    def verdict(self, alpha: float = 0.05) -> str:
        """"higher" / "lower" (A relative to B) when ``pvalue < alpha``, else
        "not detectable at this size"."""
        check_number(alpha, "alpha", 0.0, 1.0, low_open=True, high_open=True)
        if self.pvalue < alpha:
            return "higher" if self.difference > 0 else "lower"
        return "not detectable at this size"

    def summary(self, a: str = "A", b: str = "B") -> str:
        """One line: the difference in points ± SE, the discordant counts, p, detectable."""
        return (f"{a} − {b} = {100 * self.difference:+.1f} ± {100 * self.se:.1f} points "
                f"(n = {self.n}; {a} only right {self.a_only}, {b} only right {self.b_only}; "
                f"McNemar p = {self.pvalue:.3g}; could detect ≥ {100 * self.detectable:.1f} points) "
                f"→ {self.verdict()}")


def paired_se(a_only: int, b_only: int, n: int) -> float:
    """SE of ``(a_only − b_only)/n`` for paired binary outcomes
    (0 ≤ a_only, b_only; a_only + b_only ≤ n):
    ``sqrt((a_only + b_only) − (a_only − b_only)²/n) / n``, never below ``1/n`` (the
    resolution of ``n`` rows: one row more or less), so the detectable difference of a test
    with no or one discordant row stays positive rather than 0."""
    n = check_int(n, "n", 1)
    check_int(a_only, "a_only", 0, n)
    check_int(b_only, "b_only", 0, n - a_only, " (a_only + b_only <= n)")
    discordant = max(a_only + b_only, 1)
    return math.sqrt(max(discordant - (a_only - b_only) ** 2 / n, 1.0)) / n


def mcnemar(correct_a, correct_b) -> PairedTest:
    """McNemar's exact test: did models A and B differ on the same rows?

    ``correct_a``, ``correct_b``: per-row booleans (was the prediction right), same rows in
    the same order. Under H0 each discordant row is A's with probability ½, so
    ``p = binomtest(a_only, a_only + b_only, ½)`` (two-sided, exact).
    """
    a = _as_bool_vector(correct_a, "correct_a")
    b = _as_bool_vector(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(f"correct_a and correct_b must cover the same rows, got {a.size} and {b.size}")
    n = int(a.size)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    # exact two-sided binomial test on the discordant rows
    pvalue = 1.0 if a_only + b_only == 0 else float(
        _scipy_stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)
    se = paired_se(a_only, b_only, n)
    return PairedTest(n, float(a.mean()), float(b.mean()), a_only, b_only, (a_only - b_only) / n, se,
                      pvalue, (Z_95 + Z_POWER_80) * se)


@dataclass(frozen=True)
class BootstrapCI:
    """Mean paired difference ``mean(a − b)`` with a percentile bootstrap interval."""

    difference: float
    low: float
    high: float
    level: float
    n: int

    def __post_init__(self):
        for name in ("difference", "low", "high"):
            check_number(getattr(self, name), name)
        if not self.low <= self.high:
            raise ValueError(f"low must be <= high, got {self.low} and {self.high}")
        check_number(self.level, "level", 0.0, 1.0, low_open=True, high_open=True)
        check_int(self.n, "n", 2)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def verdict(self) -> str:
        """"higher" / "lower" when the interval excludes 0, else "not detectable at this size"."""
        if not self.excludes_zero:
            return "not detectable at this size"
        return "higher" if self.difference > 0 else "lower"


def paired_bootstrap(values_a, values_b, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
                     ) -> BootstrapCI:
    """Percentile bootstrap CI of ``mean(a − b)`` for paired per-row values (accuracy as 0/1,
    a per-row loss or KL...): resample rows with replacement ``n_boot`` times."""
    a, b = _as_array(values_a, "values_a"), _as_array(values_b, "values_b")
    for name, arr in (("values_a", a), ("values_b", b)):
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError("values_a and values_b must be 1-D of the same length >= 2, "
                         f"got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("values_a and values_b must be finite")
    n_boot = check_int(n_boot, "n_boot", 100, 1_000_000)
    level = check_number(level, "level", 0.0, 1.0, low_open=True, high_open=True)
    seed = check_int(seed, "seed", 0)
    d = a - b
    if not np.isfinite(d).all():
        raise ValueError("values_a − values_b overflows: rescale the values")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // d.size)  # resample in chunks: memory stays ~16 MB for any n_boot
    means = np.concatenate([d[rng.integers(0, d.size, size=(min(chunk, n_boot - i), d.size))].mean(1)
                            for i in range(0, n_boot, chunk)])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapCI(float(d.mean()), float(lo), float(hi), level, int(d.size))
