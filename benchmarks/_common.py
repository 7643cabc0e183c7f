"""Shared by the bench_*.py scripts (run as scripts, so this folder is on sys.path).

One timing mechanic for every benchmark: ``interleaved`` times each implementation with
``torch.utils.benchmark.Timer`` (which synchronises CUDA and picks the number of calls per
measurement), repeat by repeat, implementations interleaved so that machine load hits them
alike; ``ratio_stats`` turns paired timings into the median ratio with its quartiles. Tables
are written with minilora's one atomic write.
"""

from __future__ import annotations

import statistics

from torch.utils.benchmark import Timer

from minilora.files import write_text_atomic

write_atomic = write_text_atomic  # the benchmarks' name for it


def time_once(fn, min_run_time: float = 0.1) -> float:
    """Seconds per call of ``fn()``: ``Timer.blocked_autorange`` runs it in blocks for at least
    ``min_run_time`` seconds and reports the median block's time per call."""
    return Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=min_run_time).median


def interleaved(fns: dict, repeats: int, min_run_time: float = 0.1, warmup: bool = True
                ) -> dict[str, list[float]]:
    """``{name: [seconds per call] × repeats}``: every fn timed once per repeat, in turn."""
    if warmup:
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_once(fn, min_run_time))
    return times


def ratio_stats(mine: list[float], ref: list[float]) -> tuple[float, float, float]:
    """Median of the paired per-repeat ratios ``mine/ref``, with its lower and upper quartile."""
    ratios = sorted(m / r for m, r in zip(mine, ref))
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]
