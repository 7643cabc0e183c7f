"""NF4 quantise / dequantise of a 4096×4096 matrix: minilora vs bitsandbytes in the same run.

    python benchmarks/bench_quant.py [--repeats 7] [--threads N] [--size 4096]

Rows: fp32 and bf16 input, blocksize 64. minilora's default path ("auto": compiled kernels
for tensors this large) and, for where the time goes, its eager kernels and readable
reference; bitsandbytes' ``quantize_4bit`` (pure PyTorch on CPU) and ``dequantize_4bit``
(native C++ on CPU). Each entry is the median of ``--repeats`` ``torch.utils.benchmark.Timer``
measurements, implementations interleaved so machine load hits them alike; compilation happens in a warm-up
call and is reported on its own. Targets (default path): quantise ≥ 3× bitsandbytes' speed
(time ratio ≤ 0.333), dequantise ≤ 1.25× its time. Codes are checked identical in the same
run. The table goes (atomically) to benchmarks/results/quant.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import interleaved, ratio_stats, write_atomic

from minilora.quant import dequantize, nf4_levels, quantize_blockwise

RESULTS = Path(__file__).resolve().parent / "results" / "quant.md"
TARGETS = {"quantise": 1 / 3, "dequantise": 1.25}


def timed(fn) -> float:
    """Seconds of one call (for first calls, which include compilation)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def output_floor(x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds to allocate and first-touch a fresh tensor like ``x`` (what every
    dequantise pays for its output: page faults), and to fill an already-touched one."""
    reused = torch.empty_like(x)
    times = interleaved({"fresh": lambda: torch.empty_like(x).fill_(0), "reused": lambda: reused.fill_(0)},
                        repeats)
    return statistics.median(times["fresh"]), statistics.median(times["reused"])


def bench_dtype(x: torch.Tensor, repeats: int, rows: list[dict], compile_s: dict, floor: dict) -> None:
    """Time every path on ``x`` (NF4, blocksize 64) against bitsandbytes; append table rows."""
    import bitsandbytes.functional as F

    levels, name = nf4_levels(), str(x.dtype).removeprefix("torch.")
    compile_s[f"quantise {name}"] = timed(lambda: quantize_blockwise(x, levels, 64))  # warm-up
    q = quantize_blockwise(x, levels, 64)
    compile_s[f"dequantise {name}"] = timed(lambda: dequantize(q))
    packed, state = F.quantize_4bit(x, blocksize=64, quant_type="nf4")
    assert torch.equal(q.packed, packed.reshape(-1)) and torch.equal(q.absmax, state.absmax)
    assert torch.equal(dequantize(q), F.dequantize_4bit(packed, state))  # rows of 4096: bnb is right
    quantise = {
        "bitsandbytes": lambda: F.quantize_4bit(x, blocksize=64, quant_type="nf4"),
        "auto (compiled)": lambda: quantize_blockwise(x, levels, 64),
        "eager": lambda: quantize_blockwise(x, levels, 64, impl="eager"),
        "reference": lambda: quantize_blockwise(x, levels, 64, impl="reference"),
    }
    dequantise = {
        "bitsandbytes": lambda: F.dequantize_4bit(packed, state),
        "auto (compiled)": lambda: dequantize(q),
        "eager": lambda: dequantize(q, impl="eager"),
        "reference": lambda: dequantize(q, impl="reference"),
    }
    floor[name] = output_floor(x, repeats)
    for op, fns in (("quantise", quantise), ("dequantise", dequantise)):
        times = interleaved(fns, repeats, warmup=False)
        for impl in ("auto (compiled)", "eager", "reference"):
            ratio, lo, hi = ratio_stats(times[impl], times["bitsandbytes"])
            target = TARGETS[op] if impl.startswith("auto") else None
            rows.append(dict(op=op, dtype=name, impl=impl, mine=statistics.median(times[impl]),
                             ref=statistics.median(times["bitsandbytes"]), ratio=ratio, lo=lo, hi=hi,
                             target=target, met=None if target is None else ratio <= target))


def run(size: int, repeats: int) -> tuple[list[dict], dict, dict]:
    torch.manual_seed(0)
    x = torch.randn(size, size)
    rows, compile_s, floor = [], {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        bench_dtype(x.to(dtype), repeats, rows, compile_s, floor)
    return rows, compile_s, floor


def table(rows: list[dict], compile_s: dict, floor: dict, args) -> str:
    head = (f"# Quantisation benchmark (`benchmarks/bench_quant.py`)\n\n"
            f"{args.size}×{args.size} NF4, blocksize 64, device cpu, torch {torch.__version__}, "
            f"{os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), median of {args.repeats} "
            f"interleaved repeats, {time.strftime('%Y-%m-%d')}\n\n"
            f"command: `python benchmarks/bench_quant.py {' '.join(sys.argv[1:])}`".rstrip() + "\n\n"
            "ratio = minilora time / bitsandbytes time (lower is faster); the speed-up is 1/ratio.\n\n"
            "| op | dtype | minilora path | minilora (ms) | bitsandbytes (ms) | ratio [IQR] | speed-up "
            "| target | met |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        target = "" if r["target"] is None else ("≥ 3× faster" if r["op"] == "quantise" else "≤ 1.25× time")
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['op']} | {r['dtype']} | {r['impl']} | {1e3 * r['mine']:.1f} "
                     f"| {1e3 * r['ref']:.1f} | {r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] "
                     f"| {1 / r['ratio']:.2f}× | {target} "
                     f"| {met} |")
    warm = ", ".join(f"{k} {v:.1f} s" for k, v in compile_s.items())
    fl = ", ".join(f"{k} {1e3 * f:.1f} ms (reused buffer: {1e3 * r:.2f} ms)" for k, (f, r) in floor.items())
    return (head + "\n".join(lines) + f"\n\nfirst call (includes compilation): {warm}\n\n"
            f"output floor, paid by every dequantise (allocate + first touch of a fresh output "
            f"of this size, page faults): {fl}\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5 (the targets are judged on medians of at least 5)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("bitsandbytes is not installed: nothing to compare against (pip install bitsandbytes)")
        return 1
    rows, compile_s, floor = run(args.size, args.repeats)
    text = table(rows, compile_s, floor, args)
    print(text)
    write_atomic(RESULTS, text)
    print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
