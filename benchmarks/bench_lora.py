"""LoRALinear against nn.Linear and peft's LoRA layer, timed in the same run.

    python benchmarks/bench_lora.py [--device cpu|cuda] [--repeats 7] [--r 8]

Rows (shape d×d, a batch of tokens × d input that requires grad, as inside a network):
* train step (forward + backward): minilora LoRALinear (unmerged), peft ``lora.Linear``,
  and a trainable ``nn.Linear`` (what full fine-tuning pays);
* inference: minilora merged LoRALinear vs a plain ``nn.Linear`` (no_grad).
Each entry is the median of ``--repeats`` timings (each a ``torch.utils.benchmark.Timer``
measurement of several calls, implementations interleaved so machine load hits them
alike). Targets: merged ≤ 1.02× nn.Linear; unmerged train step ≤ 1.0× peft within noise.
The table goes (atomically) to benchmarks/results/lora.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import interleaved, ratio_stats, write_atomic
from torch import nn

from minilora.lora import LoRALinear

RESULTS = Path(__file__).resolve().parent / "results" / "lora.md"


def peft_layer(base: nn.Linear, r: int, alpha: float) -> nn.Module:
    """peft's LoRA wrapper around a copy of ``base`` (the reference implementation)."""
    import peft

    holder = nn.Module()
    holder.lin = copy.deepcopy(base)
    cfg = peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["lin"], lora_dropout=0.0)
    return peft.get_peft_model(holder, cfg).base_model.model.lin


def train_step(layer, x, grad_out):
    """One forward + backward; the gradients are dropped afterwards (as zero_grad does)."""
    def step():
        out = layer(x)
        out.backward(grad_out)
        x.grad = None
        for p in layer.parameters():
            p.grad = None
    return step


def infer(layer, x):
    def step():
        with torch.no_grad():
            layer(x)
    return step


def row(shape, tokens, what, a: list, b: list, target):
    """Median times and the median of the paired per-repeat ratios with its quartiles."""
    ratio, q1, q3 = ratio_stats(a, b)
    return (shape, tokens, what, statistics.median(a), statistics.median(b), ratio, (q1, q3), target)


def bench_shape(d: int, tokens: int, r: int, repeats: int, device, dtype) -> list[tuple]:
    torch.manual_seed(0)
    base = nn.Linear(d, d).to(device, dtype)
    mine = LoRALinear(copy.deepcopy(base), r=r, alpha=2 * r)
    ref = peft_layer(base, r, 2 * r)
    with torch.no_grad():  # same A and B in both (B ≠ 0 so the adapter path does real work)
        mine.lora_B.normal_(std=0.02)
        ref.lora_A["default"].weight.copy_(mine.lora_A)
        ref.lora_B["default"].weight.copy_(mine.lora_B)
    x = torch.randn(tokens, d, device=device, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(tokens, d, device=device, dtype=dtype)
    torch.testing.assert_close(mine(x), ref(x), atol=1e-4, rtol=1e-4)  # same function
    full = copy.deepcopy(base).requires_grad_(True)  # full fine-tuning trains W itself
    train = interleaved({"lora": train_step(mine, x, grad_out), "peft": train_step(ref, x, grad_out),
                         "linear": train_step(full, x, grad_out)}, repeats)
    merged = copy.deepcopy(mine)
    merged.merge()
    x_inf = x.detach()
    infer_t = interleaved({"merged": infer(merged, x_inf), "linear": infer(base, x_inf),
                           "unmerged": infer(mine, x_inf)}, repeats)
    shape = f"{d}×{d}"
    return [
        row(shape, tokens, "train step: LoRA / peft", train["lora"], train["peft"], 1.0),
        row(shape, tokens, "train step: LoRA / nn.Linear (full FT)", train["lora"], train["linear"], None),
        row(shape, tokens, "inference: merged LoRA / nn.Linear", infer_t["merged"], infer_t["linear"], 1.02),
        row(shape, tokens, "inference: unmerged LoRA / nn.Linear", infer_t["unmerged"], infer_t["linear"],
            None),
    ]


def render(rows, args, device, argv=None) -> str:
    command = " ".join(["python benchmarks/bench_lora.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        "# LoRA benchmark (`benchmarks/bench_lora.py`)",
        "",
        f"device: {device}{f' ({torch.cuda.get_device_name(device)})' if device.type == 'cuda' else ''}, "
        f"dtype {args.dtype}, torch {torch.__version__}, {os.cpu_count()} CPUs "
        f"({torch.get_num_threads()} torch threads), r = {args.r}, "
        f"median of {args.repeats} repeats, {time.strftime('%Y-%m-%d')}",
        "",
        f"command: `{command}`",
        "",
        "| shape | tokens | comparison | minilora (ms) | reference (ms) | ratio [IQR] | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape, tokens, what, a, b, ratio, (q1, q3), target in rows:
        # met: median ratio within target; "within noise": the ratios' lower quartile is
        met = "" if target is None else "yes" if ratio <= target else "within noise" if q1 <= target else "no"
        tgt = "" if target is None else f"≤ {target:.2f}"
        lines.append(f"| {shape} | {tokens} | {what} | {a * 1e3:.3f} | {b * 1e3:.3f} "
                     f"| {ratio:.3f} [{q1:.3f}, {q3:.3f}] | {tgt} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--tokens", type=int, nargs=2, default=None, metavar=("T384", "T4096"),
                    help="tokens per batch for the 384 and 4096 shapes (default: 2048 256 on cpu, "
                         "8192 8192 on cuda)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error("--repeats must be >= 5")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    tokens = args.tokens or ((8192, 8192) if device.type == "cuda" else (2048, 256))
    rows = []
    for d, t in zip((384, 4096), tokens):
        rows += bench_shape(d, t, args.r, args.repeats, device, dtype)
    table = render(rows, args, device, argv)
    print(table)
    write_atomic(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
