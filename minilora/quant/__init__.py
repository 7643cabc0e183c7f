"""Quantisation from scratch: NormalFloat/FP4/INT4 tables, blockwise absmax coding with two
codes per byte, double quantisation of the constants (QLoRA §2–§3).

Read in this order:
  levels.py     the code tables ("data types"), each derived from its definition (NF4 from
                quantiles of N(0, 1), FP4 from its bit fields, INT4, the dynamic map, FP8)
  codes.py      the readable blockwise absmax coder: absmax → nearest level → two codes a byte
  blockwise.py  QuantizedTensor and the public quantize_blockwise / dequantize
  double.py     double quantisation: the absmax constants in 8 bits
  fast.py       an opt-in accelerator (binary search, byte tables, torch.compile) with the
                same results as codes.py
  analysis.py   measuring it on a real model: weight errors, KL, normality, simulated quantisation

The architecture of the whole library: docs/architecture.md.
"""

from .analysis import (
    block_errors,
    block_normalised,
    double_quant_point,
    error_table,
    excess_kurtosis,
    gaussian_block_normalised,
    kurtosis_se,
    linear_weights,
    logit_kl,
    mean_and_se,
    quant_summary,
    simulate_quantization,
    weight_error,
)
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
    "block_errors", "block_normalised", "double_quant_point", "error_table", "excess_kurtosis",
    "gaussian_block_normalised", "kurtosis_se", "linear_weights", "logit_kl", "mean_and_se", "quant_summary",
    "simulate_quantization", "weight_error",
    "DoubleQuantizedAbsmax", "QuantizedTensor", "bits_per_parameter", "dequantize", "dequantize_absmax",
    "dynamic_map", "fp4_levels", "fp8_e4m3_levels", "int4_levels", "nearest_codes", "nf4_levels",
    "normal_float_levels", "pack_nibbles", "paper_normal_float_levels", "quantize_absmax",
    "quantize_blockwise", "unpack_nibbles",
]
