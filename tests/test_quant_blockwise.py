"""Blockwise quantisation (minilora.quant): invariants, bad input, properties, fast == reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilora.quant import (
    QuantizedTensor,
    bits_per_parameter,
    dequantize,
    fp4_levels,
    int4_levels,
    nearest_codes,
    nf4_levels,
    normal_float_levels,
    pack_nibbles,
    quantize_blockwise,
    unpack_nibbles,
)

TABLES = {"nf4": nf4_levels(), "fp4": fp4_levels(), "int4": int4_levels(), "nf3": normal_float_levels(3),
          "nf5": normal_float_levels(5)}


def max_half_gap(levels):
    s = levels.sort().values
    return float((s[1:] - s[:-1]).max()) / 2


@pytest.mark.parametrize("name", sorted(TABLES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_round_trip_shape_dtype_and_error_bound(name, dtype):
    torch.manual_seed(0)
    x = torch.randn(7, 45).to(dtype)  # 315 values: a partial last block, odd count
    q = quantize_blockwise(x, TABLES[name], blocksize=64)
    y = dequantize(q)
    assert y.shape == x.shape and y.dtype == dtype and q.dtype == dtype and q.shape == x.shape
    blocks = torch.cat([x.float().reshape(-1), torch.zeros(-315 % 64)]).view(-1, 64)
    err = torch.cat([(y.float() - x.float()).reshape(-1), torch.zeros(-315 % 64)]).view(-1, 64)
    bound = blocks.abs().amax(1) * max_half_gap(TABLES[name]) * (1 + 1e-5)
    if dtype != torch.float32:  # plus the final rounding to the 16-bit dtype
        bound = bound + blocks.abs().amax(1) * (2**-7 if dtype == torch.bfloat16 else 2**-10)
    assert torch.all(err.abs().amax(1) <= bound)


def test_nearest_level_ties_go_down():
    levels = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    x = torch.tensor([0.25, 0.75, -0.5, 0.2500001, 1.0, -1.0])
    assert nearest_codes(x, levels).tolist() == [1, 2, 0, 2, 3, 0]


def test_codes_are_nearest_level_brute_force():
    torch.manual_seed(1)
    for levels in TABLES.values():
        x = torch.rand(20000) * 2 - 1
        codes = nearest_codes(x, levels)
        dist = (x[:, None] - levels[None, :]).abs()
        chosen = dist.gather(1, codes[:, None]).squeeze(1)
        assert torch.all(chosen <= dist.min(1).values + 1e-7)


def test_known_codes_and_layout():
    # block of 4 values in a blocksize-64 block: absmax 2 → scaled 1, −1, 0, 0.5
    x = torch.tensor([2.0, -2.0, 0.0, 1.0])
    q = quantize_blockwise(x, nf4_levels())
    codes = [15, 0, 7, int((nf4_levels() - 0.5).abs().argmin())]  # NF4: 1 → 15, −1 → 0, 0 → 7
    assert codes[3] == 12 and q.codes().tolist() == codes  # 0.5 → 0.4407 (nearer than 0.5626)
    assert q.packed.tolist() == [codes[0] << 4 | codes[1], codes[2] << 4 | codes[3]]  # even → high nibble
    assert q.absmax.tolist() == [2.0] and q.blocksize == 64 and q.nibbles


def test_odd_count_pads_with_the_code_of_zero():
    q = quantize_blockwise(torch.tensor([1.0, -1.0, 0.5]), nf4_levels())
    assert q.packed.numel() == 2 and int(q.packed[1]) & 0xF == 7  # NF4 code 7 is 0.0


def test_all_zero_block_gives_zeros_not_nan():
    x = torch.zeros(3, 64)
    x[1] = torch.randn(64)
    for impl in ("reference", "eager"):
        y = dequantize(quantize_blockwise(x, nf4_levels(), impl=impl), impl=impl)
        assert torch.isfinite(y).all() and torch.equal(y[0], torch.zeros(64)) and torch.equal(y[2], y[0])
    tiny = torch.full((64,), 1e-45)  # subnormal absmax: still finite
    assert torch.isfinite(dequantize(quantize_blockwise(tiny, nf4_levels()))).all()


def test_bits_per_parameter_and_bytes():
    x = torch.randn(2048, 1024)
    q = quantize_blockwise(x, nf4_levels())
    assert q.nbytes == x.numel() // 2 + 4 * x.numel() // 64 and bits_per_parameter(q) == 4.5
    dq = quantize_blockwise(x, nf4_levels(), double_quant=True)
    expected = 4 + 8 / 64 + 32 / (64 * 256) + 32 / x.numel()
    assert math.isclose(bits_per_parameter(dq), expected, rel_tol=1e-12)
    nf5 = quantize_blockwise(torch.randn(100), normal_float_levels(5))
    assert not nf5.nibbles and nf5.packed.numel() == 100 and nf5.nbytes == 100 + 4 * 2
    with pytest.raises(TypeError, match="QuantizedTensor"):
        bits_per_parameter(x)


def test_fast_paths_equal_reference():
    torch.manual_seed(2)
    for name in ("nf4", "fp4", "int4", "nf3"):
        for shape, bs in (((300, 77), 64), ((64, 64), 128), ((5,), 32), ((3, 1000), 4096)):
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(shape).to(dtype)
                ref = quantize_blockwise(x, TABLES[name], bs, impl="reference")
                fast = quantize_blockwise(x, TABLES[name], bs, impl="eager")
                assert torch.equal(ref.packed, fast.packed) and torch.equal(ref.absmax, fast.absmax)
                assert torch.equal(dequantize(ref, impl="reference"), dequantize(ref, impl="eager"))


def test_binary_search_kernel_equals_bucketize_eagerly():
    from minilora.quant.fast import padded_midpoints, quantize_eager, quantize_kernel

    torch.manual_seed(3)
    for levels in (nf4_levels(), fp4_levels(), int4_levels(), normal_float_levels(2)):
        blocks = torch.randn(50, 64)
        blocks[0, :5] = 0.0
        args = (blocks, *padded_midpoints(levels))
        for a, b in zip(quantize_kernel(*args), quantize_eager(*args)):
            assert torch.equal(a, b)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 600))
def test_pack_unpack_round_trip_every_size(n):
    codes = torch.randint(0, 16, (n,), dtype=torch.uint8)
    packed = pack_nibbles(codes)
    assert packed.numel() == (n + 1) // 2 and packed.dtype == torch.uint8
    assert torch.equal(unpack_nibbles(packed, n), codes)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 700), blocksize=st.sampled_from([32, 64, 128, 256]),
       name=st.sampled_from(sorted(TABLES)),
       scale=st.floats(1e-6, 1e6), seed=st.integers(0, 2**16))
def test_error_within_half_the_largest_gap(n, blocksize, name, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * scale
    q = quantize_blockwise(x, TABLES[name], blocksize)
    err = torch.cat([dequantize(q) - x, torch.zeros(-n % blocksize)]).view(-1, blocksize).abs().amax(1)
    absmax = torch.cat([x, torch.zeros(-n % blocksize)]).view(-1, blocksize).abs().amax(1)
    assert torch.all(err <= absmax * max_half_gap(TABLES[name]) * (1 + 1e-5))
    assert torch.equal(q.codes(), quantize_blockwise(x, TABLES[name], blocksize, impl="reference").codes())


def test_bad_inputs():
    x = torch.randn(200)
    with pytest.raises(TypeError, match="x must be float32, float16 or bfloat16"):
        quantize_blockwise(torch.arange(10), nf4_levels())
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        quantize_blockwise([1.0, 2.0], nf4_levels())
    with pytest.raises(ValueError, match="at least one element"):
        quantize_blockwise(torch.zeros(0), nf4_levels())
    for bs in (48, 16, 8192, 64.0, True):
        with pytest.raises(ValueError, match=r"blocksize must be an int in \[32, 4096\] and a power of two|blocksize must be a power of two in 32..4096"):
            quantize_blockwise(x, nf4_levels(), blocksize=bs)
    for impl in ("reference", "eager"):
        for bad in (float("nan"), float("inf")):
            y = x.clone()
            y[130] = bad
            with pytest.raises(ValueError, match=r"NaN or Inf in block 2 \(elements 128..191"):
                quantize_blockwise(y, nf4_levels(), impl=impl)
    with pytest.raises(ValueError, match="impl must be one of"):
        quantize_blockwise(x, nf4_levels(), impl="fastest")
    with pytest.raises(ValueError, match="double_levels"):
        quantize_blockwise(x, nf4_levels(), double_quant=True, double_levels="fp16")
    with pytest.raises(TypeError, match="q must be a QuantizedTensor"):
        dequantize(x)


def test_requires_grad_input_and_views_work():
    w = torch.nn.Linear(96, 40).weight  # requires grad
    q = quantize_blockwise(w.t(), nf4_levels())  # non-contiguous view
    assert isinstance(q, QuantizedTensor) and q.shape == (96, 40)
    assert torch.allclose(dequantize(q), w.t().detach(), atol=float(w.detach().abs().max()) * 0.2)


CUDA_REASON = "needs a CUDA device (scripts/gpu_check.py covers CUDA)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)
def test_cuda_in_cuda_out():
    x = torch.randn(1000, 64, device="cuda", dtype=torch.bfloat16)
    q = quantize_blockwise(x, nf4_levels(), double_quant=True)
    assert q.packed.is_cuda and q.absmax.codes.is_cuda and dequantize(q).is_cuda
    ref = quantize_blockwise(x.cpu(), nf4_levels(), double_quant=True)
    assert torch.equal(q.packed.cpu(), ref.packed)
