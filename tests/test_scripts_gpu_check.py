"""scripts/gpu_check.py: its CPU run, and its comparisons driven on CPU tensors."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()


def test_gpu_check_script_runs_cleanly_on_this_machine(tmp_path):
    """On CPU it must exit 0 and list the checks that need a GPU (on a GPU it runs them: slow)."""
    if HAS_CUDA:
        pytest.skip("on a GPU machine run scripts/gpu_check.py directly (minutes)")
    script = ROOT / "scripts" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "needs a GPU" in out.stdout and "managed memory r/w" in out.stdout
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["card"] is None and all(r["result"] == "SKIP" for r in result["rows"])


def test_gpu_check_adamw_comparison_passes_on_cpu(script):
    """The script's comparisons, run on CPU tensors (PagedAdamW falls back to host memory)."""
    gpu_check = script("scripts/gpu_check.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = gpu_check.check_adamw_equivalence("cpu")
    assert result["result"] == "PASS" and result["values"]["max_diff"] <= 1e-6


def test_gpu_check_nf4_comparison_passes_on_cpu(script):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is the reference (installed by make test)")
    result = script("scripts/gpu_check.py").check_nf4_against_bitsandbytes("cpu", n=64 * 1024, repeats=1)
    assert result["result"] == "PASS", result["detail"]
