"""The adapter layers LoRA is compared with (Houlsby et al. 2019): a small bottleneck MLP
inserted in the forward pass, which — unlike a merged LoRA update — cannot be folded into
the weights, so it adds work at inference (LoRA §3, "adapter layers introduce inference
latency").

    names = apply_bottleneck(model, size=64)     # after the attention output and the FFN output
    mark_only_bottleneck_trainable(model)

Each adapted projection ``y = W x + b`` becomes

    y' = y + W_up · gelu(W_down · y + b_down) + b_up,    W_down: m × d, W_up: d × m

(Houlsby §2.1: after each of the two sublayers of a transformer block, before the residual
sum and layer norm). ``W_up`` starts at zero, so the adapted model starts equal to the
pretrained one. 2·m·d + m + d trained numbers per adapter.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_int
from .inject import check_shared, match_modules, replace_module

HOULSBY_TARGETS = ("attention.output.dense", "output.dense")  # BERT: after attention, after the FFN


class BottleneckAdapter(nn.Module):
    """A projection (``base_layer``, frozen by ``mark_only_bottleneck_trainable``) followed by a
    residual bottleneck: ``y + up(gelu(down(y)))`` with ``y = base_layer(x)``."""

    def __init__(self, base_layer: nn.Linear, size: int = 64):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"base_layer must be a torch.nn.Linear, got {type(base_layer).__name__}")
        d = base_layer.out_features
        self.size = check_int(size, "size", 1, d)
        w = base_layer.weight
        self.base_layer = base_layer
        self.adapter_down = nn.Linear(d, size, device=w.device, dtype=w.dtype)   # W_down: m × d
        self.adapter_up = nn.Linear(size, d, device=w.device, dtype=w.dtype)     # W_up: d × m
        nn.init.zeros_(self.adapter_up.weight)                                   # starts as the identity map
        nn.init.zeros_(self.adapter_up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        return y + self.adapter_up(nn.functional.gelu(self.adapter_down(y)))   # y + W_up gelu(W_down y)

    def extra_repr(self) -> str:
        return f"d={self.base_layer.out_features}, size={self.size}"


def bottleneck_layers(model: nn.Module) -> dict[str, BottleneckAdapter]:
    """``{module name: BottleneckAdapter}`` for every adapted projection of ``model``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, BottleneckAdapter)}


def apply_bottleneck(model: nn.Module, size: int = 64, targets=HOULSBY_TARGETS,
                     seed: int | None = None) -> list[str]:
    """Wrap every ``nn.Linear`` whose name matches ``targets`` in a ``BottleneckAdapter`` of
    width ``size``; returns the wrapped names. The default targets are Houlsby's two places
    per BERT block (the attention output projection and the FFN output projection).
    With ``seed`` the down-projections are drawn under ``torch.manual_seed(seed)``."""
    found = match_modules(model, targets, outermost=True)
    if seed is not None:
        check_int(seed, "seed", 0, 2**63 - 1)
    check_shared(model, found)
    for n, m in found:
        if not isinstance(m, nn.Linear):
            raise TypeError(f"targets={targets!r} matched {n}, a {type(m).__name__}; "
                            "a bottleneck adapter follows a torch.nn.Linear")
        check_int(size, "size", 1, m.out_features)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for n, m in found:
            replace_module(model, n, BottleneckAdapter(m, size))
    return [n for n, _ in found]


def mark_only_bottleneck_trainable(model: nn.Module, extra=("classifier",)) -> int:
    """Freeze everything but the adapters' down/up projections and the modules ``extra``
    names (the task head); returns the number of trainable parameters."""
    layers = bottleneck_layers(model)
    if not layers:
        raise ValueError("model has no BottleneckAdapter: call apply_bottleneck(model, ...) first")
    extra_modules = [n for n, _ in match_modules(model, extra, "extra")] if extra else []
    for p in model.parameters():
        p.requires_grad = False
    for layer in layers.values():
        for p in (*layer.adapter_down.parameters(), *layer.adapter_up.parameters()):
            p.requires_grad = True
    for n in extra_modules:
        for p in model.get_submodule(n).parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
