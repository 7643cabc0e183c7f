"""minilora.quant.fast: the eager kernels and the compiled path give the reference's codes and
values; one compile per shape class, and a clean eager fallback where torch.compile cannot run."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilora.quant import (
    dequantize,
    fast,
    fp4_levels,
    int4_levels,
    nf4_levels,
    normal_float_levels,
    quantize_blockwise,
)
from minilora.quant.fast import padded_midpoints, quantize_eager, quantize_kernel

# torch's inductor imports torch.utils.mkldnn, which warns about torch.jit (not ours)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")

TABLES = {"nf4": nf4_levels(), "fp4": fp4_levels(), "int4": int4_levels(), "nf3": normal_float_levels(3),
          "nf5": normal_float_levels(5)}


# --- the eager kernels ----------------------------------------------------------------------------

def test_eager_quantize_equals_reference():
    torch.manual_seed(2)
    for name in ("nf4", "fp4", "int4", "nf3"):
        for shape, bs in (((300, 77), 64), ((64, 64), 128), ((5,), 32), ((3, 1000), 4096)):
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(shape).to(dtype)
                ref = quantize_blockwise(x, TABLES[name], bs, impl="reference")
                fast_q = quantize_blockwise(x, TABLES[name], bs, impl="eager")
                assert torch.equal(ref.packed, fast_q.packed) and torch.equal(ref.absmax, fast_q.absmax)


def test_eager_dequantize_equals_reference():
    torch.manual_seed(2)
    for name in ("nf4", "fp4", "int4", "nf3"):
        for shape, bs in (((300, 77), 64), ((64, 64), 128), ((5,), 32), ((3, 1000), 4096)):
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.randn(shape).to(dtype)
                ref = quantize_blockwise(x, TABLES[name], bs, impl="reference")
                assert torch.equal(dequantize(ref, impl="reference"), dequantize(ref, impl="eager"))


def test_binary_search_kernel_equals_bucketize_eagerly():
    torch.manual_seed(3)
    for levels in (nf4_levels(), fp4_levels(), int4_levels(), normal_float_levels(2)):
        blocks = torch.randn(50, 64)
        blocks[0, :5] = 0.0
        args = (blocks, *padded_midpoints(levels))
        for a, b in zip(quantize_kernel(*args), quantize_eager(*args)):
            assert torch.equal(a, b)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 700), blocksize=st.sampled_from([32, 64, 128, 256]),
       name=st.sampled_from(sorted(TABLES)),
       scale=st.floats(1e-6, 1e6), seed=st.integers(0, 2**16))
def test_default_path_gives_the_reference_codes(n, blocksize, name, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * scale
    q = quantize_blockwise(x, TABLES[name], blocksize)
    assert torch.equal(q.codes(), quantize_blockwise(x, TABLES[name], blocksize, impl="reference").codes())


# --- the compiled path ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_quantize_equals_reference(dtype):
    torch.manual_seed(0)
    for shape in ((512, 384), (1536, 384), (77, 100)):  # three sizes, one shape class per dtype
        x = torch.randn(shape).to(dtype)
        for levels in (nf4_levels(), fp4_levels()):
            ref = quantize_blockwise(x, levels, 64, impl="reference")
            comp = quantize_blockwise(x, levels, 64, impl="compiled")
            assert torch.equal(ref.packed, comp.packed) and torch.equal(ref.absmax, comp.absmax)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_dequantize_equals_reference(dtype):
    torch.manual_seed(0)
    for shape in ((512, 384), (1536, 384), (77, 100)):  # three sizes, one shape class per dtype
        x = torch.randn(shape).to(dtype)
        for levels in (nf4_levels(), fp4_levels()):
            ref = quantize_blockwise(x, levels, 64, impl="reference")
            assert torch.equal(dequantize(ref, impl="compiled"), dequantize(ref, impl="reference"))


def test_compiled_once_per_shape_class(monkeypatch):
    compiles = []
    real_compile = torch.compile

    def counting_compile(fn, **kw):
        compiles.append(fn.__name__)
        return real_compile(fn, **kw)

    kernel = fast.CompiledKernel(fast.quantize_kernel, fast.quantize_eager)
    monkeypatch.setattr(fast.torch, "compile", counting_compile)
    monkeypatch.setattr(fast, "QUANTIZE", kernel)
    from torch._dynamo.utils import counters

    for rows in (300, 700, 1000):
        quantize_blockwise(torch.randn(rows, 256), nf4_levels(), 64, impl="compiled")
        if rows == 300:
            graphs = counters["stats"]["unique_graphs"]
    key = ("cpu", torch.float32, 64, 4)
    assert compiles == ["quantize_kernel"] and list(kernel.compiled) == [key] and kernel.compiled[key]
    assert counters["stats"]["unique_graphs"] == graphs  # no recompilation for new sizes


def test_falls_back_to_eager_when_compilation_fails(monkeypatch):
    def broken_compile(fn, **kw):
        def run(*args):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return run

    monkeypatch.setattr(fast.torch, "compile", broken_compile)
    monkeypatch.setattr(fast, "QUANTIZE", fast.CompiledKernel(fast.quantize_kernel, fast.quantize_eager))
    dequantize_kernel = fast.CompiledKernel(fast.dequantize_kernel, fast.dequantize_eager)
    monkeypatch.setattr(fast, "DEQUANTIZE", dequantize_kernel)
    x = torch.randn(100, 64)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*No working C\\+\\+ compiler"):
        q = quantize_blockwise(x, nf4_levels(), impl="compiled")
    with pytest.warns(RuntimeWarning, match="dequantize_kernel"):
        y = dequantize(q, impl="compiled")
    ref = quantize_blockwise(x, nf4_levels(), impl="reference")
    assert torch.equal(q.packed, ref.packed) and torch.equal(y, dequantize(ref, impl="reference"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; later calls go straight to eager
        quantize_blockwise(x, nf4_levels(), impl="compiled")
        dequantize(q, impl="compiled")


# --- the tiled byte table and huge-page outputs (used by minilora.qlora.fast) -------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tile_bytes", [1, 100, 1 << 17])  # one block a tile, a partial last tile, one tile
def test_tiled_dequantize_equals_reference(dtype, tile_bytes):
    torch.manual_seed(4)
    for name in ("nf4", "fp4", "int4"):
        x = torch.randn(37, 128)
        q = quantize_blockwise(x, TABLES[name], 64, impl="reference")
        out = torch.full((x.numel() // 64, 64), float("nan"), dtype=dtype)
        table = fast.byte_table(q.levels)
        got = fast.dequantize_tiled(q.packed.view(-1, 32), q.absmax, table, out, tile_bytes)
        assert got is out
        want = dequantize(q, impl="reference").to(dtype)  # float32 product, then one rounding
        assert torch.equal(out.view(37, 128), want)


def test_empty_huge_is_a_plain_empty_tensor_of_that_shape():
    cases = (((3, 5), torch.float32), ((2048, 1024), torch.bfloat16), ((1 << 21,), torch.float32))
    for shape, dtype in cases:
        t = fast.empty_huge(shape, dtype)
        assert t.shape == shape and t.dtype == dtype and t.is_contiguous() and t.device.type == "cpu"
        t.fill_(1.5)  # writable everywhere, huge pages or not
        assert float(t.float().sum()) == 1.5 * t.numel()
