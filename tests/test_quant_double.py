"""minilora.quant.double: double quantisation of the absmax constants (QLoRA §3)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilora.quant import (
    DoubleQuantizedAbsmax,
    bits_per_parameter,
    dequantize,
    dequantize_absmax,
    dynamic_map,
    fp8_e4m3_levels,
    nf4_levels,
    quantize_absmax,
    quantize_blockwise,
)


@pytest.fixture
def absmax():
    return torch.rand(1000) + 0.5


def test_constants_are_stored_as_one_byte_codes(absmax):
    d = quantize_absmax(absmax)
    assert isinstance(d, DoubleQuantizedAbsmax) and d.codes.dtype == torch.uint8 and d.codes.numel() == 1000


def test_one_float32_scale_per_256_constants_and_one_offset(absmax):
    d = quantize_absmax(absmax)
    assert d.scale.numel() == 4 and d.blocksize == 256 and d.offset.dim() == 0


def test_offset_is_the_mean_and_levels_the_dynamic_map(absmax):
    d = quantize_absmax(absmax)
    assert torch.isclose(d.offset, absmax.mean()) and torch.equal(d.levels, dynamic_map())


def test_nbytes_counts_codes_scales_and_offset(absmax):
    assert quantize_absmax(absmax).nbytes == 1000 + 4 * 4 + 4


@pytest.mark.parametrize("levels", ["dynamic", "fp8_e4m3"])
def test_reconstruction_error_is_small(levels):
    torch.manual_seed(0)
    w = torch.randn(512, 512) * 0.05
    absmax = quantize_blockwise(w, nf4_levels()).absmax
    back = dequantize_absmax(quantize_absmax(absmax, levels))
    rel = (back - absmax).abs() / absmax
    assert float(rel.max()) < 0.05 and float(rel.mean()) < 0.01


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2000), blocksize=st.sampled_from([64, 256, 1024]), seed=st.integers(0, 999),
       levels=st.sampled_from(["dynamic", "fp8_e4m3"]))
def test_error_within_half_the_largest_gap(n, blocksize, seed, levels):
    g = torch.Generator().manual_seed(seed)
    absmax = torch.rand(n, generator=g) * 3
    d = quantize_absmax(absmax, levels, blocksize)
    table = d.levels.sort().values
    half_gap = float((table[1:] - table[:-1]).max()) / 2
    centred = torch.cat([absmax - d.offset, torch.zeros(-n % blocksize)]).view(-1, blocksize)
    err = torch.cat([dequantize_absmax(d) - absmax, torch.zeros(-n % blocksize)]).view(-1, blocksize)
    assert torch.all(err.abs().amax(1) <= centred.abs().amax(1) * half_gap * (1 + 1e-5) + 1e-6)


# --- in quantize_blockwise --------------------------------------------------------------------------

@pytest.fixture
def single_and_double():
    torch.manual_seed(1)
    x = torch.randn(300, 200)
    return x, quantize_blockwise(x, nf4_levels()), quantize_blockwise(x, nf4_levels(), double_quant=True)


def test_double_quant_keeps_the_4bit_codes(single_and_double):
    _, single, double = single_and_double
    assert torch.equal(single.packed, double.packed) and double.double_quant and not single.double_quant


def test_double_quant_constants_stay_within_2_percent(single_and_double):
    _, single, double = single_and_double
    assert torch.allclose(double.absmax_float(), single.absmax, rtol=0.02)


def test_double_quant_raises_the_error_by_under_5_percent(single_and_double):
    x, single, double = single_and_double
    err_single = (dequantize(single) - x).pow(2).mean()
    err_double = (dequantize(double) - x).pow(2).mean()
    assert err_single <= err_double < err_single * 1.05


def test_double_quant_saves_bits(single_and_double):
    _, single, double = single_and_double
    assert bits_per_parameter(double) < bits_per_parameter(single)


def test_double_levels_fp8_uses_the_fp8_table(single_and_double):
    x, _, _ = single_and_double
    fp8 = quantize_blockwise(x, nf4_levels(), double_quant=True, double_levels="fp8_e4m3")
    assert torch.equal(fp8.absmax.levels, fp8_e4m3_levels())


# --- bad input -----------------------------------------------------------------------------------

def test_quantize_absmax_rejects_a_2d_tensor():
    with pytest.raises(TypeError, match="absmax must be a 1-D floating tensor"):
        quantize_absmax(torch.ones(2, 2))


def test_quantize_absmax_rejects_an_empty_tensor():
    with pytest.raises(ValueError, match="at least one"):
        quantize_absmax(torch.ones(0))


def test_quantize_absmax_rejects_a_blocksize_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="double_blocksize must be a power of two"):
        quantize_absmax(torch.ones(10), blocksize=100)


def test_quantize_absmax_rejects_unknown_levels():
    with pytest.raises(ValueError, match="double_levels must be one of"):
        quantize_absmax(torch.ones(10), levels="e5m2")
