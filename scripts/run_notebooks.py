"""Execute notebooks top to bottom in place (what `make notebooks` runs) and time each.

    python scripts/run_notebooks.py notebooks/*.ipynb

Each notebook runs in a fresh kernel with its folder as the working directory; the result
is written atomically (temp file + rename), so a failed run leaves the committed file as
it was. Wall times are printed and written to notebooks/timings.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    os.close(fd)
    nbformat.write(nb, tmp)
    os.replace(tmp, path)
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = ap.parse_args(argv)
    timings_file = Path(__file__).resolve().parent.parent / "notebooks" / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    for path in sorted(args.notebooks):
        seconds = run(path, args.timeout)
        print(f"{path.name}: {seconds:.1f} s", flush=True)
        if path.resolve().parent != timings_file.parent:
            continue  # only the course's own notebooks are recorded
        timings[path.name] = {"seconds": round(seconds, 1), "cpus": os.cpu_count(),
                              "date": time.strftime("%Y-%m-%d")}
        timings_file.write_text(json.dumps(timings, indent=1, sort_keys=True) + "\n")
    print(f"total: {sum(t['seconds'] for t in timings.values()):.1f} s (all notebooks in timings.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
