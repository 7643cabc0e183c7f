"""The AdaLoRA rank allocator: its cost per training step, and against peft's, timed in one run.

    python benchmarks/bench_adalora.py [--repeats 7] [--batch-size 8] [--init-r 8]

The packaged MiniLM with SVD adapters on all six matrix types of every layer (36 layers,
init_r 8, pruned towards 4), a batch of movie snippets (max length 64):
* a training step: forward (+ the orthogonality penalty), backward, AdamW step;
* minilora ``RankAllocator.update_and_allocate`` at a step that only updates the scores
  (the budget does not move: ``delta_t`` skips it) and at a step that masks;
* peft's ``AdaLoraModel.update_and_allocate`` at the same two steps, on a peft copy of
  the same model with gradients present (the reference).
Targets: allocator ≤ 10 % of a training step; minilora/peft ≤ 1 (not slower). Each entry is
the median of ``--repeats`` interleaved timings; the table goes (atomically) to
benchmarks/results/adalora.md.
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

from minilora.adalora import RankAllocator, apply_adalora, orthogonal_regularization
from minilora.adamw import AdamW
from minilora.course import ALL_MATRICES
from minilora.data import encode, load_snippets
from minilora.models import load_model

RESULTS = Path(__file__).resolve().parent / "results" / "adalora.md"
TOTAL, TINIT, TFINAL, DELTA_T = 100, 10, 30, 5
SCORE_STEP, MASK_STEP = 21, 20  # inside the budgeting phase: 21 % 5 != 0 (scores only), 20 masks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--init-r", type=int, default=8)
    args = parser.parse_args(argv)
    import peft

    torch.manual_seed(0)
    base, tokenizer = load_model()
    batch = encode(load_snippets("movie", "train")[: args.batch_size], tokenizer, 64).batch(
        torch.arange(args.batch_size)
    )
    target_r = args.init_r // 2

    ours = copy.deepcopy(base).train()
    apply_adalora(ours, ALL_MATRICES, init_r=args.init_r, alpha=16, seed=0)
    alloc = RankAllocator(
        ours, target_r=target_r, tinit=TINIT, tfinal=TFINAL, total_step=TOTAL, delta_t=DELTA_T
    )
    opt = AdamW([p for p in ours.parameters() if p.requires_grad], lr=1e-3)

    config = peft.AdaLoraConfig(
        target_modules=list(ALL_MATRICES),
        init_r=args.init_r,
        target_r=target_r,
        lora_alpha=16,
        tinit=TINIT,
        tfinal=TFINAL,
        total_step=TOTAL,
        deltaT=DELTA_T,
        task_type="SEQ_CLS",
    )
    theirs = peft.get_peft_model(copy.deepcopy(base), config).train()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = ours(**batch).loss + 0.1 * orthogonal_regularization(ours)
        loss.backward()
        opt.step()

    train_step()  # gradients present from here on, for both allocators
    theirs.base_model(**batch).loss.backward()
    fns = {
        "train step": train_step,
        "minilora, scores only": lambda: alloc.update_and_allocate(ours, SCORE_STEP),
        "peft, scores only": lambda: theirs.base_model.update_and_allocate(SCORE_STEP),
        "minilora, masking step": lambda: alloc.update_and_allocate(ours, MASK_STEP),
        "peft, masking step": lambda: theirs.base_model.update_and_allocate(MASK_STEP),
    }
    t0 = time.perf_counter()
    times = interleaved(fns, args.repeats, min_run_time=0.2)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for kind in ("scores only", "masking step"):
        ratio, lo, hi = ratio_stats(times[f"minilora, {kind}"], times[f"peft, {kind}"])
        frac = [a / s for a, s in zip(times[f"minilora, {kind}"], times["train step"])]
        rows.append(
            (kind, med[f"minilora, {kind}"], med[f"peft, {kind}"], ratio, lo, hi, statistics.median(frac))
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    busy = "a busy machine, re-measure on an idle one" if load > 2 else "idle"
    lines = [
        "# AdaLoRA rank allocator: cost per step, minilora vs peft",
        "",
        f"MiniLM, SVD adapters on all 6 matrix types × 6 layers (36 layers), init_r {args.init_r} → target "
        f"{target_r}, batch {args.batch_size} × ≤64 tokens, CPU, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, peft {peft.__version__}; median of {args.repeats} interleaved repeats "
        f"(load average {load:.1f} at the end: {busy}).",
        "",
        "training step (forward + orthogonality penalty + backward + AdamW): "
        f"{1e3 * med['train step']:.1f} ms",
        "",
        "| allocator step | minilora (ms) | peft (ms) | minilora / peft (IQR) | minilora / training step "
        "| target |",
        "|---|---|---|---|---|---|",
    ]
    for kind, mine, ref, ratio, lo, hi, frac in rows:
        lines.append(
            f"| {kind} | {1e3 * mine:.2f} | {1e3 * ref:.2f} | {ratio:.2f} ({lo:.2f}–{hi:.2f}) | "
            f"{100 * frac:.1f} % | ≤ 10 %, ≤ 1.0× |"
        )
    lines += ["", f"({time.perf_counter() - t0:.0f} s of timing)", ""]
    write_atomic(RESULTS, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
