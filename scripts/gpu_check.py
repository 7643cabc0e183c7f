"""Every CUDA path of minilora, checked on a real GPU in under 5 minutes; prints a table last.

    python scripts/gpu_check.py [--record docs/gpu.md] [--json results.json] [--weights-gb 4]

Checks: managed memory read/written by GPU and CPU; prefetch to the host lowers the device
memory in use (cudaMemGetInfo); PagedAdamW == torch.optim.AdamW on CUDA; 200 managed
allocate/free cycles leak nothing; the memory timeline of a training step (MiniLM + a stack
of large Linear layers) with torch AdamW vs PagedAdamW + page_out(), its peak and step
time; NF4 quantisation vs bitsandbytes on CUDA, code for code, and timing; minilora's
Linear4bit vs bitsandbytes' (bf16, within the bound, and timing); the peak memory of a QLoRA
step of MiniLM with AdamW and with PagedAdamW. Without CUDA it
says which checks need a GPU and exits 0. Exit status 1 if a check FAILs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from minilora.paged import runtime_or_reason  # noqa: E402

MiB, GiB = 2**20, 2**30
CHECKS = ("managed memory r/w", "prefetch lowers device memory", "PagedAdamW == torch AdamW",
          "200 alloc/free cycles", "timeline: forward/backward peak",
          "timeline: device used (cudaMemGetInfo)", "step time", "NF4 vs bitsandbytes",
          "Linear4bit vs bitsandbytes", "QLoRA step peak (paged vs not)")


def row(check, result, detail, **values):
    return {"check": check, "result": result, "detail": detail, "values": values}


def device_used(rt) -> int:
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return total - free


def check_managed_rw(rt):
    from minilora.paged import host_view, managed_empty

    t = managed_empty((1024, 1024), torch.float32)
    t.fill_(3.0)  # a GPU kernel writes
    torch.cuda.synchronize()
    view = host_view(t)  # the CPU reads the same pages, no copy
    gpu_write_seen = bool((view == 3.0).all())
    view[0, :4] = [1.0, 2.0, 3.0, 4.0]  # the CPU writes
    cpu_write_seen = t[0, :4].tolist() == [1.0, 2.0, 3.0, 4.0] and t.sum().item() == 3.0 * (2**20 - 4) + 10
    bf16_ok = managed_empty((3, 5), torch.bfloat16).fill_(1.5).float().sum().item() == 22.5
    ok = gpu_write_seen and cpu_write_seen and bf16_ok
    return row(CHECKS[0], "PASS" if ok else "FAIL", f"GPU write seen by CPU: {gpu_write_seen}; "
               f"CPU write seen by GPU: {cpu_write_seen}; bf16 tensor: {bf16_ok}")


def check_prefetch(rt):
    from minilora.paged import managed_empty, prefetch

    device = torch.cuda.current_device()
    if not rt.concurrent_managed_access(device):
        return row(CHECKS[1], "SKIP", "device lacks cudaDevAttrConcurrentManagedAccess: prefetch not allowed")
    size = min(GiB, torch.cuda.mem_get_info()[0] // 4) // 4 * 4
    t = managed_empty((size // 4,), torch.float32)
    t.fill_(1.0)  # first touch on the GPU: pages are created there
    on_gpu = device_used(rt)
    prefetch(t, "cpu")
    on_host = device_used(rt)
    prefetch(t, "cuda")
    back = device_used(rt)
    drop, rise = on_gpu - on_host, back - on_host
    ok = drop >= 0.9 * size and rise >= 0.9 * size and t[::4096].sum().item() == len(t[::4096])
    return row(CHECKS[1], "PASS" if ok else "FAIL",
               f"{size / MiB:.0f} MiB block: device used fell {drop / MiB:.0f} MiB after prefetch to cpu, "
               f"rose {rise / MiB:.0f} MiB after prefetch back", block=size, drop=drop, rise=rise)


def check_adamw_equivalence(device="cuda"):
    """50 steps, MLP, LoRA-like groups, paged states (on CUDA) with a page_out every 5 steps."""
    from minilora.paged import PagedAdamW

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                             nn.Linear(256, 4)).to(device)

    def groups(m):
        return [{"params": m[0].parameters(), "weight_decay": 0.0},
                {"params": list(m[2:].parameters()), "lr": 3e-3}]

    ref, ours = model(), model()
    hp = dict(lr=1e-2, betas=(0.85, 0.99), eps=1e-7, weight_decay=0.05)
    opts = [torch.optim.AdamW(groups(ref), **hp), PagedAdamW(groups(ours), min_paged_numel=0, **hp)]
    gen = torch.Generator().manual_seed(1)
    for step in range(50):
        x = torch.randn(32, 64, generator=gen).to(device)
        y = torch.randint(0, 4, (32,), generator=gen).to(device)
        for m, opt in zip((ref, ours), opts):
            opt.zero_grad()
            nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        if step % 5 == 4 and opts[1].paging:
            opts[1].page_out()
    diff = max((a - b).abs().max().item() for a, b in zip(ref.parameters(), ours.parameters()))
    paged = opts[1].pages.managed_bytes
    ok = diff <= 1e-6 and (paged > 0 or device != "cuda")
    return row(CHECKS[2], "PASS" if ok else "FAIL",
               f"max |Δθ| = {diff:.2e} after 50 steps; {paged / MiB:.2f} MiB of states paged, "
               f"{opts[1].bytes_paged_out / MiB:.1f} MiB out / {opts[1].bytes_paged_in / MiB:.1f} MiB in",
               max_diff=diff, paged_bytes=paged)


def check_alloc_cycles(rt, cycles=200, block=64 * MiB):
    from minilora.paged import managed_empty

    gc.collect()
    start = torch.cuda.mem_get_info()[0]
    for i in range(cycles):
        t = managed_empty((block // 4,), torch.float32)
        t.fill_(float(i))  # touch it so physical pages exist
        del t
    gc.collect()
    torch.cuda.synchronize()
    drift = start - torch.cuda.mem_get_info()[0]
    return row(CHECKS[3], "PASS" if drift < block else "FAIL",
               f"{cycles} x {block // MiB} MiB: free device memory changed by {drift / MiB:+.1f} MiB",
               drift=drift)


class MiniLMWithStack(nn.Module):
    """MiniLM, then ``depth`` Linear(d, d)+GELU layers on every token, then a 2-way head on [CLS]."""

    def __init__(self, minilm: nn.Module, d: int, depth: int):
        super().__init__()
        self.minilm = minilm
        self.up = nn.Linear(self.minilm.config.hidden_size, d)
        self.stack = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.GELU()) for _ in range(depth))
        self.head = nn.Linear(d, 2)

    def forward(self, input_ids, attention_mask, labels):
        x = self.up(self.minilm(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)
        for layer in self.stack:
            x = layer(x)
        return SimpleNamespace(loss=nn.functional.cross_entropy(self.head(x[:, 0]), labels))


def check_timeline(rt, weights_gb=None):
    """One step with torch AdamW, one with PagedAdamW + page_out(); timings over 5 steps each."""
    from minilora.data import encode, load_snippets
    from minilora.memory import measured_step_timeline
    from minilora.models import load_model
    from minilora.paged import PagedAdamW

    free = torch.cuda.mem_get_info()[0]
    weights = int((weights_gb or min(4.0, free / GiB / 10)) * GiB)
    d = 4096 if weights < 2 * GiB else 8192
    depth = max(1, weights // (4 * d * d))
    # each stack layer saves two tokens × d fp32 tensors (Linear input, GELU input): 8·tokens·d bytes,
    # the states 8·d² bytes per layer, so tokens = 1.5·d makes the activations 1.5 × the states
    tokens, seq = int(1.5 * d), 64
    minilm, tokenizer = load_model()
    model = MiniLMWithStack(minilm.bert, d, depth).cuda()
    enc = encode(load_snippets("movie", "train"), tokenizer, max_length=seq)
    rows = torch.arange(tokens // seq) % len(enc)
    batch = {k: v.cuda() for k, v in enc.batch(rows).items()}
    if batch["input_ids"].shape[1] < seq:  # pad to `seq` tokens so the stack sees `tokens` rows
        pad = seq - batch["input_ids"].shape[1]
        batch["input_ids"] = nn.functional.pad(batch["input_ids"], (0, pad))
        batch["attention_mask"] = nn.functional.pad(batch["attention_mask"], (0, pad))
    results = {}
    for name, paged in (("torch AdamW", False), ("PagedAdamW + page_out", True)):
        gc.collect()
        torch.cuda.empty_cache()
        params = list(model.parameters())
        opt = PagedAdamW(params, lr=1e-6) if paged else torch.optim.AdamW(params, lr=1e-6)
        times, used = [], []
        for _ in range(6):  # step 0 creates the states (warm-up); 1-5 are timed
            torch.cuda.synchronize()
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            if paged:
                opt.page_out()
            model(**batch).loss.backward()
            used.append(device_used(rt))
            opt.step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        states = sum(v.numel() * v.element_size()
                     for s in opt.state.values() for v in s.values() if v.dim() > 0)
        tl = measured_step_timeline(model, batch, opt, page_out=paged)
        fb_managed = max(m for m, p in zip(tl.parts["managed states on GPU"], tl.phases) if p != "step")
        results[name] = dict(states=states, fb_peak=tl.forward_backward_peak + fb_managed,
                             step_peak=tl.parts["torch tensors"][-2] + tl.parts["managed states on GPU"][-2],
                             used_after_backward=statistics.median(used[1:]),
                             step_time=statistics.median(times[1:]))
        del opt, tl
    gc.collect()
    torch.cuda.empty_cache()
    a, b = results["torch AdamW"], results["PagedAdamW + page_out"]
    S = a["states"]
    drop, used_drop = a["fb_peak"] - b["fb_peak"], a["used_after_backward"] - b["used_after_backward"]
    overall = max(a["fb_peak"], a["step_peak"]) - max(b["fb_peak"], b["step_peak"])
    size = f"{depth} x Linear({d},{d}) + MiniLM, {tokens} tokens, states {S / GiB:.2f} GiB"
    return [
        row(CHECKS[4], "PASS" if drop >= 0.8 * S else "FAIL",
            f"{size}: fwd/bwd peak {a['fb_peak'] / GiB:.2f} -> {b['fb_peak'] / GiB:.2f} GiB, drop = "
            f"{drop / S:.2f} x states; whole-step peak drop {overall / GiB:.2f} GiB", states=S,
            fb_peak_adamw=a["fb_peak"], fb_peak_paged=b["fb_peak"], step_peak_adamw=a["step_peak"],
            step_peak_paged=b["step_peak"], overall_drop=overall),
        row(CHECKS[5], "PASS" if used_drop >= 0.8 * S else "FAIL",
            f"device used after backward {a['used_after_backward'] / GiB:.2f} -> "
            f"{b['used_after_backward'] / GiB:.2f} GiB, drop = {used_drop / S:.2f} x states",
            used_drop=used_drop),
        row(CHECKS[6], "MEASURED",
            f"median of 5: torch AdamW {a['step_time'] * 1e3:.0f} ms, PagedAdamW + page_out "
            f"{b['step_time'] * 1e3:.0f} ms, ratio {b['step_time'] / a['step_time']:.2f}",
            adamw_s=a["step_time"], paged_s=b["step_time"]),
    ]


def check_nf4_against_bitsandbytes(device="cuda", n=4096 * 4096, repeats=10):
    try:
        import bitsandbytes.functional as bnb_f

        from minilora.quant import nf4_levels, quantize_blockwise, unpack_nibbles
    except ImportError as e:
        return row(CHECKS[7], "SKIP", f"not importable: {e}")

    def timed(fn):
        out, times = fn(), []
        for _ in range(repeats):
            torch.cuda.synchronize() if device == "cuda" else None
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize() if device == "cuda" else None
            times.append(time.perf_counter() - start)
        return out, statistics.median(times)

    x = torch.randn(n, generator=torch.Generator().manual_seed(0)).to(device)
    q, ours_s = timed(lambda: quantize_blockwise(x, nf4_levels(), blocksize=64))
    (packed, state), bnb_s = timed(lambda: bnb_f.quantize_4bit(x, blocksize=64, quant_type="nf4"))
    ours = unpack_nibbles(q.packed, 2 * q.packed.numel())
    theirs = unpack_nibbles(packed.flatten().to(torch.uint8), 2 * packed.numel())
    if ours.shape != theirs.shape:
        return row(CHECKS[7], "FAIL", f"packed sizes differ: ours {tuple(q.packed.shape)}, bitsandbytes "
                   f"{tuple(packed.shape)}")
    absmax_diff = (q.absmax.float().flatten().to(device) - state.absmax.float().flatten()).abs().max().item()
    differ = (ours != theirs).nonzero().flatten()
    levels = nf4_levels().float().to(device)
    mids = (levels[1:] + levels[:-1]) / 2
    scaled = x[differ] / state.absmax.float().flatten()[differ // 64]
    tie_gap = (scaled[:, None] - mids[None, :]).abs().min(dim=1).values.max().item() if len(differ) else 0.0
    ok = absmax_diff == 0.0 and tie_gap < 1e-6
    return row(CHECKS[7], "PASS" if ok else "FAIL",
               f"{n} values: {len(differ)} codes differ (all within {tie_gap:.1e} of a tie between levels), "
               f"max |Δabsmax| {absmax_diff:.1e}; {ours_s * 1e3:.2f} ms vs bitsandbytes {bnb_s * 1e3:.2f} ms "
               f"(ratio {ours_s / bnb_s:.2f})", differ=len(differ), ours_s=ours_s, bnb_s=bnb_s)


def check_linear4bit_against_bitsandbytes(device="cuda", d=4096, tokens=512, repeats=10):
    """minilora's Linear4bit (NF4 + DQ, bf16 compute) vs bitsandbytes' Linear4bit on ``device``:
    outputs within the bound of tests/test_qlora_layer.py, and the forward time of each."""
    try:
        import bitsandbytes as bnb

        from minilora.qlora import Linear4bit
    except ImportError as e:
        return row(CHECKS[8], "SKIP", f"not importable: {e}")
    torch.manual_seed(0)
    lin = nn.Linear(d, d, bias=False)
    ours = Linear4bit(lin, compute_dtype=torch.bfloat16).to(device)
    theirs = bnb.nn.Linear4bit(d, d, bias=False, compute_dtype=torch.bfloat16, compress_statistics=True,
                               quant_type="nf4")
    theirs.load_state_dict(lin.state_dict())
    theirs.support_avx512bf16_for_cpu = False  # the documented dequantise + matmul path on a CPU
    theirs = theirs.to(device)
    x = torch.randn(tokens, d, device=device, dtype=torch.bfloat16)

    def timed(fn):
        times = []
        for _ in range(repeats + 1):
            torch.cuda.synchronize() if device == "cuda" else None
            start = time.perf_counter()
            out = fn()
            torch.cuda.synchronize() if device == "cuda" else None
            times.append(time.perf_counter() - start)
        return out, statistics.median(times[1:])

    with torch.no_grad():
        y_ours, ours_s = timed(lambda: ours(x))
        y_theirs, bnb_s = timed(lambda: theirs(x))
        w = ours.dequantized_weight().float()
        spread = x.float().abs() @ w.abs().T  # |x|·|W|ᵀ: what bf16 rounding can move (2⁻⁸ each side)
        worst = ((y_ours.float() - y_theirs.float()).abs() / (spread + 1e-30)).max().item()
    ok = worst <= 3 * 2.0**-8
    return row(CHECKS[8], "PASS" if ok else "FAIL",
               f"{d}×{d}, {tokens} tokens, bf16: max |Δy| / (|x|·|W|ᵀ) = {worst:.1e} (bound 3·2⁻⁸); "
               f"{ours_s * 1e3:.2f} ms vs bitsandbytes {bnb_s * 1e3:.2f} ms (ratio {ours_s / bnb_s:.2f})",
               worst=worst, ours_s=ours_s, bnb_s=bnb_s)


def check_qlora_step_memory(device="cuda"):
    """Peak memory of one QLoRA training step of MiniLM (NF4 + DQ, bf16 compute, LoRA r = 8,
    gradient checkpointing) with minilora's AdamW and with PagedAdamW + page_out()."""
    try:
        from minilora.lora import apply_lora, mark_only_lora_trainable
        from minilora.models import load_model
        from minilora.paged import PagedAdamW
        from minilora.qlora import quantize_model
        from minilora.train import gradient_checkpointing
    except ImportError as e:
        return row(CHECKS[9], "SKIP", f"not importable: {e}")
    from minilora.adamw import AdamW

    peaks = {}
    for name, make in (("AdamW", AdamW), ("PagedAdamW", PagedAdamW)):
        model, tok = load_model(device=device)
        quantize_model(model, compute_dtype=torch.bfloat16)
        apply_lora(model, ("query", "value"), r=8, seed=0)
        mark_only_lora_trainable(model)
        opt = make([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        batch = tok(["a fine film"] * 32, padding="max_length", max_length=128, return_tensors="pt")
        batch = batch.to(device)
        labels = torch.ones(32, dtype=torch.long, device=device)
        for _ in range(2):  # the second step has the optimizer states
            if hasattr(opt, "page_out"):
                opt.page_out()
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            with gradient_checkpointing(model):
                model(**batch, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        peaks[name] = torch.cuda.max_memory_allocated() if device == "cuda" else 0
        del model, opt
        gc.collect()
    return row(CHECKS[9], "PASS", f"peak allocated during the second step: AdamW "
               f"{peaks['AdamW'] / MiB:.1f} MiB, PagedAdamW + page_out {peaks['PagedAdamW'] / MiB:.1f} "
               "MiB (measured, not asserted: MiniLM's LoRA states are small)", **peaks)


def run_checks(rt, weights_gb=None) -> list[dict]:
    steps = [lambda: check_managed_rw(rt), lambda: check_prefetch(rt),
             lambda: check_adamw_equivalence("cuda"), lambda: check_alloc_cycles(rt),
             lambda: check_timeline(rt, weights_gb), lambda: check_nf4_against_bitsandbytes("cuda"),
             lambda: check_linear4bit_against_bitsandbytes("cuda"), lambda: check_qlora_step_memory("cuda")]
    names = [[c] for c in CHECKS[:4]] + [list(CHECKS[4:7]), [CHECKS[7]], [CHECKS[8]], [CHECKS[9]]]
    rows = []
    for step, covers in zip(steps, names):
        start = time.perf_counter()
        try:
            out = step()
            rows += out if isinstance(out, list) else [out]
        except Exception as e:  # report and go on: one broken path must not hide the others
            rows += [row(c, "FAIL", f"{type(e).__name__}: {e}") for c in covers]
        print(f"  {', '.join(covers)}: {time.perf_counter() - start:.1f} s", flush=True)
    return rows


def print_table(rows):
    width = max(len(r["check"]) for r in rows)
    print(f"\n{'check':<{width}}  result    detail")
    for r in rows:
        print(f"{r['check']:<{width}}  {r['result']:<8}  {r['detail']}")


def write_json(path, record):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, help="write the table into this page (docs/gpu.md)")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--weights-gb", type=float,
                    help="size of the Linear stack (default: min(4, free/10) GiB)")
    args = ap.parse_args(argv)
    rt, reason = runtime_or_reason()
    command = "python scripts/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])
    record = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "card": None,
              "cuda_runtime": None, "command": command.strip()}
    if rt is None:
        print(f"No usable CUDA GPU: {reason}.")
        print("These checks need a GPU and were skipped: " + "; ".join(CHECKS) + ".")
        print("Run this script on a CUDA machine and record it in docs/gpu.md (see that page).")
        rows = [row(c, "SKIP", "needs a GPU") for c in CHECKS]
    else:
        record.update(card=torch.cuda.get_device_name(), cuda_runtime=rt.version)
        print(f"{record['card']}, torch {torch.__version__}, CUDA runtime {rt.version}, libcudart {rt.path}")
        start = time.perf_counter()
        rows = run_checks(rt, args.weights_gb)
        record["seconds"] = round(time.perf_counter() - start, 1)
    record["rows"] = rows
    if args.json:
        write_json(args.json, record)
    if args.record:
        if rt is None:
            print(f"Nothing recorded in {args.record}: no GPU here.")
        else:
            from minilora.course import write_record

            write_record(args.record, record)
    print_table(rows)
    return 1 if any(r["result"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
