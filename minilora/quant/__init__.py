"""Quantisation from scratch: NormalFloat/FP4/INT4 tables, blockwise absmax coding with two
codes per byte, double quantisation of the constants (QLoRA §2–§3).

One concept per file: ``levels`` (code tables), ``codes`` (the readable reference coder),
``fast`` (fused/compiled kernels with the same results), ``double`` (8-bit constants),
``blockwise`` (QuantizedTensor and the public quantise/dequantise).
"""

from .blockwise import QuantizedTensor, bits_per_parameter, dequantize, quantize_blockwise
from .codes import nearest_codes, pack_nibbles, unpack_nibbles
from .double import DoubleQuantizedAbsmax, dequantize_absmax, quantize_absmax
from .levels import (
    dynamic_map,
    fp4_levels,
    fp8_e4m3_levels,
    int4_levels,
    nf4_levels,
    normal_float_levels,
    paper_normal_float_levels,
)

__all__ = [
    "DoubleQuantizedAbsmax", "QuantizedTensor", "bits_per_parameter", "dequantize", "dequantize_absmax",
    "dynamic_map", "fp4_levels", "fp8_e4m3_levels", "int4_levels", "nearest_codes", "nf4_levels",
    "normal_float_levels", "pack_nibbles", "paper_normal_float_levels", "quantize_absmax",
    "quantize_blockwise", "unpack_nibbles",
]
