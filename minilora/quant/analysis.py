"""Measuring quantisation on a real model: weight errors, normality, simulated quantisation.

Used by notebooks 04 and 05. "Simulated" quantisation quantises each Linear weight and
writes the dequantised values back (W ← dequantize(quantize(W))): the network computes
exactly what a 4-bit layer would, without a 4-bit layer (that is ``minilora.qlora``'s job).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from scipy import stats

from ..checks import check_int
from .blockwise import bits_per_parameter, dequantize, quantize_blockwise
from .codes import check_blocksize


def _tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    return x.detach()


def _weights(weights: dict, name: str = "weights") -> dict:
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"{name} must be a non-empty dict of name → weight tensor")
    for k, w in weights.items():
        _tensor(w, f"{name}[{k!r}]")
    return weights


def linear_weights(model, skip=("classifier",)) -> dict[str, torch.Tensor]:
    """``{module name: weight}`` of every ``nn.Linear`` whose name does not start with ``skip``
    (a prefix of the dotted module name, e.g. ``"classifier"``; an empty prefix is refused,
    it would skip everything)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    skip = (skip,) if isinstance(skip, str) else tuple(skip)
    if not all(isinstance(s, str) and s for s in skip):
        raise ValueError(f"skip must hold non-empty module-name prefixes, got {skip!r}")
    return {name: m.weight for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.startswith(skip)}


def _relative(err_norm: float, norm: float) -> float:
    """``‖Ŵ − W‖ / ‖W‖``, with 0 for an exactly coded all-zero W (0/0)."""
    if norm == 0:
        return 0.0 if err_norm == 0 else math.inf
    return err_norm / norm


def weight_error(w: torch.Tensor, levels, blocksize: int = 64, **kw) -> dict:
    """Quantisation error of one matrix: ``rel = ‖Ŵ − W‖_F / ‖W‖_F``, ``mse``, ``max_abs``,
    and the measured ``bits`` per parameter of the stored form (kw → quantize_blockwise)."""
    w = _tensor(w, "w").float()
    q = quantize_blockwise(w, levels, blocksize, **kw)
    err = dequantize(q) - w
    return {"rel": _relative(float(err.norm()), float(w.norm())), "mse": float(err.pow(2).mean()),
            "max_abs": float(err.abs().max()), "bits": bits_per_parameter(q), "bytes": q.nbytes}


def quant_summary(w: torch.Tensor, levels, blocksize: int) -> dict:
    """``weight_error`` of one matrix plus its number of ``blocks`` (notebook 04's explorer)."""
    out = weight_error(w, levels, blocksize)
    out["blocks"] = -(-w.numel() // blocksize)
    return out


def double_quant_point(weights: dict, levels, blocksize: int, double_blocksize: int | None,
                       double_levels: str = "dynamic") -> dict:
    """Bits/param and error over all ``weights`` for one configuration (QLoRA §3).

    ``double_blocksize=None``: float32 constants (no double quantisation). ``rel`` is
    ``sqrt(Σ‖Ŵ − W‖²_F / Σ‖W‖²_F)`` over every matrix; ``bits`` = 8·Σbytes / Σparams.
    """
    _weights(weights)
    err2 = norm2 = 0.0
    nbytes = params = 0
    kw = {} if double_blocksize is None else dict(double_quant=True, double_blocksize=double_blocksize,
                                                  double_levels=double_levels)
    for w in weights.values():
        w = w.detach().float()
        q = quantize_blockwise(w, levels, blocksize, **kw)
        err2 += float((dequantize(q) - w).pow(2).sum())
        norm2 += float(w.pow(2).sum())
        nbytes, params = nbytes + q.nbytes, params + w.numel()
    return {"bits": 8.0 * nbytes / params, "rel": _relative(err2 ** 0.5, norm2 ** 0.5), "bytes": nbytes,
            "params": params}


def error_table(weights: dict, tables: dict, blocksize: int = 64, **kw) -> dict[str, dict[str, dict]]:
    """``{matrix: {data type: weight_error(...)}}`` for every matrix and every code table."""
    _weights(weights)
    if not isinstance(tables, dict) or not tables:
        raise ValueError("tables must be a non-empty dict of data-type name → levels")
    return {name: {t: weight_error(w, levels, blocksize, **kw) for t, levels in tables.items()}
            for name, w in weights.items()}


@torch.no_grad()
def simulate_quantization(model, levels, blocksize: int = 64, skip=("classifier",), **kw) -> list[str]:
    """In place: ``W ← dequantize(quantize_blockwise(W))`` for every Linear not in ``skip``.

    Biases, embeddings and LayerNorms stay in full precision (as in QLoRA, which stores
    only the Linear weights in 4 bits). Every matrix is quantised before any is written, so
    a failure (a NaN weight, a bad argument) leaves the model as it was and names the matrix.
    Returns the names of the matrices changed.
    """
    weights = linear_weights(model, skip)
    coded = {}
    for name, w in weights.items():
        try:
            coded[name] = dequantize(quantize_blockwise(w.detach(), levels, blocksize, **kw))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    for name, w in weights.items():
        w.copy_(coded[name])
    return list(weights)


def logit_kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-example ``KL(p_ref ‖ p) = Σ_c p_ref,c (log p_ref,c − log p_c)`` in nats (float64).

    Both are N × classes logits of the same shape; NaN logits are refused (−inf is a
    probability of 0 and is fine)."""
    for name, t in (("reference_logits", reference_logits), ("logits", logits)):
        _tensor(t, name)
        if t.dim() != 2 or bool(torch.isnan(t).any()) or bool((t == math.inf).any()):
            raise ValueError(f"{name} must be an N x classes tensor without NaN or +inf")
    if reference_logits.shape != logits.shape:
        raise ValueError(f"reference_logits and logits must have the same shape, got "
                         f"{tuple(reference_logits.shape)} and {tuple(logits.shape)}")
    ref = torch.log_softmax(reference_logits.double(), -1)
    other = torch.log_softmax(logits.double(), -1)
    # F.kl_div(input = log p, target = log p_ref) = p_ref (log p_ref − log p), elementwise
    terms = F.kl_div(other, ref, reduction="none", log_target=True)
    return torch.where(ref == -math.inf, 0.0, terms).sum(-1)  # 0 · log(0/q) = 0


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of per-example values and its standard error ``s/√n`` (n ≥ 2, finite values)."""
    values = _tensor(values, "values").double().reshape(-1)
    if values.numel() < 2 or not bool(torch.isfinite(values).all()):
        raise ValueError(f"values must hold at least 2 finite numbers, got {values.numel()}")
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def block_normalised(w: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """``x / max|x_block|`` for each full block of ``w`` (what the 4-bit code sees), flat
    float32; a partial last block is left out (at least one full block is needed)."""
    blocksize = check_blocksize(blocksize)
    flat = _tensor(w, "w").float().reshape(-1)
    if flat.numel() < blocksize:
        raise ValueError(f"w must hold at least one block of {blocksize} values, got {flat.numel()}")
    blocks = flat[: flat.numel() // blocksize * blocksize].view(-1, blocksize)
    return (blocks / blocks.abs().amax(1, keepdim=True).clamp(min=1e-38)).reshape(-1)


def gaussian_block_normalised(n_blocks: int, blocksize: int = 64, seed: int = 0) -> torch.Tensor:
    """The same normalisation applied to i.i.d. N(0, 1) blocks: what NF4 assumes W looks like."""
    n_blocks = check_int(n_blocks, "n_blocks", 1)
    g = torch.Generator().manual_seed(check_int(seed, "seed", 0, 2**63 - 1))
    return block_normalised(torch.randn(n_blocks, blocksize, generator=g), blocksize)


def block_errors(w: torch.Tensor, dequantised: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """Relative error ``‖Ŵ_b − W_b‖ / ‖W_b‖`` of every full block b (float64)."""
    blocksize = check_blocksize(blocksize)
    if _tensor(w, "w").shape != _tensor(dequantised, "dequantised").shape:
        raise ValueError(f"w and dequantised must have the same shape, got {tuple(w.shape)} and "
                         f"{tuple(dequantised.shape)}")
    if w.numel() < blocksize:
        raise ValueError(f"w must hold at least one block of {blocksize} values, got {w.numel()}")
    flat_w, flat_d = w.detach().double().reshape(-1), dequantised.detach().double().reshape(-1)
    n = flat_w.numel() // blocksize * blocksize
    bw, bd = flat_w[:n].view(-1, blocksize), flat_d[:n].view(-1, blocksize)
    return (bd - bw).norm(dim=1) / bw.norm(dim=1).clamp(min=1e-30)


def excess_kurtosis(w: torch.Tensor) -> float:
    """Fisher's excess kurtosis ``E[(x−μ)⁴]/σ⁴ − 3``: 0 for a Gaussian, > 0 for heavier tails.
    Needs at least 4 values that are not all equal (σ > 0)."""
    w = _tensor(w, "w")
    if w.numel() < 4 or float(w.double().std()) == 0 or not bool(torch.isfinite(w).all()):
        raise ValueError("w must hold at least 4 finite values that are not all equal (σ > 0)")
    return float(stats.kurtosis(w.detach().double().reshape(-1).numpy(), fisher=True))


def kurtosis_se(n: int) -> float:
    """Standard error of the sample excess kurtosis of n Gaussian values, ≈ √(24/n)."""
    return math.sqrt(24.0 / check_int(n, "n", 4))
