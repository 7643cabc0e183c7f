"""Intrinsic-rank analysis of a weight matrix: is a fine-tuning update ΔW really low-rank?

The LoRA paper (Hu et al. 2021, §4 and §7) rests on the hypothesis that the update a task
makes to a pretrained weight has a low "intrinsic rank". These functions measure that on
any 2-D matrix (a ``torch.Tensor`` or a NumPy array), via its singular value decomposition
``W = U diag(σ) Vᵀ`` with ``σ_1 ≥ σ_2 ≥ … ≥ 0``:

    spectrum(W)                     σ, descending
    effective_rank(W)               exp(H(p)), p_i = σ_i / Σσ        (Roy & Vetterli 2007)
    energy_rank(W, frac)            min r with Σ_{i≤r} σ_i² ≥ frac·Σσ²
    …_of_spectrum(σ)                the same two from singular values already computed
    truncate(W, r)                  best rank-r approximation          (Eckart–Young)
    truncation_error(W, r)          ‖W − W_r‖_F / ‖W‖_F = sqrt(Σ_{i>r} σ_i² / Σσ²)
    truncation_error_curve(σ)       that error for every r = 0 … len(σ), from a spectrum
    truncation_summary(σ, r)        kept energy, error and σ_r of one cut (notebook 01's explorer)
    singular_vectors(W, side)       U (left) or V (right), orthonormal columns
    subspace_similarity(U1, U2, i, j)        LoRA eq. 4
    subspace_similarity_grid(U1, U2, I, J)   eq. 4 for every i ≤ I, j ≤ J (LoRA Fig. 3)
    projection_norm(W, U, V)        ‖Uᵀ W V‖_F                         (LoRA Table 7)
    amplification_factor(ΔW, W, r)           ‖ΔW‖_F / ‖Uᵀ W V‖_F       (LoRA §7.3)
    random_like(W, seed)            Gaussian matrix of the same shape and Frobenius norm

All decompositions run in float64 on the CPU for accuracy; ``truncate`` returns the input's
dtype and device (a NumPy input gives a tensor of its dtype). Scalars come back as Python
``float``/``int``, vectors as float64 tensors. Bad input raises ``TypeError``/``ValueError``
naming the parameter.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..checks import check_int, check_number


def as_matrix(W, name="W") -> torch.Tensor:
    """``W`` as a float64 CPU tensor, after checking it is a finite, non-empty 2-D matrix."""
    if isinstance(W, np.ndarray):
        if W.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got a NumPy array of dtype {W.dtype}")
        W = torch.from_numpy(W)
    if not isinstance(W, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(W).__name__}")
    if W.dim() != 2:
        raise ValueError(f"{name} must be 2-D (a matrix), got shape {tuple(W.shape)}")
    if W.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(W.shape)}")
    if W.is_complex() or W.dtype == torch.bool or W.is_sparse or W.device.type == "meta":
        raise TypeError(f"{name} must be a dense tensor of real numbers, got {W.dtype} on {W.device}"
                        f"{' (sparse)' if W.is_sparse else ''}")
    W = W.detach().to("cpu", torch.float64)
    if not torch.isfinite(W).all():
        raise ValueError(f"{name} must be finite; it holds NaN or inf")
    return W


def _check_rank(r, W: torch.Tensor, name="r", low=0) -> int:
    """``r`` as an int in [low, min(W.shape)]."""
    return check_int(r, name, low, min(W.shape), f" for a {tuple(W.shape)} matrix")


def _like(out: torch.Tensor, W) -> torch.Tensor:
    """``out`` in ``W``'s floating dtype (and device, for a tensor); float32 otherwise."""
    if isinstance(W, torch.Tensor) and W.is_floating_point():
        return out.to(W.device, W.dtype)
    if isinstance(W, np.ndarray) and np.issubdtype(W.dtype, np.floating):
        return out.to(torch.from_numpy(W[:0]).dtype)
    return out.float()


def spectrum(W) -> torch.Tensor:
    """Singular values σ_1 ≥ … ≥ σ_min(m,n) ≥ 0 of ``W`` (float64), from ``W = U diag(σ) Vᵀ``."""
    M = as_matrix(W)
    scale = float(M.abs().max())
    if scale == 0:
        return torch.zeros(min(M.shape), dtype=torch.float64)
    # σ(W) = scale · σ(W / scale): the SVD never sees values near the float64 limits
    return torch.linalg.svdvals(M / scale) * scale


def as_spectrum(sigma, name="sigma") -> torch.Tensor:
    """``sigma`` as a float64 1-D tensor of finite, non-negative, non-increasing singular values."""
    if isinstance(sigma, np.ndarray):
        sigma = torch.from_numpy(sigma)
    if not isinstance(sigma, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(sigma).__name__}")
    if sigma.dim() != 1 or sigma.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector of singular values, "
                         f"got shape {tuple(sigma.shape)}")
    sigma = sigma.detach().to("cpu", torch.float64)
    if not torch.isfinite(sigma).all() or (sigma < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative singular values")
    if (sigma[1:] > sigma[:-1]).any():
        raise ValueError(f"{name} must be sorted in descending order (as spectrum() returns it)")
    return sigma


def effective_rank(W) -> float:
    """Effective rank (Roy & Vetterli 2007): ``exp(−Σ p_i log p_i)`` with ``p_i = σ_i / Σ_j σ_j``.

    A smooth count of the directions a matrix uses: n for a multiple of the n×n identity,
    1 for a rank-1 matrix, always in [1, rank(W)]. Terms with p_i = 0 contribute 0. A zero
    matrix has no distribution of singular values, so it raises ``ValueError``.
    """
    return effective_rank_of_spectrum(spectrum(W))


def effective_rank_of_spectrum(sigma) -> float:
    """``effective_rank`` from singular values already computed (descending), e.g. an SVD reused."""
    s = as_spectrum(sigma)
    total = s.sum()
    if total == 0:
        raise ValueError("W must be non-zero (all singular values are 0): the effective rank of a zero "
                         "matrix is undefined")
    s = s / s[0]  # scale-free: p_i = σ_i / Σσ is the same for σ / σ_1, which cannot overflow
    total = s.sum()
    p = s / total
    p = p[p > 0]
    # H(p) = −Σ p_i log p_i ;  erank = exp(H)
    return math.exp(float(-(p * p.log()).sum()))


def energy_rank(W, frac=0.9) -> int:
    """Smallest r with ``Σ_{i≤r} σ_i² ≥ frac · Σ_i σ_i²``: how many directions hold ``frac`` of ‖W‖²_F.

    ``frac`` is in (0, 1]; a zero matrix has rank 0. A relative tolerance of 1e-12 absorbs
    float rounding, so ``frac=1`` returns the numerical rank rather than min(m, n).
    """
    _check_frac(frac)
    return energy_rank_of_spectrum(spectrum(W), frac)


def _check_frac(frac):
    check_number(frac, "frac", 0.0, 1.0, low_open=True)


def energy_rank_of_spectrum(sigma, frac=0.9) -> int:
    """``energy_rank`` from singular values already computed (descending)."""
    _check_frac(frac)
    sigma = as_spectrum(sigma)
    if float(sigma[0]) == 0:
        return 0
    energy = (sigma / sigma[0]) ** 2  # relative energies: no overflow or underflow for any scale
    total = float(energy.sum())
    cumulative = energy.cumsum(0)
    # first index where Σ_{i≤r} σ_i² reaches frac·Σσ² (tolerance for rounding)
    return int((cumulative < frac * total * (1 - 1e-12)).sum()) + 1


def truncate(W, r) -> torch.Tensor:
    """Best rank-r approximation ``W_r = Σ_{i≤r} σ_i u_i v_iᵀ`` (Eckart–Young–Mirsky).

    ``r`` is an int in [0, min(m, n)] (0 gives zeros, min(m, n) gives ``W`` back to rounding).
    No rank-r matrix is closer in Frobenius or spectral norm; the Frobenius error is
    ``sqrt(Σ_{i>r} σ_i²)``. The result has ``W``'s dtype and device (float32 for NumPy input).
    """
    M = as_matrix(W)
    r = _check_rank(r, M)
    U, s, Vh = torch.linalg.svd(M, full_matrices=False)
    # W_r = U[:, :r] diag(σ[:r]) Vᵀ[:r]
    return _like((U[:, :r] * s[:r]) @ Vh[:r], W)


def truncation_error_curve(sigma) -> torch.Tensor:
    """``e_r = ‖W − W_r‖_F / ‖W‖_F = sqrt(Σ_{i>r} σ_i² / Σ σ_i²)`` for r = 0 … k (float64, k + 1
    values) from singular values already computed (Eckart–Young). All zeros for a zero matrix."""
    sigma = as_spectrum(sigma)
    if float(sigma[0]) == 0:
        return torch.zeros(sigma.numel() + 1, dtype=torch.float64)
    energy = (sigma / sigma[0]) ** 2  # relative energies: no overflow or underflow for any scale
    total = float(energy.sum())
    # Σ_{i>r} σ_i², summed from the smallest σ up (no cancellation for small tails)
    tail_energy = torch.cat([energy.flip(0).cumsum(0).flip(0), energy.new_zeros(1)])
    return (tail_energy / total).sqrt()


def truncation_error(W, r) -> float:
    """Relative error of the best rank-r approximation, ``‖W − W_r‖_F / ‖W‖_F = sqrt(Σ_{i>r} σ_i² / Σ σ_i²)``.

    Computed from the spectrum alone (Eckart–Young); 0 for a zero matrix.
    """
    M = as_matrix(W)
    r = _check_rank(r, M)
    return float(truncation_error_curve(spectrum(M))[r])


def truncation_summary(sigma, r: int) -> dict:
    """One rank-r cut of a matrix with singular values ``sigma``: ``r`` (clipped to len(σ)),
    ``kept_energy`` = Σ_{i≤r}σ²/Σσ², ``relative_error`` = sqrt(1 − kept) (Eckart–Young),
    ``sigma_r`` (NaN at r = 0) and ``max_rank``."""
    s = as_spectrum(sigma)
    r = min(check_int(r, "r", 0), s.numel())
    error = float(truncation_error_curve(s)[r])
    return {"r": r, "kept_energy": 1.0 - error ** 2, "relative_error": error,
            "sigma_r": float(s[r - 1]) if r else math.nan, "max_rank": s.numel()}


def singular_vectors(W, side="left", r=None) -> torch.Tensor:
    """The top-r singular directions of ``W`` as orthonormal columns (float64).

    ``side="left"``: U[:, :r] (m × r), spanning W's column space; ``side="right"``:
    V[:, :r] = Vᵀ[:r].T (n × r), spanning its row space. ``r=None`` keeps min(m, n). For a
    LoRA adapter ``A`` (r × d_in) the LoRA paper's §7.2 uses the right singular vectors.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    M = as_matrix(W)
    r = min(M.shape) if r is None else _check_rank(r, M, low=1)
    U, _, Vh = torch.linalg.svd(M, full_matrices=False)
    return U[:, :r] if side == "left" else Vh[:r].T


def _check_orthonormal(U, name: str, k: int) -> torch.Tensor:
    """``U`` as float64 with its first k columns checked orthonormal (UᵀU = I to 1e-4)."""
    U = as_matrix(U, name)
    head = U[:, :k]
    err = float((head.T @ head - torch.eye(k, dtype=U.dtype)).abs().max())
    if err > 1e-4:
        raise ValueError(
            f"{name} must have orthonormal columns ({name}ᵀ{name} = I; max deviation {err:.2g}): pass "
            "singular vectors as columns, e.g. singular_vectors(A, 'right') for a LoRA A (r × d_in)")
    return U


def _check_pair(U1, U2, i, j):
    """Validate a pair of orthonormal bases (d × k1, d × k2) and 1 ≤ i ≤ k1, 1 ≤ j ≤ k2."""
    a, b = as_matrix(U1, "U1"), as_matrix(U2, "U2")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"U1 and U2 must have the same number of rows (the ambient dimension d), "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    i = check_int(i, "i", 1, a.shape[1], f" (U1 has {a.shape[1]} columns)")
    j = check_int(j, "j", 1, b.shape[1], f" (U2 has {b.shape[1]} columns)")
    return _check_orthonormal(a, "U1", i), _check_orthonormal(b, "U2", j), i, j


def subspace_similarity(U1, U2, i, j) -> float:
    """LoRA eq. 4: ``φ(U1, U2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j)`` ∈ [0, 1].

    ``U1`` (d × k1) and ``U2`` (d × k2) hold directions as **orthonormal columns**, most
    important first — singular vectors from ``singular_vectors`` (for LoRA adapters ``A``,
    r × d_in, the right ones, as in §7.2). The value is the mean squared cosine of the
    principal angles between span(U1[:, :i]) and span(U2[:, :j]): 1 when one span contains
    the other, 0 when they are orthogonal. Non-orthonormal input raises ``ValueError``.
    """
    a, b, i, j = _check_pair(U1, U2, i, j)
    # φ = ‖U1_iᵀ U2_j‖²_F / min(i, j)
    return float((a[:, :i].T @ b[:, :j]).pow(2).sum()) / min(i, j)


def subspace_similarity_grid(U1, U2, i_max, j_max) -> torch.Tensor:
    """``φ(U1, U2, i, j)`` for all 1 ≤ i ≤ i_max, 1 ≤ j ≤ j_max, as an (i_max × j_max) float64 tensor.

    Entry ``[i−1, j−1]`` equals ``subspace_similarity(U1, U2, i, j)``: one product
    ``M = U1ᵀU2``, then 2-D cumulative sums of M² divided by min(i, j) (LoRA Fig. 3 heatmaps).
    """
    a, b, i_max, j_max = _check_pair(U1, U2, i_max, j_max)
    sq = (a[:, :i_max].T @ b[:, :j_max]).pow(2)
    # Σ_{p≤i, q≤j} M_pq²
    cum = sq.cumsum(0).cumsum(1)
    i = torch.arange(1, i_max + 1, dtype=cum.dtype)[:, None]
    j = torch.arange(1, j_max + 1, dtype=cum.dtype)[None, :]
    return cum / torch.minimum(i, j)


def projection_norm(W, U, V) -> float:
    """``‖Uᵀ W V‖_F``: the size of W inside the subspace pair (columns of U, columns of V); LoRA Table 7.

    ``U`` (m × r) and ``V`` (n × r) must have orthonormal columns (e.g. ``singular_vectors``).
    """
    M, U, V = as_matrix(W), as_matrix(U, "U"), as_matrix(V, "V")
    U, V = _check_orthonormal(U, "U", U.shape[1]), _check_orthonormal(V, "V", V.shape[1])
    if U.shape[0] != M.shape[0] or V.shape[0] != M.shape[1]:
        raise ValueError(f"U must have {M.shape[0]} rows and V {M.shape[1]} rows for W of shape "
                         f"{tuple(M.shape)}, got U {tuple(U.shape)} and V {tuple(V.shape)}")
    return float(torch.linalg.matrix_norm(U.T @ M @ V))


def amplification_factor(delta, W, r, truncated=False) -> float:
    """LoRA §7.3: ``‖ΔW‖_F / ‖Uᵀ W V‖_F``, with U (m × r), V (n × r) the top-r singular vectors of ΔW.

    ``‖Uᵀ W V‖_F`` is how much of W lies in the r-dimensional subspace ΔW acts on; a large
    ratio means ΔW amplifies directions W itself barely uses (the paper: ≈ 21.5 for Wq at
    r = 4 on GPT-3). The paper's ΔW is a rank-r LoRA update; for a full-rank ΔW (a full
    fine-tune), ``truncated=True`` puts its rank-r part in the numerator,
    ``‖ΔW_r‖_F = sqrt(Σ_{i≤r} σ_i²)``, the update that acts in those r directions.
    Returns ``inf`` if W has no component in that subspace.
    """
    if not isinstance(truncated, bool):
        raise TypeError(f"truncated must be True or False, got {truncated!r}")
    D, M = as_matrix(delta, "delta"), as_matrix(W, "W")
    if D.shape != M.shape:
        raise ValueError(f"delta and W must have the same shape, got {tuple(D.shape)} and {tuple(M.shape)}")
    r = _check_rank(r, D, low=1)
    d_scale, w_scale = float(D.abs().max()), float(M.abs().max())
    if d_scale == 0:
        raise ValueError("delta must be non-zero: the amplification of a zero update is undefined")
    U, S, Vh = torch.linalg.svd(D / d_scale, full_matrices=False)
    # ‖Uᵀ W V‖_F, U = U_Δ[:, :r], V = V_Δ[:, :r]
    if w_scale == 0:
        return math.inf
    # the ratio of norms is scale-free: compute it on D / max|D| and W / max|W|, rescale once
    projected = projection_norm(M / w_scale, U[:, :r], Vh[:r].T)
    # numerator: ‖ΔW‖_F, or ‖ΔW_r‖_F = sqrt(Σ_{i≤r} σ_i²) with truncated=True
    norm = float(S[:r].pow(2).sum().sqrt()) if truncated else float(torch.linalg.matrix_norm(D / d_scale))
    return math.inf if projected == 0 else (norm / projected) * (d_scale / w_scale)


def random_like(W, seed=0) -> torch.Tensor:
    """A Gaussian matrix with ``W``'s shape, dtype and Frobenius norm: ``G · ‖W‖_F / ‖G‖_F``, G_ij ~ N(0, 1).

    The null model for a spectrum: i.i.d. noise has no preferred directions, so its singular
    values fall off slowly (their squares follow the Marchenko–Pastur law; for a square
    matrix the singular values follow the quarter-circle law); a structured update falls off faster.
    """
    M = as_matrix(W)
    seed = check_int(seed, "seed", 0, 2**63 - 1)
    G = torch.randn(M.shape, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return _like(G * (torch.linalg.matrix_norm(M) / torch.linalg.matrix_norm(G)), W)
