"""Measuring quantisation on a real model: weight errors, normality, simulated quantisation.

Used by notebooks 04 and 05. "Simulated" quantisation quantises each Linear weight and
writes the dequantised values back (W ← dequantize(quantize(W))): the network computes
exactly what a 4-bit layer would, without a 4-bit layer (that is ``qlora.py``'s job).
"""

from __future__ import annotations

import math

import torch
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
    """Per-example ``KL(p_ref ‖ p) = Σ_c p_ref,c (log p_ref,c − log p_c)`` in nats."""
    ref = torch.log_softmax(reference_logits.double(), -1)
    other = torch.log_softmax(logits.double(), -1)
    return (ref.exp() * (ref - other)).sum(-1)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean of per-example values and its standard error ``s/√n``."""
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def block_normalised(w: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """``x / max|x_block|`` for each full block of ``w`` (what the 4-bit code sees), flat."""
    flat = w.detach().float().reshape(-1)
    blocks = flat[: flat.numel() // blocksize * blocksize].view(-1, blocksize)
    return (blocks / blocks.abs().amax(1, keepdim=True).clamp(min=1e-38)).reshape(-1)


def gaussian_block_normalised(n_blocks: int, blocksize: int = 64, seed: int = 0) -> torch.Tensor:
    """The same normalisation applied to i.i.d. N(0, 1) blocks: what NF4 assumes W looks like."""
    g = torch.Generator().manual_seed(seed)
    return block_normalised(torch.randn(n_blocks, blocksize, generator=g), blocksize)


def excess_kurtosis(w: torch.Tensor) -> float:
    """Fisher's excess kurtosis ``E[(x−μ)⁴]/σ⁴ − 3``: 0 for a Gaussian, > 0 for heavier tails."""
    return float(stats.kurtosis(w.detach().double().reshape(-1).numpy(), fisher=True))


def kurtosis_se(n: int) -> float:
    """Standard error of the sample excess kurtosis of n Gaussian values, ≈ √(24/n)."""
    return math.sqrt(24.0 / n)
