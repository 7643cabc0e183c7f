"""Execute notebooks top to bottom in place (what `make notebooks` runs) and time each.

    python scripts/run_notebooks.py notebooks/*.ipynb

Each notebook runs in a fresh kernel with its folder as the working directory; the result
is written atomically (temp file + rename), so a failed run leaves the committed file as
it was. Wall times are printed and written to notebooks/timings.json.

What is written is what JupyterLab itself would write, so a committed notebook opens clean
(no unsaved-changes dot) and shows its widgets before anything runs:

* ``metadata.kernelspec`` is the spec of the kernel that ran it (name, display_name, language:
  Lab rewrites a different display name the moment the kernel starts, marking the file dirty);
* ``metadata.language_info`` comes from that kernel (nbclient), nbformat 4.5 with cell ids;
* ``metadata.widgets`` holds the state of every widget model shown (``store_widget_state``), so
  Lab (for a trusted notebook: `make lab` trusts the course's) and the static site draw the
  controls and the figure in their Output widget instead of ``VBox(children=...)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def lab_metadata(nb, kernel_name: str) -> None:
    """Make ``nb``'s notebook-level metadata what JupyterLab writes for ``kernel_name``."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(kernel_name)
    nb.metadata["kernelspec"] = {"display_name": spec.display_name, "language": spec.language,
                                 "name": kernel_name}
    nb.nbformat, nb.nbformat_minor = 4, max(nb.nbformat_minor, 5)
    for cell in nb.cells:
        if "id" not in cell:
            from nbformat.corpus.words import generate_corpus_id

            cell["id"] = generate_corpus_id()


def widget_models_missing(nb) -> list[str]:
    """Model ids shown by a widget output (or referenced by a shown model) with no saved state."""
    saved = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    state = saved.get("state", {})
    todo = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for c in nb.cells for o in c.get("outputs", [])
            if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    missing, seen = [], set()
    while todo:
        mid = todo.pop()
        if mid in seen:
            continue
        seen.add(mid)
        if mid not in state:
            missing.append(mid)
            continue
        refs = json.dumps(state[mid].get("state", {}))
        todo.extend(r for r in re.findall(r"IPY_MODEL_([0-9a-f]+)", refs))
    return missing


def run(path: Path, timeout: int, kernel_name: str = "python3") -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    lab_metadata(nb, kernel_name)
    missing = widget_models_missing(nb)
    if missing:
        raise RuntimeError(f"{path.name}: no saved state for widget models {missing[:3]}")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".ipynb.tmp")
    os.close(fd)
    nbformat.write(nb, tmp)
    os.replace(tmp, path)
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    ap.add_argument("--kernel", default="python3", help="kernelspec to run (and record in the notebook)")
    args = ap.parse_args(argv)
    timings_file = Path(__file__).resolve().parent.parent / "notebooks" / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    for path in sorted(args.notebooks):
        seconds = run(path, args.timeout, args.kernel)
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
