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

from .blockwise import bits_per_parameter, dequantize, quantize_blockwise


def linear_weights(model, skip=("classifier",)) -> dict[str, torch.Tensor]:
    """``{module name: weight}`` of every ``nn.Linear`` whose name does not start with ``skip``."""
    return {name: m.weight for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.startswith(tuple(skip))}


def weight_error(w: torch.Tensor, levels, blocksize: int = 64, **kw) -> dict:
    """Quantisation error of one matrix: ``rel = ‖Ŵ − W‖_F / ‖W‖_F``, ``mse``, ``max_abs``,
    and the measured ``bits`` per parameter of the stored form (kw → quantize_blockwise)."""
    w = w.detach().float()
    q = quantize_blockwise(w, levels, blocksize, **kw)
    err = dequantize(q) - w
    return {"rel": float(err.norm() / w.norm()), "mse": float(err.pow(2).mean()),
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
    return {"bits": 8.0 * nbytes / params, "rel": (err2 / norm2) ** 0.5, "bytes": nbytes, "params": params}


def error_table(weights: dict, tables: dict, blocksize: int = 64, **kw) -> dict[str, dict[str, dict]]:
    """``{matrix: {data type: weight_error(...)}}`` for every matrix and every code table."""
    return {name: {t: weight_error(w, levels, blocksize, **kw) for t, levels in tables.items()}
            for name, w in weights.items()}


@torch.no_grad()
def simulate_quantization(model, levels, blocksize: int = 64, skip=("classifier",), **kw) -> list[str]:
    """In place: ``W ← dequantize(quantize_blockwise(W))`` for every Linear not in ``skip``.

    Biases, embeddings and LayerNorms stay in full precision (as in QLoRA, which stores
    only the Linear weights in 4 bits). Returns the names of the matrices changed.
    """
    names = []
    for name, w in linear_weights(model, skip).items():
        w.copy_(dequantize(quantize_blockwise(w.detach(), levels, blocksize, **kw)))
        names.append(name)
    return names


def logit_kl(reference_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-example ``KL(p_ref ‖ p) = Σ_c p_ref,c (log p_ref,c − log p_c)`` in nats (float64)."""
    ref = torch.log_softmax(reference_logits.double(), -1)
    other = torch.log_softmax(logits.double(), -1)
    # F.kl_div(input = log p, target = log p_ref) = p_ref (log p_ref − log p), elementwise
    return F.kl_div(other, ref, reduction="none", log_target=True).sum(-1)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of per-example values and its standard error ``s/√n``."""
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def block_normalised(w: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """``x / max|x_block|`` for each full block of ``w`` (what the 4-bit code sees), flat
    float32; a partial last block is left out."""
    flat = w.detach().float().reshape(-1)
    blocks = flat[: flat.numel() // blocksize * blocksize].view(-1, blocksize)
    return (blocks / blocks.abs().amax(1, keepdim=True).clamp(min=1e-38)).reshape(-1)


def gaussian_block_normalised(n_blocks: int, blocksize: int = 64, seed: int = 0) -> torch.Tensor:
    """The same normalisation applied to i.i.d. N(0, 1) blocks: what NF4 assumes W looks like."""
    g = torch.Generator().manual_seed(seed)
    return block_normalised(torch.randn(n_blocks, blocksize, generator=g), blocksize)


def block_errors(w: torch.Tensor, dequantised: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """Relative error ``‖Ŵ_b − W_b‖ / ‖W_b‖`` of every full block b (float64)."""
    flat_w, flat_d = w.detach().double().reshape(-1), dequantised.detach().double().reshape(-1)
    n = flat_w.numel() // blocksize * blocksize
    bw, bd = flat_w[:n].view(-1, blocksize), flat_d[:n].view(-1, blocksize)
    return (bd - bw).norm(dim=1) / bw.norm(dim=1).clamp(min=1e-30)


def excess_kurtosis(w: torch.Tensor) -> float:
    """Fisher's excess kurtosis ``E[(x−μ)⁴]/σ⁴ − 3``: 0 for a Gaussian, > 0 for heavier tails."""
    return float(stats.kurtosis(w.detach().double().reshape(-1).numpy(), fisher=True))


def kurtosis_se(n: int) -> float:
    """Standard error of the sample excess kurtosis of n Gaussian values, ≈ √(24/n)."""
    return math.sqrt(24.0 / n)
