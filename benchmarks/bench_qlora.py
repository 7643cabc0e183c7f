"""A 4-bit linear layer (4096 × 4096, NF4 + double quantisation): minilora vs bitsandbytes, same run.

    python benchmarks/bench_qlora.py [--repeats 5] [--threads N] [--size 4096]

Rows (ratio = minilora time / bitsandbytes time, median of the paired per-repeat ratios of
interleaved ``torch.utils.benchmark.Timer`` measurements, with its quartiles):

* forward, 8 tokens (decoding), fp32 and bf16 compute — target ≤ 1.0× (goal ≤ 0.5×)
* forward, 512 tokens (training), fp32 — target ≤ 1.0×
* forward + backward of a QLoRA layer (LoRA r = 8 on the 4-bit base, 512 tokens, the input
  needing its gradient as inside a model) vs bitsandbytes + peft — target ≤ 1.0×
* dequantise the whole matrix to bf16 — target ≤ 1.25× (carried from issue 4), and both
  minilora dequantising into a caller-supplied buffer (``out=``; bitsandbytes 0.50.2 has
  no CPU kernel for its ``out=``)

bitsandbytes runs its documented CPU path (dequantise, then matmul in compute_dtype). On
CPUs with AVX512-BF16, its eval-mode no-grad forward instead repacks the weight for a bf16
kernel ("packed"); where this CPU has it, that path is timed too and the forward ratios
are also given against it (it is not equivalent: ≈1e-2 off in fp32, tests/test_qlora_model.py).
minilora's readable path (dequantise + F.linear) is shown for where the time goes. Outputs
are checked equal (readable vs fast) in the same run. The load average (``os.getloadavg``)
before and after goes into the table: on a machine shared with other jobs the ratios are
"under load". The dequantise rows also give the output floor (allocate + first touch of a
fresh bf16 output): whether a "fresh" output pays page faults depends on the allocator's
state (glibc recycles a freed block below its mmap threshold), and it decides the fresh
ratio. Tables: benchmarks/results/qlora.md and qlora.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import interleaved, ratio_stats, write_atomic

from minilora.lora import LoRALinear
from minilora.qlora import Linear4bit, dequantize_into

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"forward": 1.0, "forward+backward": 1.0, "dequantise": 1.25}


def bnb_layer(lin, compute_dtype, packed_path: bool):
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=False, compute_dtype=compute_dtype,
                              compress_statistics=True, quant_type="nf4")
    layer.load_state_dict(lin.state_dict())
    layer.support_avx512bf16_for_cpu = packed_path and getattr(layer, "support_avx512bf16_for_cpu", False)
    return layer.to("cpu").eval()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def row(name, times, mine, ref, target=None, note=""):
    ratio, lo, hi = ratio_stats(times[mine], times[ref])
    return dict(case=name, mine=mine, ref=ref, mine_ms=1e3 * statistics.median(times[mine]),
                ref_ms=1e3 * statistics.median(times[ref]), ratio=ratio, lo=lo, hi=hi, target=target,
                met=None if target is None else ratio <= target, note=note)


def forward_rows(lin, tokens, dtype, repeats, rows, warm):
    torch.manual_seed(tokens)
    x = torch.randn(tokens, lin.in_features, dtype=dtype)
    ours = Linear4bit(lin, compute_dtype=dtype).eval()
    readable = Linear4bit(lin, compute_dtype=dtype, impl="readable").eval()
    theirs = bnb_layer(lin, dtype, packed_path=False)
    fns = {"minilora fast": lambda: ours(x), "minilora readable": lambda: readable(x),
           "bitsandbytes": lambda: theirs(x)}
    packed = bnb_layer(lin, dtype, packed_path=True)
    if packed.support_avx512bf16_for_cpu:
        fns["bitsandbytes packed"] = lambda: packed(x)
    name = f"forward {tokens} tok {str(dtype).removeprefix('torch.')}"
    with torch.no_grad():
        warm[name] = timed(fns["minilora fast"])
        for f in fns.values():
            f()
        y, want = ours(x).float(), readable(x).float()
        err = float((y - want).abs().max() / want.abs().max())
        assert err < (1e-5 if dtype == torch.float32 else 2**-6), err
        times = interleaved(fns, repeats, warmup=False)
    target = TARGETS["forward"] if tokens == 8 or dtype == torch.float32 else None
    rows.append(row(name, times, "minilora fast", "bitsandbytes", target))
    rows.append(row(name, times, "minilora readable", "bitsandbytes"))
    if "bitsandbytes packed" in times:
        rows.append(row(name, times, "minilora fast", "bitsandbytes packed", None,
                        "bnb's AVX512-BF16 eval kernel (bf16 inside, not equivalent)"))


def qlora_rows(lin, tokens, repeats, rows, warm):
    import peft

    torch.manual_seed(1)
    x = torch.randn(tokens, lin.in_features)
    ours = LoRALinear(Linear4bit(lin), r=8, alpha=16)
    readable = LoRALinear(Linear4bit(lin, impl="readable"), r=8, alpha=16)
    model = torch.nn.Sequential()
    model.add_module("proj", bnb_layer(lin, torch.float32, packed_path=False).train())
    theirs = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["proj"]))
    with torch.no_grad():
        for layer in (ours, readable):
            layer.lora_B.normal_(0, 0.02)
            layer.lora_A.copy_(ours.lora_A)
            layer.lora_B.copy_(ours.lora_B)
        theirs.base_model.model.proj.lora_A["default"].weight.copy_(ours.lora_A)
        theirs.base_model.model.proj.lora_B["default"].weight.copy_(ours.lora_B)

    def step(module):
        def run():
            xi = x.clone().requires_grad_(True)
            module(xi).sum().backward()
            return xi.grad
        return run

    fns = {"minilora fast": step(ours), "minilora readable": step(readable),
           "bitsandbytes+peft": step(theirs)}
    name = f"QLoRA layer forward+backward {tokens} tok fp32 (r=8)"
    warm[name] = timed(fns["minilora fast"])
    g_fast, g_read = fns["minilora fast"](), fns["minilora readable"]()
    assert float((g_fast - g_read).abs().max() / g_read.abs().max()) < 1e-5
    times = interleaved(fns, repeats)
    rows.append(row(name, times, "minilora fast", "bitsandbytes+peft", TARGETS["forward+backward"]))
    rows.append(row(name, times, "minilora readable", "bitsandbytes+peft"))


def dequant_rows(lin, repeats, rows, warm, floor):
    import bitsandbytes.functional as F

    ours = Linear4bit(lin, compute_dtype=torch.bfloat16)
    theirs = bnb_layer(lin, torch.bfloat16, packed_path=False)
    qs = copy.copy(theirs.weight.quant_state)
    qs.dtype = torch.bfloat16  # bitsandbytes dequantises to the state's dtype
    packed = theirs.weight.data
    out_ours = torch.empty(lin.out_features, lin.in_features, dtype=torch.bfloat16)
    fns = {"minilora fresh": lambda: dequantize_into(ours, torch.bfloat16),
           "minilora out=": lambda: dequantize_into(ours, out=out_ours),
           "bitsandbytes fresh": lambda: F.dequantize_4bit(packed, qs)}
    reused = torch.empty_like(out_ours)
    fns["floor fresh"] = lambda: torch.empty_like(out_ours).fill_(0)  # what a fresh output costs
    fns["floor reused"] = lambda: reused.fill_(0)
    warm["dequantise bf16"] = timed(fns["minilora fresh"])
    assert torch.equal(fns["minilora fresh"](), ours.dequantized_weight(torch.bfloat16))
    assert torch.equal(fns["minilora out="](), ours.dequantized_weight(torch.bfloat16))
    times = interleaved(fns, repeats)
    floor.update({k: 1e3 * statistics.median(times[k]) for k in ("floor fresh", "floor reused")})
    name = "dequantise to bf16 (NF4 + DQ)"
    rows.append(row(name, times, "minilora fresh", "bitsandbytes fresh", TARGETS["dequantise"]))
    rows.append(row(name, times, "minilora out=", "bitsandbytes fresh", None,
                    "bitsandbytes 0.50.2 has no CPU kernel for out= (NotImplementedError)"))


def under_load(load) -> bool:
    """Other jobs ran: a 1-minute load above 0.5 before, or above this run's own threads after."""
    return load[0][0] > 0.5 or load[1][0] > torch.get_num_threads() + 0.5


def table(rows, warm, floor, load, args) -> str:
    head = (f"# QLoRA layer benchmark (`benchmarks/bench_qlora.py`)\n\n"
            f"{args.size}×{args.size} NF4 + double quantisation, blocksize 64, device cpu, torch "
            f"{torch.__version__}, {os.cpu_count()} CPUs ({torch.get_num_threads()} torch threads), "
            f"median of {args.repeats} interleaved repeats, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
            f"load average (1, 5, 15 min) before {load[0]}, after {load[1]}"
            f"{' — under load: other jobs shared the CPUs' if under_load(load) else ''}\n\n"
            f"command: `python benchmarks/bench_qlora.py {' '.join(sys.argv[1:])}`".rstrip() + "\n\n"
            "ratio = minilora time / bitsandbytes time (lower is faster), median of per-repeat "
            "ratios [IQR].\n\n| case | minilora | bitsandbytes | minilora (ms) | bitsandbytes (ms) "
            "| ratio [IQR] | target | met | note |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        target = "" if r["target"] is None else f"≤ {r['target']:.2f}×"
        met = "" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['case']} | {r['mine']} | {r['ref']} | {r['mine_ms']:.1f} | {r['ref_ms']:.1f} "
                     f"| {r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] | {target} | {met} | {r['note']} |")
    first = ", ".join(f"{k} {v:.1f} s" for k, v in warm.items())
    floors = (f"\n\noutput floor of the dequantise rows (allocate + first touch of a fresh 4096×4096 "
              f"bf16 tensor): {floor['floor fresh']:.1f} ms; refilling a reused one: "
              f"{floor['floor reused']:.1f} ms" if floor else "")
    return (head + "\n".join(lines)
            + f"\n\nfirst call of minilora's fast path (includes compilation): {first}" + floors + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5 (the targets are judged on medians of at least 5)")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import bitsandbytes  # noqa: F401
        import peft  # noqa: F401
    except ImportError:
        print("bitsandbytes and peft are the references: pip install bitsandbytes peft")
        return 1
    torch.manual_seed(0)
    lin = torch.nn.Linear(args.size, args.size, bias=False)
    rows, warm, floor = [], {}, {}
    load_before = tuple(round(v, 2) for v in os.getloadavg())
    forward_rows(lin, 8, torch.float32, args.repeats, rows, warm)
    forward_rows(lin, 8, torch.bfloat16, args.repeats, rows, warm)
    forward_rows(lin, 512, torch.float32, args.repeats, rows, warm)
    qlora_rows(lin, 512, args.repeats, rows, warm)
    dequant_rows(lin, args.repeats, rows, warm, floor)
    load = (load_before, tuple(round(v, 2) for v in os.getloadavg()))
    text = table(rows, warm, floor, load, args)
    print(text)
    write_atomic(RESULTS / "qlora.md", text)
    record = {"rows": rows, "first_call_s": warm, "output_floor_ms": floor, "loadavg": load,
              "under_load": under_load(load),
              "repeats": args.repeats, "size": args.size,
              "torch": torch.__version__, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    write_atomic(RESULTS / "qlora.json", json.dumps(record, indent=1))
    print(f"written to {RESULTS / 'qlora.md'} and qlora.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
