"""minilora.qlora.fast: the fused few-token kernel and the tile path give the readable path's
numbers (float tolerance: only the summation order differs), and a failed compile falls back."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from minilora.qlora import FUSED_MAX_TOKENS, Linear4bit, dequantize_into, fast

SHAPES = [(384, 1536), (1536, 384), (256, 300), (64, 1)]


def rel_err(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("quant", ["nf4", "fp4", "int4"])
@pytest.mark.parametrize("tokens", [1, 5, FUSED_MAX_TOKENS, FUSED_MAX_TOKENS + 1, 300])
def test_fast_forward_equals_the_readable_path(quant, tokens):
    torch.manual_seed(tokens)
    for d_in, d_out in SHAPES:
        lin = nn.Linear(d_in, d_out)
        fast_layer, readable = Linear4bit(lin, quant), Linear4bit(lin, quant, impl="readable")
        assert fast.supported(fast_layer)
        x = torch.randn(tokens, d_in)
        with torch.no_grad():
            assert rel_err(fast_layer(x), readable(x)) < 1e-5, (d_in, d_out)


def test_fast_forward_in_bf16_is_within_bf16_rounding_of_the_readable_path():
    torch.manual_seed(0)
    lin = nn.Linear(384, 1536)
    fast_layer = Linear4bit(lin, compute_dtype=torch.bfloat16)
    readable = Linear4bit(lin, compute_dtype=torch.bfloat16, impl="readable")
    for tokens in (3, 40):
        x = torch.randn(tokens, 384, dtype=torch.bfloat16)
        with torch.no_grad():
            got, want = fast_layer(x), readable(x)
        assert got.dtype == want.dtype == torch.bfloat16
        exact = x.float() @ readable.dequantized_weight().T + lin.bias.detach()
        # fast: fp32 sums, the bias and the output rounded to bf16 (≤ 2⁻⁸ of the largest value
        # each); readable: bf16 weights and output too
        assert rel_err(got, exact) <= 2 * 2.0**-8
        assert rel_err(got, want) <= 4 * 2.0**-8


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_and_matmul_path_gives_the_readable_numbers_exactly(dtype):
    # many tokens: W decoded into the shared scratch, then the same F.linear
    torch.manual_seed(2)
    lin = nn.Linear(256, 192)
    fast_layer = Linear4bit(lin, compute_dtype=dtype)
    readable = Linear4bit(lin, compute_dtype=dtype, impl="readable")
    for tokens in (FUSED_MAX_TOKENS + 1, 64):
        x = torch.randn(2, tokens, 256, dtype=dtype)
        with torch.no_grad():
            assert torch.equal(fast_layer(x), readable(x)), tokens
    other = Linear4bit(nn.Linear(256, 64), compute_dtype=dtype)  # shares the scratch buffer
    with torch.no_grad():
        other(x)
        assert torch.equal(fast_layer(x), readable(x))  # decoded again, not stale


def test_fast_backward_equals_the_readable_gradient():
    torch.manual_seed(1)
    lin = nn.Linear(384, 1536)
    for tokens in (2, 50):
        grads = []
        for impl in ("auto", "readable"):
            x = torch.randn(tokens, 384, generator=torch.Generator().manual_seed(tokens), requires_grad=True)
            g = torch.randn(tokens, 1536, generator=torch.Generator().manual_seed(7))
            (Linear4bit(lin, impl=impl)(x) * g).sum().backward()
            grads.append(x.grad)
        assert rel_err(*grads) < 1e-5
        assert torch.equal(*grads)  # backward: W decoded the same way, then the same matmul


def test_rows_that_are_not_whole_blocks_use_the_readable_path():
    assert not fast.supported(Linear4bit(nn.Linear(100, 8)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dequantize_into_a_caller_buffer_equals_dequantized_weight(dtype):
    lin = nn.Linear(256, 512)
    layer = Linear4bit(lin)
    out = torch.empty(512, 256, dtype=dtype)
    assert dequantize_into(layer, out=out) is out
    assert torch.equal(out, layer.dequantized_weight(dtype))
    assert torch.equal(dequantize_into(layer, dtype), layer.dequantized_weight(dtype))
    with pytest.raises(ValueError, match="out"):
        dequantize_into(layer, out=torch.empty(512, 255))
    with pytest.raises(ValueError, match="out"):
        dequantize_into(layer, out=torch.empty(512, 256, dtype=torch.int32))
    with pytest.raises(TypeError, match="dtype"):
        dequantize_into(layer, torch.int8)


def test_a_failing_compile_warns_once_and_falls_back_to_the_same_numbers(monkeypatch):
    lin = nn.Linear(128, 64)
    layer = Linear4bit(lin)
    x = torch.randn(3, 128)
    with torch.no_grad():
        want = Linear4bit(lin, impl="readable")(x)

    def broken(fn, key=(), fuse=False):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(fast, "_compiled", broken)
    monkeypatch.setattr(fast, "STATE", {"compile_ok": True, "warned": False})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            got = [layer(x), layer(x)]
    assert all(torch.equal(g, want) for g in got)
    mine = [w for w in caught if "fast path unavailable" in str(w.message)]
    assert len(mine) == 1 and "no C++ compiler" in str(mine[0].message)
    assert not fast.STATE["compile_ok"]  # from then on decode + matmul directly (no compilation)
