"""minilora.rank.spectra against NumPy's SVD, matrices of known rank, and the definitions' invariants."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilora.rank import (
    amplification_factor,
    effective_rank,
    effective_rank_of_spectrum,
    energy_rank,
    energy_rank_of_spectrum,
    projection_norm,
    random_like,
    singular_vectors,
    spectrum,
    subspace_similarity,
    subspace_similarity_grid,
    truncate,
    truncation_error,
    truncation_summary,
)


def known_rank(m, n, r, seed=0, dtype=torch.float64):
    """A random m × n matrix of rank exactly r (product of Gaussian m×r and r×n factors)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(m, r, generator=g, dtype=dtype) @ torch.randn(r, n, generator=g, dtype=dtype))


def with_spectrum(sigma, m, n, seed=0):
    """U diag(σ) Vᵀ with random orthonormal U, V: a matrix whose singular values we chose."""
    g = torch.Generator().manual_seed(seed)
    k = len(sigma)
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return (U * torch.tensor(sigma, dtype=torch.float64)) @ V.T


matrices = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**16)).map(
    lambda t: torch.randn(t[0], t[1], generator=torch.Generator().manual_seed(t[2]), dtype=torch.float64))


# ---- spectrum --------------------------------------------------------------------------------

def test_spectrum_matches_numpy_svd():
    W = torch.randn(20, 7, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(spectrum(W).numpy(), np.linalg.svd(W.double().numpy(), compute_uv=False),
                               rtol=1e-10)


def test_spectrum_accepts_a_numpy_array():
    W = torch.randn(20, 7, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(spectrum(W.numpy()).numpy(), spectrum(W).numpy())


def test_spectrum_is_float64_with_min_m_n_values():
    W = torch.randn(20, 7, generator=torch.Generator().manual_seed(1))
    assert spectrum(W).dtype == torch.float64 and spectrum(W).shape == (7,)


def test_spectrum_of_chosen_singular_values():
    sigma = [5.0, 3.0, 0.5, 0.25]
    np.testing.assert_allclose(spectrum(with_spectrum(sigma, 9, 6)).numpy()[:4], sigma, rtol=1e-10)
    assert spectrum(with_spectrum(sigma, 9, 6))[4:].abs().max() < 1e-12


@given(matrices)
@settings(max_examples=40, deadline=None)
def test_spectrum_is_descending_and_nonnegative(W):
    s = spectrum(W)
    assert (s[:-1] >= s[1:]).all() and (s >= 0).all()


@given(matrices)
@settings(max_examples=40, deadline=None)
def test_spectrum_energy_is_the_frobenius_norm(W):
    s = spectrum(W)
    # Σσ² = ‖W‖²_F
    assert math.isclose(float((s ** 2).sum()), float((W ** 2).sum()), rel_tol=1e-9, abs_tol=1e-12)


# ---- effective rank --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_effective_rank_of_identity_is_n(n):
    assert effective_rank(3.0 * torch.eye(n)) == pytest.approx(n, rel=1e-12)


def test_effective_rank_of_rank_one_is_one():
    assert effective_rank(known_rank(30, 17, 1)) == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_by_hand():
    sigma = [3.0, 1.0]  # p = (3/4, 1/4)
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert effective_rank(with_spectrum(sigma, 5, 4)) == pytest.approx(expected, rel=1e-9)


@given(matrices)
@settings(max_examples=40, deadline=None)
def test_effective_rank_between_one_and_rank(W):
    e = effective_rank(W)
    assert 1 - 1e-9 <= e <= np.linalg.matrix_rank(W.numpy()) + 1e-9


@given(matrices)
@settings(max_examples=40, deadline=None)
def test_effective_rank_is_scale_invariant(W):
    assert effective_rank(7.5 * W) == pytest.approx(effective_rank(W), rel=1e-9)  # scale-invariant


def test_effective_rank_of_zero_matrix_raises():
    with pytest.raises(ValueError, match="non-zero"):
        effective_rank(torch.zeros(3, 4))


# ---- energy rank -----------------------------------------------------------------------------

def test_energy_rank_by_hand():
    W = with_spectrum([3.0, 2.0, 1.0, 1.0], 8, 6)  # energies 9, 4, 1, 1 of 15
    assert energy_rank(W, 0.5) == 1          # 9/15 = 0.6
    assert energy_rank(W, 0.6) == 1          # exactly reached counts
    assert energy_rank(W, 0.8) == 2          # 13/15 = 0.867
    assert energy_rank(W, 0.9) == 3          # 14/15 = 0.933
    assert energy_rank(W, 1.0) == 4          # numerical rank, not min(m, n) = 6


@pytest.mark.parametrize("r", [1, 3, 5])
def test_energy_rank_full_energy_is_rank(r):
    assert energy_rank(known_rank(12, 10, r), 1.0) == r


def test_energy_rank_of_zero_matrix_is_zero():
    assert energy_rank(torch.zeros(4, 4), 0.9) == 0


@given(matrices, st.floats(0.01, 1.0))
@settings(max_examples=40, deadline=None)
def test_energy_rank_keeps_enough_energy(W, frac):
    r = energy_rank(W, frac)
    s2 = spectrum(W).numpy() ** 2
    assert s2[:r].sum() >= frac * s2.sum() * (1 - 1e-9)


@given(matrices, st.floats(0.01, 1.0))
@settings(max_examples=40, deadline=None)
def test_energy_rank_is_the_smallest_sufficient_rank(W, frac):
    r = energy_rank(W, frac)
    s2 = spectrum(W).numpy() ** 2
    if r > 1:
        assert s2[:r - 1].sum() < frac * s2.sum()


@given(matrices, st.floats(0.01, 1.0))
@settings(max_examples=40, deadline=None)
def test_energy_rank_grows_with_frac(W, frac):
    assert energy_rank(W, frac) <= energy_rank(W, min(1.0, frac + 0.05))


@pytest.mark.parametrize("frac", [0, -0.1, 1.01, float("nan"), "0.9", True])
def test_energy_rank_rejects_frac_outside_0_1(frac):
    with pytest.raises(ValueError, match="frac"):
        energy_rank(torch.eye(3), frac)


# ---- the same from a spectrum ------------------------------------------------------------------

@given(matrices, st.floats(0.05, 1.0))
@settings(max_examples=20, deadline=None)
def test_energy_rank_of_spectrum_agrees_with_energy_rank(W, frac):
    assert energy_rank_of_spectrum(spectrum(W), frac) == energy_rank(W, frac)


@given(matrices, st.floats(0.05, 1.0))
@settings(max_examples=20, deadline=None)
def test_effective_rank_of_spectrum_agrees_with_effective_rank(W, frac):
    assert effective_rank_of_spectrum(spectrum(W).numpy()) == pytest.approx(effective_rank(W), rel=1e-12)


BAD_SPECTRA = [(torch.ones(2, 2), "1-D"), (torch.tensor([]), "1-D"),
               (torch.tensor([1.0, -1.0]), "non-negative"), (torch.tensor([1.0, float("nan")]), "finite"),
               (torch.tensor([1.0, 2.0]), "descending")]
SPECTRUM_FUNCTIONS = {"effective_rank_of_spectrum": effective_rank_of_spectrum,
                      "energy_rank_of_spectrum": lambda s: energy_rank_of_spectrum(s, 0.9)}


@pytest.mark.parametrize("fn", list(SPECTRUM_FUNCTIONS))
@pytest.mark.parametrize("bad, match", BAD_SPECTRA, ids=[m for _, m in BAD_SPECTRA])
def test_spectrum_functions_reject_a_bad_spectrum(fn, bad, match):
    with pytest.raises(ValueError, match=match):
        SPECTRUM_FUNCTIONS[fn](bad)


def test_energy_rank_of_spectrum_rejects_a_list():
    with pytest.raises(TypeError, match="sigma must be"):
        energy_rank_of_spectrum([3.0, 1.0])


def test_energy_rank_of_spectrum_rejects_frac_zero():
    with pytest.raises(ValueError, match="frac"):
        energy_rank_of_spectrum(torch.tensor([1.0]), 0)


# ---- truncation ------------------------------------------------------------------------------

def test_truncate_matches_numpy_svd():
    W = torch.randn(15, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    U, s, Vt = np.linalg.svd(W.numpy(), full_matrices=False)
    for r in range(0, 10):
        np.testing.assert_allclose(truncate(W, r).numpy(), (U[:, :r] * s[:r]) @ Vt[:r], atol=1e-12)


def test_truncate_recovers_known_rank_and_keeps_dtype():
    W = known_rank(20, 12, 3, dtype=torch.float32)
    out = truncate(W, 3)
    assert out.dtype == torch.float32 and out.shape == W.shape
    torch.testing.assert_close(out, W, rtol=1e-5, atol=1e-4)


def test_truncate_to_rank_zero_is_the_zero_matrix():
    assert truncate(known_rank(20, 12, 3, dtype=torch.float32), 0).abs().max() == 0


def test_truncate_of_a_numpy_array_keeps_its_dtype():
    W = known_rank(20, 12, 3, dtype=torch.float32)
    assert truncate(W.numpy(), 3).dtype == torch.float32
    assert truncate(W.double().numpy(), 3).dtype == torch.float64


@given(matrices, st.data())
@settings(max_examples=40, deadline=None)
def test_eckart_young_error_is_the_tail(W, data):
    r = data.draw(st.integers(0, min(W.shape)))
    err = float(torch.linalg.matrix_norm(W - truncate(W, r)))
    # ‖W − W_r‖_F = sqrt(Σ_{i>r} σ_i²)
    assert err == pytest.approx(float(spectrum(W)[r:].pow(2).sum().sqrt()), abs=1e-9)


@given(matrices, st.data())
@settings(max_examples=40, deadline=None)
def test_truncate_to_r_has_rank_at_most_r(W, data):
    r = data.draw(st.integers(0, min(W.shape)))
    assert np.linalg.matrix_rank(truncate(W, r).numpy(), tol=1e-9) <= r


@given(matrices, st.data())
@settings(max_examples=40, deadline=None)
def test_truncation_error_is_the_relative_frobenius_error(W, data):
    r = data.draw(st.integers(0, min(W.shape)))
    err = float(torch.linalg.matrix_norm(W - truncate(W, r)))
    assert truncation_error(W, r) == pytest.approx(err / float(torch.linalg.matrix_norm(W)), abs=1e-9)


def test_truncation_is_best_among_random_rank_r_matrices():
    W = torch.randn(10, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    best = float(torch.linalg.matrix_norm(W - truncate(W, 2)))
    for seed in range(20):
        other = truncate(W + 0.3 * known_rank(10, 8, 8, seed=seed), 2)
        assert float(torch.linalg.matrix_norm(W - other)) >= best - 1e-12


def test_truncation_error_ends():
    W = known_rank(6, 5, 2)
    assert truncation_error(W, 0) == pytest.approx(1.0)
    assert truncation_error(W, 2) == pytest.approx(0.0, abs=1e-7)
    assert truncation_error(torch.zeros(3, 3), 1) == 0.0


def test_truncation_summary_by_hand():
    s = torch.tensor([3.0, 2.0, 1.0, 1.0], dtype=torch.float64)  # energies 9, 4, 1, 1 of 15
    out = truncation_summary(s, 2)
    assert out["kept_energy"] == pytest.approx(13 / 15)
    assert out["relative_error"] == pytest.approx(math.sqrt(2 / 15))
    assert out["sigma_r"] == 2.0 and out["max_rank"] == 4


def test_truncation_summary_clips_r_to_the_spectrum():
    s = torch.tensor([3.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    assert truncation_summary(s, 9)["r"] == 4  # clipped


def test_truncation_summary_at_rank_zero_has_no_sigma_r():
    s = torch.tensor([3.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    assert math.isnan(truncation_summary(s, 0)["sigma_r"])


# ---- subspace similarity ---------------------------------------------------------------------

def orthonormal(d, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))
    return Q


def test_subspace_similarity_of_a_subspace_with_itself_is_one():
    U = orthonormal(32, 8)
    for i in (1, 4, 8):
        assert subspace_similarity(U, U, i, i) == pytest.approx(1.0)


def test_subspace_similarity_of_a_subspace_inside_a_larger_one_is_one():
    U = orthonormal(32, 8)
    # a subspace inside a larger one: φ = 1 too (normalised by min(i, j))
    assert subspace_similarity(U, U, 3, 8) == pytest.approx(1.0)


def test_subspace_similarity_ignores_the_choice_of_basis():
    U = orthonormal(32, 8)
    # the same span in another basis
    R, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    assert subspace_similarity(U, U @ R, 8, 8) == pytest.approx(1.0)


def test_subspace_similarity_of_orthogonal_complements_is_zero():
    Q = orthonormal(20, 20, seed=1)
    assert subspace_similarity(Q[:, :6], Q[:, 6:], 6, 14) == pytest.approx(0.0, abs=1e-12)


def test_subspace_similarity_by_hand():
    e = torch.eye(4, dtype=torch.float64)
    U2 = torch.stack([(e[0] + e[2]) / math.sqrt(2), e[3]], 1)
    # ‖[e0 e1]ᵀ U2‖² = 1/2 (cos² 45°) + 0 ;  / min(2, 2)
    assert subspace_similarity(e[:, :2], U2, 2, 2) == pytest.approx(0.25)
    assert subspace_similarity(e[:, :2], U2, 1, 1) == pytest.approx(0.5)


def test_singular_vectors_have_one_column_per_singular_value():
    A1 = torch.randn(8, 50, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    A2 = torch.randn(64, 50, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert singular_vectors(A1, "right").shape == (50, 8) and singular_vectors(A2, "right").shape == (50, 50)


def test_subspace_similarity_matches_numpy_with_singular_vectors():
    A1 = torch.randn(8, 50, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    A2 = torch.randn(64, 50, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    V1, V2 = singular_vectors(A1, "right"), singular_vectors(A2, "right")
    v1 = np.linalg.svd(A1.numpy())[2].T
    v2 = np.linalg.svd(A2.numpy())[2].T
    for i, j in [(1, 1), (4, 10), (8, 50)]:
        expected = np.linalg.norm(v1[:, :i].T @ v2[:, :j]) ** 2 / min(i, j)
        assert subspace_similarity(V1, V2, i, j) == pytest.approx(expected, abs=1e-10)


@st.composite
def subspace_pairs(draw):
    """(U1, U2, i, j): orthonormal bases of random subspaces of R^d and column counts to compare."""
    d, k1, k2, seed = draw(st.integers(2, 16)), draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(
        st.integers(0, 999))
    k1, k2 = min(k1, d), min(k2, d)
    return orthonormal(d, k1, seed), orthonormal(d, k2, seed + 1), draw(st.integers(1, k1)), draw(
        st.integers(1, k2))


@given(subspace_pairs())
@settings(max_examples=40, deadline=None)
def test_subspace_similarity_is_between_zero_and_one(pair):
    U1, U2, i, j = pair
    assert -1e-12 <= subspace_similarity(U1, U2, i, j) <= 1 + 1e-12


@given(subspace_pairs())
@settings(max_examples=40, deadline=None)
def test_subspace_similarity_is_symmetric(pair):
    U1, U2, i, j = pair
    assert subspace_similarity(U1, U2, i, j) == pytest.approx(subspace_similarity(U2, U1, j, i))


@given(subspace_pairs())
@settings(max_examples=40, deadline=None)
def test_subspace_similarity_grid_holds_every_pair(pair):
    U1, U2, i, j = pair
    k1, k2 = U1.shape[1], U2.shape[1]
    grid = subspace_similarity_grid(U1, U2, k1, k2)
    assert grid.shape == (k1, k2)
    assert float(grid[i - 1, j - 1]) == pytest.approx(subspace_similarity(U1, U2, i, j), abs=1e-12)


def test_subspace_similarity_rejects_a_basis_that_is_not_orthonormal():
    U = orthonormal(10, 4)
    with pytest.raises(ValueError, match="orthonormal"):
        subspace_similarity(3 * U, U, 2, 2)


def test_subspace_similarity_rejects_an_adapter_passed_as_is():
    A = orthonormal(10, 4).T.contiguous()  # an r × d adapter passed as is, not its singular vectors
    with pytest.raises(ValueError, match="orthonormal"):
        subspace_similarity(A, A, 2, 2)


def test_subspace_similarity_rejects_bases_of_different_spaces():
    with pytest.raises(ValueError, match="same number of rows"):
        subspace_similarity(orthonormal(10, 4), orthonormal(9, 4), 2, 2)


@pytest.mark.parametrize("i, j, err, match", [(5, 2, ValueError, r"i must be an int in"),
                                              (2, 0, ValueError, r"j must be an int in"),
                                              (2.0, 2, TypeError, "i must be an int")])
def test_subspace_similarity_rejects_a_bad_column_count(i, j, err, match):
    U = orthonormal(10, 4)
    with pytest.raises(err, match=match):
        subspace_similarity(U, U, i, j)


def test_subspace_similarity_rejects_a_vector():
    U = orthonormal(10, 4)
    with pytest.raises(ValueError, match="U1 must be 2-D"):
        subspace_similarity(U[:, 0], U, 1, 1)


def test_singular_vectors_rejects_an_unknown_side():
    with pytest.raises(ValueError, match="side"):
        singular_vectors(torch.eye(3), "up")


def test_singular_vectors_rejects_a_rank_above_the_matrix():
    with pytest.raises(ValueError, match=r"r must be an int in"):
        singular_vectors(torch.eye(3), "left", r=4)


def test_singular_vectors_returns_r_columns():
    assert singular_vectors(torch.eye(3), "left", r=2).shape == (3, 2)


# ---- amplification factor ---------------------------------------------------------------------

def test_amplification_factor_by_hand():
    W = torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))
    delta = torch.zeros(3, 3, dtype=torch.float64)
    delta[2, 2] = 2.0  # ΔW acts on e3, where W has 0.1: ‖ΔW‖ / ‖Uᵀ W V‖ = 2 / 0.1
    assert amplification_factor(delta, W, 1) == pytest.approx(20.0)
    delta_aligned = torch.diag(torch.tensor([2.0, 0, 0], dtype=torch.float64))
    assert amplification_factor(delta_aligned, W, 1) == pytest.approx(0.2)


def test_amplification_factor_matches_numpy():
    g = torch.Generator().manual_seed(6)
    W, delta = torch.randn(12, 9, generator=g), known_rank(12, 9, 4, seed=7)
    U, _, Vt = np.linalg.svd(delta.numpy(), full_matrices=False)
    expected = np.linalg.norm(delta.numpy()) / np.linalg.norm(U[:, :4].T @ W.numpy() @ Vt[:4].T)
    assert amplification_factor(delta, W, 4) == pytest.approx(expected, rel=1e-9)


def test_amplification_factor_is_infinite_where_w_has_nothing():
    e1, e2 = torch.diag(torch.tensor([1.0, 0.0])), torch.diag(torch.tensor([0.0, 1.0]))
    assert amplification_factor(e2, e1, 1) == math.inf


def test_amplification_factor_rejects_shapes_that_differ():
    delta = known_rank(12, 9, 4, seed=7)
    with pytest.raises(ValueError, match="same shape"):
        amplification_factor(delta, torch.randn(12, 9).T, 2)


def test_amplification_factor_rejects_rank_zero():
    delta = known_rank(12, 9, 4, seed=7)
    with pytest.raises(ValueError, match=r"r must be an int in"):
        amplification_factor(delta, torch.randn(12, 9), 0)


DIAG = torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))


def test_projection_norm_by_hand():
    W = torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))
    e = torch.eye(3, dtype=torch.float64)
    assert projection_norm(W, e[:, :1], e[:, :1]) == pytest.approx(10.0)
    assert projection_norm(W, e[:, 1:], e[:, 1:]) == pytest.approx(math.hypot(1.0, 0.1))
    assert projection_norm(W, e, e) == pytest.approx(float(torch.linalg.matrix_norm(W)))


def test_projection_norm_rejects_a_u_that_is_not_orthonormal():
    e = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="U must have orthonormal"):
        projection_norm(DIAG, 2 * e[:, :1], e[:, :1])


def test_projection_norm_rejects_a_v_that_is_not_orthonormal():
    e = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="V must have orthonormal"):
        projection_norm(DIAG, e[:, :1], torch.ones(3, 1, dtype=torch.float64))


def test_projection_norm_rejects_a_basis_of_another_space():
    e = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="rows"):
        projection_norm(DIAG, torch.eye(4)[:, :1], e[:, :1])


# ---- random_like -------------------------------------------------------------------------------

def test_random_like_keeps_shape_dtype_and_norm():
    W = known_rank(30, 20, 2, dtype=torch.float32)
    R = random_like(W, seed=1)
    assert R.shape == W.shape and R.dtype == torch.float32
    assert float(torch.linalg.matrix_norm(R)) == pytest.approx(float(torch.linalg.matrix_norm(W)), rel=1e-5)


def test_random_like_is_reproducible_with_a_seed():
    W = known_rank(30, 20, 2, dtype=torch.float32)
    R = random_like(W, seed=1)
    assert torch.equal(R, random_like(W, seed=1)) and not torch.equal(R, random_like(W, seed=2))


def test_random_like_spreads_over_all_directions():
    W = known_rank(30, 20, 2, dtype=torch.float32)
    assert effective_rank(random_like(W, seed=1)) > 5 * effective_rank(W)  # noise spreads over all directions


# ---- bad matrices and ranks ------------------------------------------------------------------------

MATRIX_FUNCTIONS = {"spectrum": spectrum, "effective_rank": effective_rank,
                    "energy_rank": lambda W: energy_rank(W, 0.9), "truncate": lambda W: truncate(W, 1),
                    "truncation_error": lambda W: truncation_error(W, 1), "random_like": random_like}


@pytest.mark.parametrize("fn", list(MATRIX_FUNCTIONS))
@pytest.mark.parametrize("shape", [(3,), (2, 2, 2)])
def test_matrix_functions_reject_a_tensor_that_is_not_2d(fn, shape):
    with pytest.raises(ValueError, match="W must be 2-D"):
        MATRIX_FUNCTIONS[fn](torch.ones(shape))


@pytest.mark.parametrize("fn", list(MATRIX_FUNCTIONS))
def test_matrix_functions_reject_nan(fn):
    with pytest.raises(ValueError, match="finite"):
        MATRIX_FUNCTIONS[fn](torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


@pytest.mark.parametrize("fn", list(MATRIX_FUNCTIONS))
def test_matrix_functions_reject_inf_in_a_numpy_array(fn):
    with pytest.raises(ValueError, match="finite"):
        MATRIX_FUNCTIONS[fn](np.array([[1.0, np.inf]]))


@pytest.mark.parametrize("fn", list(MATRIX_FUNCTIONS))
def test_matrix_functions_reject_an_empty_matrix(fn):
    with pytest.raises(ValueError, match="non-empty"):
        MATRIX_FUNCTIONS[fn](torch.ones(0, 3))


@pytest.mark.parametrize("fn", list(MATRIX_FUNCTIONS))
def test_matrix_functions_reject_a_list(fn):
    with pytest.raises(TypeError, match="W must be a torch.Tensor"):
        MATRIX_FUNCTIONS[fn]([[1.0, 2.0]])


@pytest.mark.parametrize("fn", list(MATRIX_FUNCTIONS))
def test_matrix_functions_reject_complex_matrices(fn):
    with pytest.raises(TypeError, match="real"):
        MATRIX_FUNCTIONS[fn](torch.ones(2, 2, dtype=torch.complex64))


@pytest.mark.parametrize("fn", [truncate, truncation_error], ids=["truncate", "truncation_error"])
@pytest.mark.parametrize("r, err", [(-1, ValueError), (4, ValueError), (1.5, TypeError), (True, TypeError)])
def test_truncation_rejects_a_bad_rank(fn, r, err):
    with pytest.raises(err, match="r must be"):
        fn(torch.ones(3, 5), r)


def test_truncated_amplification_factor_puts_the_rank_r_part_of_delta_on_top():
    g = torch.Generator().manual_seed(3)
    delta, W = (torch.randn(12, 9, generator=g, dtype=torch.float64) for _ in range(2))
    U, S, Vh = np.linalg.svd(delta.numpy(), full_matrices=False)
    expected = np.sqrt((S[:3] ** 2).sum()) / np.linalg.norm(U[:, :3].T @ W.numpy() @ Vh[:3].T)
    assert amplification_factor(delta, W, 3, truncated=True) == pytest.approx(expected, rel=1e-9)
    assert amplification_factor(delta, W, 3, truncated=True) < amplification_factor(delta, W, 3)


def test_amplification_factor_rejects_a_truncated_flag_that_is_not_a_bool():
    with pytest.raises(TypeError, match="truncated"):
        amplification_factor(torch.eye(3), torch.eye(3), 1, truncated="yes")
