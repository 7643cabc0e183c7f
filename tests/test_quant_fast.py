"""The compiled path (minilora.quant.fast): identical codes and values, one compile per shape
class, and a clean eager fallback where torch.compile cannot run."""

from __future__ import annotations

import warnings

import pytest
import torch

from minilora.quant import dequantize, fast, fp4_levels, nf4_levels, quantize_blockwise

# torch's inductor imports torch.utils.mkldnn, which warns about torch.jit (not ours)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_equals_reference(dtype):
    torch.manual_seed(0)
    for shape in ((512, 384), (1536, 384), (77, 100)):  # three sizes, one shape class per dtype
        x = torch.randn(shape).to(dtype)
        for levels in (nf4_levels(), fp4_levels()):
            ref = quantize_blockwise(x, levels, 64, impl="reference")
            comp = quantize_blockwise(x, levels, 64, impl="compiled")
            assert torch.equal(ref.packed, comp.packed) and torch.equal(ref.absmax, comp.absmax)
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


def test_auto_compiles_only_large_cpu_tensors():
    from minilora.quant.blockwise import _path

    cpu, big, small = torch.device("cpu"), fast.COMPILE_MIN_NUMEL, fast.COMPILE_MIN_NUMEL - 1
    assert _path("auto", cpu, big, 16) == "compiled" and _path("auto", cpu, small, 16) == "eager"
    assert _path("auto", torch.device("cuda"), big, 16) == "eager"
    assert _path("compiled", cpu, 10, 32) == "reference"  # > 16 levels: one code per byte
