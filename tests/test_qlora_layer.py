"""minilora.qlora.layer: Linear4bit / Linear8bit against bitsandbytes' Linear4bit (CPU) and
against their own readable path; storage, gradients, argument checks.

The bound used against bitsandbytes (derived, not tuned). Both libraries store the same 4-bit
codes; with double quantisation ≈ 0.2 % of the 8-bit codes of the constants differ by one
level (bitsandbytes' native 8-bit search is not always the nearest level, see
tests/test_quant_vs_bitsandbytes.py), so the two dequantised matrices differ by ΔW, non-zero
only in those blocks. Then for every output element

    |y_ours − y_bnb| ≤ (|x| · |ΔW|ᵀ)  +  ε · (|x| · |W|ᵀ)  +  δ · |y|

the first term exactly what the differing constants can cause, the second the rounding of two
differently ordered sums (probabilistic bound λ·√n·u, Higham & Mary 2019, λ = 4; fp32
u = 2⁻²⁴), plus for bf16 compute bitsandbytes' rounding of every weight to bf16 (u = 2⁻⁸
relative, at most 2⁻⁸·|x|·|W|ᵀ in total), and δ the final rounding of each output to the
compute dtype (both sides: 2·2⁻⁸ for bf16, 0 for fp32).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from minilora.qlora import Linear4bit, Linear8bit
from minilora.quant import dequantize_absmax

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is the reference for these checks")
F = pytest.importorskip("bitsandbytes.functional")

# MiniLM's shapes (d_in, d_out) and odd ones (a row that is not whole blocks, tiny, wide)
SHAPES = [(384, 384), (384, 1536), (1536, 384), (96, 5), (200, 33), (64, 1), (1000, 7)]


def bnb_layer(lin: nn.Linear, quant: str, double_quant: bool, compute_dtype) -> nn.Module:
    layer = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                              compute_dtype=compute_dtype, compress_statistics=double_quant, quant_type=quant)
    layer.load_state_dict(lin.state_dict())
    # on CPUs with AVX512-BF16 its eval-mode no-grad forward repacks the weight for a bf16
    # kernel; keep the documented path (dequantise, matmul in compute_dtype) for equality
    layer.support_avx512bf16_for_cpu = False
    return layer.to("cpu")  # quantises


def bnb_rebuilt_weight(layer) -> torch.Tensor:
    """bitsandbytes' W from its own codes and constants (its native CPU dequantize has a
    CPU-dependent quirk for blocks across rows: tests/test_quant_vs_bitsandbytes.py)."""
    qs = layer.weight.quant_state
    absmax = qs.absmax
    if qs.nested:  # ĉ = code2[c8] · c₁ + offset, bitsandbytes' own decode of its 8-bit constants
        absmax = F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
    p = layer.weight.data.reshape(-1)
    n = qs.shape.numel()
    codes = torch.stack([p >> 4, p & 0xF], 1).reshape(-1)[:n].long()
    return (qs.code[codes] * absmax.repeat_interleave(qs.blocksize)[:n]).reshape(qs.shape)


def bound(x, w_ours, w_theirs, y, compute_dtype) -> torch.Tensor:
    """The module docstring's bound, element by element."""
    x, n = x.float().abs(), x.shape[-1]
    spread = x @ w_ours.abs().T
    rounding = 4 * math.sqrt(n) * 2.0**-24
    final = 0.0
    if compute_dtype == torch.bfloat16:
        rounding += 2.0**-8
        final = 2 * 2.0**-8
    return x @ (w_ours - w_theirs).abs().T + rounding * spread + final * y.float().abs() + 1e-30


@pytest.mark.parametrize("compute_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("quant", ["nf4", "fp4"])
def test_output_equals_bitsandbytes_linear4bit_within_the_bound(quant, compute_dtype):
    torch.manual_seed(0)
    compared = []
    for d_in, d_out in SHAPES:
        lin = nn.Linear(d_in, d_out)
        ours = Linear4bit(lin, quant, double_quant=True, compute_dtype=compute_dtype)
        theirs = bnb_layer(lin, quant, True, compute_dtype)
        w_theirs = bnb_rebuilt_weight(theirs)
        if not torch.equal(F.dequantize_4bit(theirs.weight.data, theirs.weight.quant_state), w_theirs):
            continue  # bitsandbytes' native CPU dequantize quirk on this CPU: no valid reference here
        x = torch.randn(3, 5, d_in)
        y_ours, y_theirs = ours(x), theirs(x)
        assert y_ours.dtype == y_theirs.dtype == torch.float32 and y_ours.shape == y_theirs.shape
        allowed = bound(x, ours.dequantized_weight(), w_theirs, y_theirs, compute_dtype)
        assert torch.all((y_ours - y_theirs).abs() <= allowed), (d_in, d_out)
        compared.append((d_in, d_out))
    assert set(SHAPES[:3]) <= set(compared) and len(compared) >= 5, compared  # MiniLM's and most odd ones


def test_the_bound_is_not_loose_where_constants_agree():
    """Without double quantisation the constants agree exactly, so only rounding remains: the
    outputs agree to ~1e-6 relative (the bound's first term is 0)."""
    torch.manual_seed(1)
    lin = nn.Linear(384, 1536)
    ours, theirs = Linear4bit(lin, double_quant=False), bnb_layer(lin, "nf4", False, torch.float32)
    assert torch.equal(ours.dequantized_weight(), bnb_rebuilt_weight(theirs))
    x = torch.randn(8, 384)
    with torch.no_grad():
        y_ours, y_theirs = ours(x), theirs(x)
    assert float((y_ours - y_theirs).abs().max() / y_theirs.abs().max()) < 1e-5, "rounding only"


def test_same_codes_and_constants_as_bitsandbytes():
    torch.manual_seed(2)
    lin = nn.Linear(384, 1536)
    ours, theirs = Linear4bit(lin), bnb_layer(lin, "nf4", True, torch.float32)
    assert torch.equal(ours.packed, theirs.weight.data.reshape(-1))
    qs = theirs.weight.quant_state
    # the mean of the constants is summed in float64 here (no overflow), in float32 there: the
    # offset and so the second-level scales may differ in the last bit
    assert torch.allclose(ours.absmax_offset, qs.offset, rtol=1e-6, atol=0)
    assert torch.allclose(ours.absmax_scale, qs.state2.absmax, rtol=1e-5, atol=0)
    agree = (ours.absmax_codes == qs.absmax).float().mean()
    assert agree > 0.99  # the ≈ 0.2 % of 8-bit codes that differ (module docstring)


def test_stores_codes_and_constants_only_never_the_float_weight():
    lin = nn.Linear(384, 1536)
    layer = Linear4bit(lin)
    stored = dict(layer.state_dict())
    assert not any(t.is_floating_point() and t.numel() >= 384 * 1536 for t in stored.values())
    assert stored["packed"].dtype == torch.uint8 and stored["packed"].numel() == 384 * 1536 // 2
    assert abs(layer.bits_per_parameter() - (4 + 8 / 64 + 32 / (64 * 256))) < 1e-3
    assert Linear4bit(lin, double_quant=False).bits_per_parameter() == 4.5
    assert Linear8bit(lin).bits_per_parameter() == 8.5


@pytest.mark.parametrize("quant", ["nf4", "fp4", "int4"])
def test_dequantised_weight_decodes_the_stored_codes(quant):
    lin = nn.Linear(128, 64)
    layer = Linear4bit(lin, quant)
    q = layer.quantized()
    absmax = dequantize_absmax(q.absmax).repeat_interleave(64)
    codes = q.codes().long()
    assert torch.equal(layer.dequantized_weight().reshape(-1), q.levels[codes] * absmax)
    err = (layer.dequantized_weight() - lin.weight).abs().max()
    half_gap = q.levels.sort().values.diff().max() / 2  # the widest half-step of the table
    assert err <= half_gap * lin.weight.abs().max() * 1.01  # (+1 %: the 8-bit constants)


@pytest.mark.parametrize("compute_dtype", [None, torch.float32, torch.bfloat16])
def test_readable_forward_is_x_times_dequantised_weight(compute_dtype):
    torch.manual_seed(3)
    lin = nn.Linear(200, 48)
    layer = Linear4bit(lin, compute_dtype=compute_dtype, impl="readable")
    x = torch.randn(4, 200)
    dtype = compute_dtype or x.dtype
    want = nn.functional.linear(x.to(dtype), layer.dequantized_weight(dtype), lin.bias.to(dtype)).float()
    got = layer(x)
    assert got.dtype == torch.float32  # the input's dtype, as bitsandbytes
    assert torch.equal(got, want)


def test_backward_reaches_the_input_only_and_equals_the_readable_gradient():
    torch.manual_seed(4)
    lin = nn.Linear(256, 96)
    for impl in ("readable", "auto"):
        layer = Linear4bit(lin, impl=impl)
        x = torch.randn(2, 40, 256, requires_grad=True)
        g = torch.randn(2, 40, 96)
        (layer(x) * g).sum().backward()
        assert torch.allclose(x.grad, g @ layer.dequantized_weight(), rtol=1e-5, atol=1e-5)
        assert all(not p.requires_grad for p in layer.parameters())


def test_backward_saves_no_weight_sized_tensor():
    """Nothing of the weight's size is kept for backward: W is recomputed there."""
    lin = nn.Linear(512, 512)
    layer = Linear4bit(lin, impl="readable")
    x = torch.randn(2, 512, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        layer(x).sum().backward()
    assert all(n < 512 * 512 for n in saved)


def test_bias_gradient_when_the_bias_is_unfrozen():
    lin = nn.Linear(64, 8)
    layer = Linear4bit(lin)
    layer.bias.requires_grad_(True)
    x = torch.randn(5, 64)
    layer(x).sum().backward()
    assert torch.allclose(layer.bias.grad, torch.full((8,), 5.0))


def test_linear8bit_is_closer_to_the_float_layer_than_nf4():
    torch.manual_seed(5)
    lin = nn.Linear(384, 384)
    x = torch.randn(16, 384)
    ref = lin(x)
    e8 = (Linear8bit(lin)(x) - ref).abs().mean()
    e4 = (Linear4bit(lin)(x) - ref).abs().mean()
    assert e8 < e4 / 5


@pytest.mark.parametrize("kwargs, error", [
    (dict(quant="nf8"), ValueError), (dict(quant="int8"), ValueError), (dict(double_quant=1), TypeError),
    (dict(compute_dtype=torch.int8), ValueError), (dict(blocksize=48), ValueError),
    (dict(blocksize=16), ValueError), (dict(impl="gpu"), ValueError)])
def test_bad_arguments_are_refused_naming_the_parameter(kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        Linear4bit(nn.Linear(64, 8), **kwargs)


def test_bad_base_and_input_are_refused():
    with pytest.raises(TypeError, match="base"):
        Linear4bit(nn.Conv1d(4, 4, 1))
    lin = nn.Linear(64, 8)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Linear4bit(lin)
    layer = Linear4bit(nn.Linear(64, 8))
    with pytest.raises(ValueError, match="64 features"):
        layer(torch.randn(2, 63))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(2, 64, dtype=torch.long))
