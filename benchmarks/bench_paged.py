"""minilora's AdamW / PagedAdamW against torch.optim.AdamW on MiniLM full fine-tuning (CPU).

    python benchmarks/bench_paged.py [--repeats 7] [--threads N]

Rows: one optimizer step over all 22.7M MiniLM parameters (fixed random gradients) for
torch.optim.AdamW (its CPU default, one tensor at a time, and foreach=True), minilora AdamW
(its CPU default, one tensor at a time, and foreach=True) and PagedAdamW(paged=False); and
one whole training step (forward + backward + step, batch 32 of movie snippets) with torch
AdamW vs ours, each at its default.
Median of ``--repeats`` timings, implementations interleaved so machine load hits them
alike. Paging itself needs CUDA: scripts/gpu_check.py times it. The table goes
(atomically) to benchmarks/results/paged.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import interleaved, write_atomic

from minilora.adamw import AdamW
from minilora.paged import PagedAdamW

RESULTS = Path(__file__).resolve().parent / "results" / "paged.md"


def optimizers(params) -> dict:
    return {"torch AdamW (CPU default)": torch.optim.AdamW(params, lr=1e-5),
            "torch AdamW foreach": torch.optim.AdamW(params, lr=1e-5, foreach=True),
            "minilora AdamW (CPU default)": AdamW(params, lr=1e-5),
            "minilora AdamW foreach": AdamW(params, lr=1e-5, foreach=True),
            "PagedAdamW(paged=False)": PagedAdamW(params, lr=1e-5, paged=False)}


def median_times(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each fn (``_common.interleaved``); the warm-up call creates
    the optimizer states."""
    return {k: statistics.median(v) for k, v in interleaved(fns, repeats, min_run_time=0.2).items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from minilora.data import encode, load_snippets
    from minilora.models import load_model

    model, tokenizer = load_model()
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    opts = optimizers(params)
    step_times = median_times({k: o.step for k, o in opts.items()}, args.repeats)

    batch = encode(load_snippets("movie", "train"), tokenizer, max_length=64).batch(torch.arange(32))
    model.train()

    def train_step(opt):
        def step():
            opt.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            opt.step()
        return step

    defaults = ("torch AdamW (CPU default)", "minilora AdamW (CPU default)")
    full = median_times({k: train_step(opts[k]) for k in defaults}, args.repeats)
    ref = step_times["torch AdamW (CPU default)"]
    threads = torch.get_num_threads()
    millions = sum(p.numel() for p in params) / 1e6
    command = " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Paged optimizer benchmark (`benchmarks/bench_paged.py`)", "",
             f"device: cpu, torch {torch.__version__}, {os.cpu_count()} CPUs ({threads} torch threads), "
             f"MiniLM full fine-tuning ({millions:.1f}M parameters), median of {args.repeats} repeats, "
             f"{time.strftime('%Y-%m-%d')}", "",
             f"command: `{('python benchmarks/bench_paged.py ' + command).strip()}`",
             "", "| what | implementation | ms | ratio vs torch AdamW (CPU default) |", "|---|---|---|---|"]
    for k, s in step_times.items():
        lines.append(f"| optimizer step | {k} | {s * 1e3:.1f} | {s / ref:.2f} |")
    ref_full = full["torch AdamW (CPU default)"]
    for k, s in full.items():
        lines.append(f"| train step (fwd + bwd + step, batch 32) | {k} | {s * 1e3:.0f} | "
                     f"{s / ref_full:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_atomic(RESULTS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
