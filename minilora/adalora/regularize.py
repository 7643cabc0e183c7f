"""Keep P and Q near-orthogonal, so that P Λ Q stays an SVD (AdaLoRA §3.1, eq. 4).

    R(P, Q) = ‖PᵀP − I‖_F + ‖QQᵀ − I‖_F

added to the loss with a weight γ (peft's default 0.5, the AdaLoRA code 0.1). Without it
nothing stops P and Q drifting into non-orthogonal bases, and then zeroing one λ_i does not
remove one direction of ΔW cleanly. The norms are not squared (the AdaLoRA code and peft;
the paper's eq. 4 squares them), and the sum is divided by the number of matrices (2 per
layer), as peft's ``AdaLoraModel.forward`` does.
"""

from __future__ import annotations

import torch
from torch import nn

from .layer import svd_layers


def orthogonality_gap(matrix: torch.Tensor, rows: bool) -> torch.Tensor:
    """‖Q Qᵀ − I‖_F for ``rows=True`` (Q = lora_A, r × d_in) or ‖PᵀP − I‖_F (P = lora_B, d_out × r)."""
    gram = matrix @ matrix.T if rows else matrix.T @ matrix
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.matrix_norm(gram - eye, ord="fro")


def orthogonal_regularization(model: nn.Module) -> torch.Tensor:
    """Σ over SVDLinear layers of (‖PᵀP − I‖_F + ‖QQᵀ − I‖_F), divided by the number of matrices
    (peft's orthogonal term; multiply by the weight γ and add to the loss). Differentiable."""
    layers = svd_layers(model)
    if not layers:
        raise ValueError("model has no SVDLinear layer: call apply_adalora(model, ...) first")
    total = 0.0
    for layer in layers.values():
        # ‖QQᵀ − I‖_F + ‖PᵀP − I‖_F
        total = (
            total + orthogonality_gap(layer.lora_A, rows=True) + orthogonality_gap(layer.lora_B, rows=False)
        )
    return total / (2 * len(layers))
