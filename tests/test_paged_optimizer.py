"""AdamW / PagedAdamW against torch.optim.AdamW, the CUDA runtime binding (with a stand-in
library on CPU), managed memory (real CUDA only) and scripts/gpu_check.py's CPU run."""

import copy
import ctypes
import io
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from minilora.paged import cuda as cr
from minilora.adamw import AdamW, check_hyperparameters
from minilora.paged import ManagedAllocation, PagedAdamW, PageManager, managed_empty, prefetch

ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "needs a CUDA GPU (scripts/gpu_check.py runs these checks on one; see docs/gpu.md)"
HP = dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)


def mlp(seed=0, device="cpu"):
    torch.manual_seed(seed)
    layers = [nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)]
    return nn.Sequential(*layers).to(device)


class LoRAStyle(nn.Module):
    """A frozen base layer plus a trainable low-rank pair A, B and a head: LoRA's param groups."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.base = nn.Linear(12, 24)
        self.base.requires_grad_(False)
        self.A = nn.Parameter(torch.randn(4, 12) * 0.1)
        self.B = nn.Parameter(torch.zeros(24, 4))
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.base(x) + x @ self.A.T @ self.B.T))

    def groups(self):
        return [{"params": [self.A, self.B], "lr": 5e-2, "weight_decay": 0.0},
                {"params": list(self.head.parameters())}]


def quiet_paged(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return PagedAdamW(*args, **kw)


def run(model, opt, steps, seed=1, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 12, generator=gen).to(device)
        y = torch.randint(0, 3, (16,), generator=gen).to(device)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


MAKERS = {"AdamW": lambda g: AdamW(g, **HP), "PagedAdamW": lambda g: quiet_paged(g, **HP),
          "loop": lambda g: AdamW(g, foreach=False, **HP), "foreach": lambda g: AdamW(g, foreach=True, **HP)}


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("kind", ["mlp", "lora"])
def test_equals_torch_adamw(name, kind):
    ref, ours = (mlp(), mlp()) if kind == "mlp" else (LoRAStyle(), LoRAStyle())
    groups = (lambda m: m.parameters()) if kind == "mlp" else (lambda m: m.groups())
    run(ref, torch.optim.AdamW(groups(ref), **HP), 60)
    run(ours, MAKERS[name](groups(ours)), 60)
    assert max_diff(ref, ours) <= 1e-6
    assert max_diff(ref, mlp() if kind == "mlp" else LoRAStyle()) > 1e-2  # it did train


def test_default_hyperparameters_match_torch():
    ref, ours = mlp(), mlp()
    run(ref, torch.optim.AdamW(ref.parameters()), 50)
    run(ours, quiet_paged(ours.parameters()), 50)
    assert max_diff(ref, ours) <= 1e-6


def test_late_gradients_and_frozen_params_match_torch():
    """A parameter that first gets a gradient at step 6 has its own step count, as in torch."""
    ref, ours = mlp(), mlp()
    opts = [torch.optim.AdamW(ref.parameters(), **HP), AdamW(ours.parameters(), **HP)]
    gen = torch.Generator().manual_seed(3)
    for step in range(20):
        x = torch.randn(8, 12, generator=gen)
        for model, opt in zip((ref, ours), opts):
            model[0].requires_grad_(step >= 5)
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
    assert max_diff(ref, ours) <= 1e-6
    assert opts[1].state[ours[0].weight]["step"].item() == 15


def test_warns_once_without_cuda_and_not_when_unpaged():
    model = mlp()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = PagedAdamW(model.parameters())
        run(model, opt, 5)
        opt.page_out()
    paging = [w for w in caught if "paging needs CUDA" in str(w.message)]
    assert len(paging) == 1 and issubclass(paging[0].category, RuntimeWarning)
    assert not opt.paging and opt.bytes_paged_out == 0 and opt.bytes_paged_in == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(model, PagedAdamW(model.parameters(), paged=False), 2)


def test_state_dict_round_trip_and_resume():
    straight, first = mlp(), mlp()
    run(straight, quiet_paged(straight.parameters(), **HP), 40)
    opt = quiet_paged(first.parameters(), **HP)
    run(first, opt, 20)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = mlp(seed=5)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt2 = quiet_paged(resumed.parameters(), **HP)
    opt2.load_state_dict(saved["opt"])
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd1["param_groups"] == sd2["param_groups"]
    for i, s in sd1["state"].items():
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s[k], sd2["state"][i][k])
    run(resumed, opt2, 20, seed=1 + 20)  # not the same batches as steps 1-20: use the same stream
    run(first, opt, 20, seed=1 + 20)
    assert max_diff(first, resumed) == 0.0


def test_loads_torch_adamw_state_dict():
    """Same state format as torch: a torch AdamW checkpoint continues identically in ours."""
    ref, ours = mlp(), mlp()
    ref_opt = torch.optim.AdamW(ref.parameters(), **HP)
    run(ref, ref_opt, 10)
    ours.load_state_dict(ref.state_dict())
    our_opt = AdamW(ours.parameters(), **HP)
    our_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))  # as if read from disk: no shared tensors
    run(ref, ref_opt, 10, seed=9)
    run(ours, our_opt, 10, seed=9)
    assert max_diff(ref, ours) <= 1e-6


def test_closure_returns_loss_and_is_evaluated_with_grad():
    model = mlp()
    opt = AdamW(model.parameters(), **HP)
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    before = closure().item()
    loss = opt.step(closure)
    assert calls == [True, True] and loss.item() == pytest.approx(before)
    ref = mlp()
    ref_opt = torch.optim.AdamW(ref.parameters(), **HP)
    ref_opt.zero_grad()
    nn.functional.cross_entropy(ref(x), y).backward()
    ref_opt.step()
    assert max_diff(ref, model) <= 1e-6


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"), (dict(betas=(1.0, 0.999)), "betas[0]"),
    (dict(betas=(0.9, -0.1)), "betas[1]"), (dict(betas=(0.9,)), "betas"), (dict(eps=0.0), "eps"),
    (dict(eps=-1e-8), "eps"), (dict(weight_decay=-0.01), "weight_decay"), (dict(lr="0.1"), "lr"),
    (dict(lr=True), "lr"),
])
@pytest.mark.parametrize("cls", [AdamW, PagedAdamW])
def test_bad_hyperparameters_name_the_parameter(cls, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name.replace("[", r"\[")):
        cls(mlp().parameters(), **kwargs)


def test_bad_group_and_parameter_inputs():
    model = mlp()
    with pytest.raises(ValueError, match="lr"):
        AdamW([{"params": model[0].parameters(), "lr": -1.0}, {"params": model[2].parameters()}])
    with pytest.raises(TypeError, match="floating"):
        AdamW([nn.Parameter(torch.zeros(3, dtype=torch.complex64))])
    with pytest.raises(TypeError, match="foreach"):
        AdamW(model.parameters(), foreach="yes")
    with pytest.raises(ValueError, match="min_paged_numel"):
        PagedAdamW(model.parameters(), min_paged_numel=-1)
    emb = nn.Embedding(10, 4, sparse=True)
    opt = AdamW(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()
    check_hyperparameters(0.0, (0.0, 0.0), 1e-12, 0.0)  # the boundary values are allowed


def test_optimizer_works_in_the_training_schedule():
    """torch's LR schedulers drive our optimizer like torch's (the train() loop uses LambdaLR)."""
    ref, ours = mlp(), mlp()
    opts = [torch.optim.AdamW(ref.parameters(), **HP), AdamW(ours.parameters(), **HP)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 / (1 + s)) for o in opts]
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        x = torch.randn(8, 12, generator=gen)
        for model, opt, sched in zip((ref, ours), opts, scheds):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            sched.step()
    assert max_diff(ref, ours) <= 1e-6


# ---- the CUDA runtime binding, exercised with a stand-in library on any machine ----

class FakeCudart:
    """Python stand-in for libcudart: the same functions, byref outputs, integer error codes."""

    ERRORS = {0: b"cudaSuccess", 1: b"cudaErrorInvalidValue", 2: b"cudaErrorMemoryAllocation"}

    def __init__(self, version=12040, malloc_error=0):
        self.version, self.malloc_error = version, malloc_error
        self.freed, self.prefetches, self.next_ptr = [], [], 0x7000_0000

    def cudaGetErrorName(self, code):
        return self.ERRORS.get(code, b"cudaErrorUnknown")

    def cudaRuntimeGetVersion(self, out):
        out._obj.value = self.version
        return 0

    def cudaMallocManaged(self, ptr, nbytes, flags):
        assert flags == cr.CUDA_MEM_ATTACH_GLOBAL
        if self.malloc_error:
            return self.malloc_error
        ptr._obj.value, self.next_ptr = self.next_ptr, self.next_ptr + nbytes + 256
        return 0

    def cudaFree(self, ptr):
        self.freed.append(ptr.value)
        return 0

    def cudaMemPrefetchAsync(self, *args):
        self.prefetches.append(args)
        return 0


def test_runtime_checks_every_call_and_names_the_error():
    rt = cr.CudaRuntime(FakeCudart(malloc_error=2))
    assert rt.version == 12040
    expected = r"cudaMallocManaged\(64 bytes\) failed: cudaErrorMemoryAllocation \(2\)"
    with pytest.raises(RuntimeError, match=expected):
        rt.malloc_managed(64)


@pytest.fixture
def free_device_memory(monkeypatch):
    """torch.cuda.mem_get_info as a GPU with ``free`` of 2 GiB would answer it (settable)."""
    state = {"free": 1 << 30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 2 << 30))
    return state


def test_managed_allocation_is_freed_exactly_once(free_device_memory):
    lib = FakeCudart()
    rt = cr.CudaRuntime(lib)
    a = ManagedAllocation(rt, 1000, device=0)
    ptr = a.ptr
    iface = a.__cuda_array_interface__
    assert iface["data"] == (ptr, False) and iface["shape"] == (1000,) and iface["typestr"] == "|u1"
    assert iface["version"] == 3
    a.free()
    a.free()
    assert lib.freed == [ptr] and not a.alive
    with pytest.raises(RuntimeError, match="already freed"):
        _ = a.__cuda_array_interface__
    b = ManagedAllocation(rt, 0)  # size 0 still gets a valid (1-byte) block
    ptr_b = b.ptr
    del b
    import gc

    gc.collect()
    assert lib.freed == [ptr, ptr_b]


def test_refuses_more_managed_memory_than_is_free(free_device_memory):
    free_device_memory["free"] = 1 << 20
    lib = FakeCudart()
    with pytest.raises(MemoryError, match="refusing to allocate"):
        ManagedAllocation(cr.CudaRuntime(lib), (1 << 20) + 1)
    assert lib.next_ptr == 0x7000_0000  # nothing was asked of cudaMallocManaged
    with pytest.raises(ValueError, match="nbytes"):
        ManagedAllocation(cr.CudaRuntime(lib), -5)


@pytest.mark.parametrize("version, has_v2", [(12040, False), (12080, True), (13000, False), (13010, True)])
def test_prefetch_uses_the_api_of_the_runtime_version(version, has_v2):
    lib = FakeCudart(version=version)
    if has_v2:  # CUDA 12.2+ also exports cudaMemPrefetchAsync_v2, which always takes a cudaMemLocation
        lib.cudaMemPrefetchAsync_v2 = lambda *args: lib.prefetches.append(("v2", *args)) or 0
    rt = cr.CudaRuntime(lib)
    rt.prefetch(0x1000, 4096, -1, 0)
    rt.prefetch(0x1000, 4096, 0, 0)
    host, gpu = lib.prefetches
    if version >= 13000:  # (ptr, count, cudaMemLocation, flags, stream), via _v2 where it exists
        if has_v2:
            assert host[0] == gpu[0] == "v2"
            host, gpu = host[1:], gpu[1:]
        assert len(host) == 5 and host[3] == 0
        assert (host[2].type, gpu[2].type, gpu[2].id) == (cr.LOCATION_HOST, cr.LOCATION_DEVICE, 0)
    else:  # (ptr, count, dstDevice, stream): the plain symbol on CUDA 12
        assert len(host) == 4 and (host[2], gpu[2]) == (cr.CUDA_CPU_DEVICE_ID, 0)


def test_libcudart_discovery():
    maps = ("7f00-7f10 r-xp 00000000 08:01 123 /opt/x/nvidia/cuda_runtime/lib/libcudart.so.12\n"
            "7f10-7f20 r--p 00000000 08:01 123 /opt/x/nvidia/cuda_runtime/lib/libcudart.so.12\n"
            "7f20-7f30 rw-p 00000000 00:00 0 \n"
            "7f30-7f40 r-xp 00000000 08:01 9 /usr/lib/libcudart_helper.txt\n"
            "7f40-7f50 r-xp 00000000 08:01 7 /my dir/libcudart-abc123.so.11.0\n")
    assert cr.loaded_libraries(maps) == ["/opt/x/nvidia/cuda_runtime/lib/libcudart.so.12",
                                         "/my dir/libcudart-abc123.so.11.0"]
    assert isinstance(cr.candidate_paths(), list)
    runtime, reason = cr.runtime_or_reason()
    assert (runtime is None) == (reason is not None)
    if not HAS_CUDA:
        assert "CUDA" in reason


def test_page_manager_counts_requested_migrations(monkeypatch):
    moves = []
    monkeypatch.setattr("minilora.paged.optimizer.prefetch", lambda t, to: moves.append(to) or True)
    pages = PageManager()
    a, b, stranger = torch.zeros(100), torch.zeros(50, dtype=torch.float64), torch.zeros(7)
    pages.register(a)
    pages.register(b)
    assert pages.resident_bytes == pages.managed_bytes == 800
    assert pages.page_out() == 800 and pages.page_out() == 0  # already out: nothing to move
    assert pages.resident_bytes == 0
    assert pages.page_in([a, stranger]) == 400 and pages.page_in([a]) == 0
    assert (pages.bytes_paged_in, pages.bytes_paged_out, moves) == (400, 800, ["cpu", "cpu", "cuda"])


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given where CUDA is missing")
def test_cuda_only_functions_explain_why_without_cuda():
    with pytest.raises(cr.CudaUnavailableError, match="CUDA"):
        managed_empty((4, 4))
    with pytest.raises(ValueError, match="shape"):
        managed_empty((2, -1))
    with pytest.raises(TypeError, match="dtype"):
        managed_empty((2,), dtype="float32")
    with pytest.raises(ValueError, match="to must be"):
        prefetch(torch.zeros(2), to="gpu")
    with pytest.raises(TypeError, match="CUDA tensor"):
        prefetch(torch.zeros(2), to="cpu")


# ---- real CUDA (skipped with the reason on CPU machines) ----

@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_managed_tensor_round_trip_on_cuda():
    from minilora.paged import host_view

    t = managed_empty((256, 64), torch.float32)
    assert t.is_cuda and t.shape == (256, 64)
    t.fill_(2.5)
    torch.cuda.synchronize()
    view = host_view(t)
    assert (view == 2.5).all()
    view[0, 0] = 7.0
    assert t.sum().item() == pytest.approx(2.5 * t.numel() + 4.5)
    assert prefetch(t, "cpu") in (True, False)
    assert t.sum().item() == pytest.approx(2.5 * t.numel() + 4.5)


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_paged_adamw_equals_torch_on_cuda():
    ref, ours = mlp(device="cuda"), mlp(device="cuda")
    run(ref, torch.optim.AdamW(ref.parameters(), **HP), 50, device="cuda")
    opt = PagedAdamW(ours.parameters(), min_paged_numel=0, **HP)
    assert opt.paging
    run(ours, opt, 50, device="cuda")
    assert opt.pages.managed_bytes == opt.state_bytes() > 0
    assert max_diff(ref, ours) <= 1e-6


def test_gpu_check_script_runs_cleanly_on_this_machine(tmp_path):
    """On CPU it must exit 0 and list the checks that need a GPU (on a GPU it runs them: slow)."""
    if HAS_CUDA:
        pytest.skip("on a GPU machine run scripts/gpu_check.py directly (minutes)")
    script = ROOT / "scripts" / "gpu_check.py"
    out = subprocess.run([sys.executable, str(script), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "needs a GPU" in out.stdout and "managed memory r/w" in out.stdout
    import json

    result = json.loads((tmp_path / "r.json").read_text())
    assert result["card"] is None and all(r["result"] == "SKIP" for r in result["rows"])


def test_gpu_check_logic_on_cpu(script):
    """The script's comparisons, run on CPU tensors (PagedAdamW falls back to host memory)."""
    gpu_check = script("scripts/gpu_check.py")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = gpu_check.check_adamw_equivalence("cpu")
    assert result["result"] == "PASS" and result["values"]["max_diff"] <= 1e-6


def test_gpu_check_nf4_comparison_on_cpu(script):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is the reference (installed by make test)")
    result = script("scripts/gpu_check.py").check_nf4_against_bitsandbytes("cpu", n=64 * 1024, repeats=1)
    assert result["result"] == "PASS", result["detail"]


def test_copy_of_optimizer_is_independent():
    model = mlp()
    opt = AdamW(model.parameters(), **HP)
    run(model, opt, 3)
    sd = copy.deepcopy(opt.state_dict())
    run(model, opt, 3)
    assert not torch.equal(sd["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert isinstance(ctypes.sizeof(cr.MemLocation), int) and ctypes.sizeof(cr.MemLocation) == 8
