"""Run every benchmarks/bench_*.py (what `make bench` does), one after another.

Each benchmark measures minilora against its reference in the same run (median of several
repeats) and writes its table to benchmarks/results/<topic>.md. Run on an idle machine:
ratios are robust to a slow machine, not to a busy one.

    python benchmarks/run.py            # all
    python benchmarks/run.py quant      # only bench_quant.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    wanted = set(argv if argv is not None else sys.argv[1:])
    scripts = [p for p in sorted(HERE.glob("bench_*.py")) if not wanted or p.stem[6:] in wanted]
    if not scripts:
        print(f"no benchmark matches {sorted(wanted)}; have: {[p.stem[6:] for p in HERE.glob('bench_*.py')]}")
        return 2
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        start = time.perf_counter()
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
            failed.append(script.name)
        print(f"({script.name}: {time.perf_counter() - start:.0f} s)", flush=True)
    if failed:
        print("FAILED:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
