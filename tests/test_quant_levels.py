"""minilora.quant.levels: the code tables, derived from their definitions and equal to the references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from minilora.quant import (
    dynamic_map,
    fp4_levels,
    fp8_e4m3_levels,
    int4_levels,
    nf4_levels,
    normal_float_levels,
    paper_normal_float_levels,
)
from minilora.quant.levels import NF4_OFFSET, as_levels

# bitsandbytes 0.50.2 functional.get_4bit_type("nf4"), as printed there
NF4_BNB = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
           -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
           0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
           0.7229568362236023, 1.0]


def test_nf4_equals_the_shipped_table_value_for_value():
    assert torch.equal(nf4_levels(), torch.tensor(NF4_BNB, dtype=torch.float32))


def test_nf4_equals_bitsandbytes_4bit_table():
    F = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is the reference")
    assert torch.equal(nf4_levels(), F.get_4bit_type("nf4", device="cpu"))


def test_nf4_equals_the_ends_of_bitsandbytes_normal_map():
    F = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is the reference")
    full = F.create_normal_map()  # 256 entries: 7 negatives, 241 zeros, 8 positives
    assert torch.equal(nf4_levels(), torch.cat([full[:8], full[-8:]]))


def test_float64_grid_moves_ten_nf4_levels_by_a_few_ulps():
    f32, f64 = nf4_levels(), normal_float_levels(4, grid_dtype=torch.float64)
    ulps = (f64.view(torch.int32) - f32.view(torch.int32)).abs()
    assert int((ulps > 0).sum()) == 10 and 1 <= int(ulps.max()) <= 8
    assert float((f64 - f32).abs().max()) < 2e-7


@pytest.mark.parametrize("bits", range(2, 9))
def test_normal_float_has_2_to_the_bits_float32_levels(bits):
    levels = normal_float_levels(bits)
    assert levels.numel() == 2**bits and levels.dtype == torch.float32


@pytest.mark.parametrize("bits", range(2, 9))
def test_normal_float_levels_are_sorted_and_distinct(bits):
    levels = normal_float_levels(bits)
    assert torch.all(levels[1:] > levels[:-1])  # sorted, distinct


@pytest.mark.parametrize("bits", range(2, 9))
def test_normal_float_spans_minus_one_to_one_with_an_exact_zero(bits):
    levels = normal_float_levels(bits)
    assert levels[0] == -1 and levels[-1] == 1 and int((levels == 0).sum()) == 1


@pytest.mark.parametrize("bits", range(2, 9))
def test_normal_float_has_one_more_positive_level_than_negative(bits):
    levels = normal_float_levels(bits)
    assert int((levels > 0).sum()) == 2 ** (bits - 1)  # one more positive than negative


def test_normal_float_levels_are_normal_quantiles():
    levels = normal_float_levels(4).double().numpy()
    scale = norm.ppf(NF4_OFFSET)
    pos = norm.ppf(np.linspace(NF4_OFFSET, 0.5, 9)[:-1]) / scale
    assert np.allclose(np.sort(levels[levels > 0]), np.sort(pos), atol=1e-6)


def test_offset_is_the_average_of_the_two_half_step_quantiles():
    assert abs(NF4_OFFSET - (1 - 0.5 * (1 / 32 + 1 / 30))) < 1e-7


def test_paper_formula_is_symmetric_without_zero():
    levels = paper_normal_float_levels(4)
    assert levels.numel() == 16 and torch.allclose(levels, -levels.flip(0))
    assert not bool((levels == 0).any()) and levels[-1] == 1


def test_fp4_is_bitsandbytes_table_in_code_order():
    expected = torch.tensor([0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3]) / 12
    assert torch.equal(fp4_levels(), expected)


def test_fp4_code_8_is_negative_zero():
    assert torch.signbit(fp4_levels()[8])  # code 8 is −0


def test_fp4_equals_bitsandbytes_table():
    F = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is the reference")
    assert torch.equal(fp4_levels(), F.get_4bit_type("fp4", device="cpu"))


def test_int4_is_15_symmetric_levels_around_zero():
    levels = int4_levels()
    assert levels.numel() == 15 and torch.equal(levels, -levels.flip(0)) and levels[7] == 0


def test_int4_levels_are_evenly_spaced():
    levels = int4_levels()
    assert torch.allclose(levels[1:] - levels[:-1], torch.full((14,), 1 / 7))


@pytest.mark.parametrize("kwargs, args", [({}, ()), (dict(max_exponent_bits=4), (True, 4, 8)),
                                          (dict(signed=False), (False,))], ids=["default", "e4", "unsigned"])
def test_dynamic_map_equals_bitsandbytes(kwargs, args):
    F = pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is the reference")
    assert torch.equal(dynamic_map(**kwargs), F.create_dynamic_map(*args))


def test_dynamic_map_is_256_sorted_levels_up_to_one():
    m = dynamic_map()
    assert m.numel() == 256 and torch.all(m[1:] >= m[:-1]) and m[-1] == 1 and m.abs().max() == 1


def test_dynamic_map_rejects_8_exponent_bits():
    with pytest.raises(ValueError, match="max_exponent_bits"):
        dynamic_map(max_exponent_bits=8)


def test_fp8_e4m3_equals_torch_float8():
    every = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    expected = every[torch.isfinite(every)].sort().values / 448
    assert torch.equal(fp8_e4m3_levels(), expected) and fp8_e4m3_levels().numel() == 254


@pytest.mark.parametrize("bits", [1, 9, 4.0, True, "4"])
def test_normal_float_levels_rejects_bits_outside_2_to_8(bits):
    with pytest.raises(ValueError, match=r"bits must be an int in \[2, 8\]"):
        normal_float_levels(bits)


@pytest.mark.parametrize("offset", [0.5, 1.0, 1.2, "x"])
def test_normal_float_levels_rejects_an_offset_outside_half_to_one(offset):
    with pytest.raises(ValueError, match="offset"):
        normal_float_levels(4, offset)


def test_as_levels_accepts_a_list():
    assert torch.equal(as_levels([-1.0, 0.0, 1.0]), torch.tensor([-1.0, 0.0, 1.0]))


@pytest.mark.parametrize("levels, err, match", [
    (torch.tensor([-0.5, 0.5]), ValueError, "max \\|level\\| = 1"),
    (torch.ones(1), ValueError, "2..256"),
    (torch.tensor([-1.0, float("nan"), 1.0]), ValueError, "finite"),
    (torch.tensor([-1, 0, 1]), TypeError, "floating"),
    ("nf4", TypeError, "levels must be"),
], ids=["not-scaled-to-one", "one-level", "nan", "integer", "a-name"])
def test_as_levels_rejects_a_bad_table(levels, err, match):
    with pytest.raises(err, match=match):
        as_levels(levels)
