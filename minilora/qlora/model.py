"""Quantise a whole model's linear layers, and say what it saved (QLoRA §3, §4).

    report = quantize_model(model, quant="nf4", double_quant=True, compute_dtype=torch.bfloat16)
    report.bits_per_parameter      # ≈ 4.127 for NF4 + double quantisation (4 + 8/64 + 32/(64·256))
    apply_lora(model, ("query", "value"), r=8)   # LoRA on top of the 4-bit bases

Every ``nn.Linear`` whose name does not match ``skip`` becomes a ``Linear4bit`` (or a
``Linear8bit`` for ``quant="int8"``). The classifier stays in float by default: it is a new,
randomly initialised head that trains (peft's ``modules_to_save``), as QLoRA keeps its
task heads in 16 bits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..checks import ArgumentTypeError, check_choice
from ..lora.inject import check_targets, name_matches, replace_module
from .layer import COMPUTE_DTYPES, IMPLS, LEVELS, Linear4bit, Linear8bit, QuantizedLinear

QUANTS = tuple(LEVELS)  # "nf4", "fp4", "int4", "int8"


@dataclass(frozen=True)
class MemoryReport:
    """Measured bytes (from the tensors themselves) before and after quantisation.

    ``weight_bytes_*``: the replaced layers' weight matrices only (float before; codes +
    constants after); ``model_bytes_*``: every parameter and buffer of the model (code tables
    excluded); ``bits_per_parameter = 8 · weight_bytes_after / parameters``.
    """

    layers: tuple
    quant: str
    double_quant: bool
    parameters: int
    weight_bytes_before: int
    weight_bytes_after: int
    model_bytes_before: int
    model_bytes_after: int

    @property
    def bits_per_parameter(self) -> float:
        return 8.0 * self.weight_bytes_after / self.parameters

    @property
    def saved_fraction(self) -> float:
        """``1 − after/before`` for the whole model."""
        return 1.0 - self.model_bytes_after / self.model_bytes_before

    def to_dict(self) -> dict:
        return {**asdict(self), "bits_per_parameter": self.bits_per_parameter,
                "saved_fraction": self.saved_fraction}


def model_nbytes(model: nn.Module) -> int:
    """Bytes of every parameter and persistent buffer (the code tables, shared by all layers of a
    data type and not stored per layer in the paper's count, are non-persistent: left out)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for module in model.modules():
        for name, b in module.named_buffers(recurse=False):
            if b is not None and name not in module._non_persistent_buffers_set:
                total += b.numel() * b.element_size()
    return total


def quantized_layers(model: nn.Module) -> dict[str, QuantizedLinear]:
    """``{name: layer}`` of every 4/8-bit layer of ``model`` (LoRA-wrapped ones included)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantizedLinear)}


def quantize_model(model: nn.Module, quant: str = "nf4", double_quant: bool = True, compute_dtype=None,
                   skip=("classifier",), blocksize: int = 64, impl: str = "auto") -> MemoryReport:
    """Replace every ``nn.Linear`` of ``model`` (in place) except those ``skip`` names, by a
    frozen ``Linear4bit`` ("nf4", "fp4", "int4") or ``Linear8bit`` ("int8"); return the
    measured ``MemoryReport``. ``skip`` uses apply_lora's rules (suffixes or one regex; ``()``
    quantises everything). Arguments are all checked before the model is touched."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_choice(quant, "quant", QUANTS)
    if not isinstance(double_quant, bool):
        raise ArgumentTypeError(f"double_quant must be True or False, got {double_quant!r}")
    check_choice(compute_dtype, "compute_dtype", COMPUTE_DTYPES)
    check_choice(impl, "impl", IMPLS)
    skip = () if skip is None else check_targets(skip, "skip")
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and not (skip and name_matches(n, skip))]
    if not found:
        raise ValueError("quantize_model found no nn.Linear to quantise (all skipped, or already quantised)")
    for n, m in found:
        if m.in_features * m.out_features < 1:
            raise ValueError(f"{n} has an empty weight")
        if not bool(torch.isfinite(m.weight).all()):
            raise ValueError(f"{n}.weight has NaN/inf entries: they have no 4-bit code")
    before = model_nbytes(model)
    weight_before = sum(m.weight.numel() * m.weight.element_size() for _, m in found)
    layers, weight_after = [], 0
    for n, m in found:
        if quant == "int8":
            new = Linear8bit(m, double_quant, compute_dtype, blocksize, impl)
        else:
            new = Linear4bit(m, quant, double_quant, compute_dtype, blocksize, impl)
        replace_module(model, n, new)
        weight_after += new.nbytes
        layers.append(n)
    return MemoryReport(tuple(layers), quant, double_quant, sum(m.weight.numel() for _, m in found),
                        weight_before, weight_after, before, model_nbytes(model))
