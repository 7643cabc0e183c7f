"""minilora.paged.optimizer: PagedAdamW against torch.optim.AdamW, managed allocations (with a
stand-in libcudart on CPU), the page manager, and managed memory on real CUDA."""

import gc
import io
import warnings

import pytest
import torch
from conftest import BAD_HYPERPARAMETERS

from minilora.paged import ManagedAllocation, PagedAdamW, PageManager, managed_empty, prefetch
from minilora.paged import cuda as cr

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "needs a CUDA GPU (scripts/gpu_check.py runs these checks on one; see docs/gpu.md)"
HP = dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)


def quiet_paged(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return PagedAdamW(*args, **kw)


# --- the same updates as torch's AdamW --------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "lora"])
def test_paged_adamw_equals_torch_adamw(optim_kit, kind):
    k = optim_kit
    make = k.mlp if kind == "mlp" else k.lora_style
    ref, ours = make(), make()
    groups = (lambda m: m.parameters()) if kind == "mlp" else (lambda m: m.groups())
    k.train_steps(ref, torch.optim.AdamW(groups(ref), **HP), 60)
    k.train_steps(ours, quiet_paged(groups(ours), **HP), 60)
    assert k.max_diff(ref, ours) <= 1e-6
    assert k.max_diff(ref, make()) > 1e-2  # it did train


def test_default_hyperparameters_match_torch(optim_kit):
    ref, ours = optim_kit.mlp(), optim_kit.mlp()
    optim_kit.train_steps(ref, torch.optim.AdamW(ref.parameters()), 50)
    optim_kit.train_steps(ours, quiet_paged(ours.parameters()), 50)
    assert optim_kit.max_diff(ref, ours) <= 1e-6


# --- CPU parameters: nothing to page -------------------------------------------------------------

def run_recording_warnings(optim_kit):
    model = optim_kit.mlp()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = PagedAdamW(model.parameters())
        optim_kit.train_steps(model, opt, 5)
        opt.page_out()
    return opt, caught


def test_warns_once_when_states_cannot_be_paged(optim_kit):
    _, caught = run_recording_warnings(optim_kit)
    paging = [w for w in caught if "paging needs CUDA" in str(w.message)]
    assert len(paging) == 1 and issubclass(paging[0].category, RuntimeWarning)


def test_nothing_is_paged_when_states_cannot_be_paged(optim_kit):
    opt, _ = run_recording_warnings(optim_kit)
    assert not opt.paging and opt.bytes_paged_out == 0 and opt.bytes_paged_in == 0


def test_unpaged_optimizer_does_not_warn(optim_kit):
    model = optim_kit.mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optim_kit.train_steps(model, PagedAdamW(model.parameters(), paged=False), 2)


# --- checkpoints ----------------------------------------------------------------------------------

@pytest.fixture
def checkpointed(optim_kit):
    """(model, optimizer) after 20 steps, and a fresh model + optimizer loaded from their checkpoint."""
    first = optim_kit.mlp()
    opt = quiet_paged(first.parameters(), **HP)
    optim_kit.train_steps(first, opt, 20)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = optim_kit.mlp(seed=5)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(saved["model"])
    opt2 = quiet_paged(resumed.parameters(), **HP)
    opt2.load_state_dict(saved["opt"])
    return first, opt, resumed, opt2


def test_state_dict_round_trip_keeps_groups_and_moments(checkpointed):
    _, opt, _, opt2 = checkpointed
    sd1, sd2 = opt.state_dict(), opt2.state_dict()
    assert sd1["param_groups"] == sd2["param_groups"]
    for i, s in sd1["state"].items():
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s[k], sd2["state"][i][k])


def test_resumed_training_equals_uninterrupted_training(checkpointed, optim_kit):
    first, opt, resumed, opt2 = checkpointed
    # not the same batches as steps 1-20: use the same stream
    optim_kit.train_steps(resumed, opt2, 20, seed=1 + 20)
    optim_kit.train_steps(first, opt, 20, seed=1 + 20)
    assert optim_kit.max_diff(first, resumed) == 0.0


# --- bad arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, name", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_name_the_parameter(optim_kit, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name.replace("[", r"\[")):
        PagedAdamW(optim_kit.mlp().parameters(), **kwargs)


def test_negative_min_paged_numel_is_rejected(optim_kit):
    with pytest.raises(ValueError, match="min_paged_numel"):
        PagedAdamW(optim_kit.mlp().parameters(), min_paged_numel=-1)


# --- managed allocations, with a stand-in libcudart ----------------------------------------------

@pytest.fixture
def free_device_memory(monkeypatch):
    """torch.cuda.mem_get_info as a GPU with ``free`` of 2 GiB would answer it (settable)."""
    state = {"free": 1 << 30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (state["free"], 2 << 30))
    return state


def test_managed_allocation_exposes_a_cuda_array_interface(free_device_memory, fake_cudart):
    a = ManagedAllocation(cr.CudaRuntime(fake_cudart()), 1000, device=0)
    iface = a.__cuda_array_interface__
    assert iface["data"] == (a.ptr, False) and iface["shape"] == (1000,) and iface["typestr"] == "|u1"
    assert iface["version"] == 3


def test_managed_allocation_is_freed_exactly_once(free_device_memory, fake_cudart):
    lib = fake_cudart()
    a = ManagedAllocation(cr.CudaRuntime(lib), 1000, device=0)
    ptr = a.ptr
    a.free()
    a.free()
    assert lib.freed == [ptr] and not a.alive


def test_a_freed_allocation_refuses_to_be_used(free_device_memory, fake_cudart):
    a = ManagedAllocation(cr.CudaRuntime(fake_cudart()), 1000, device=0)
    a.free()
    with pytest.raises(RuntimeError, match="already freed"):
        _ = a.__cuda_array_interface__


def test_a_dropped_allocation_is_freed_by_the_garbage_collector(free_device_memory, fake_cudart):
    lib = fake_cudart()
    rt = cr.CudaRuntime(lib)
    a = ManagedAllocation(rt, 1000, device=0)
    ptr = a.ptr
    a.free()
    b = ManagedAllocation(rt, 0)  # size 0 still gets a valid (1-byte) block
    ptr_b = b.ptr
    del b
    gc.collect()
    assert lib.freed == [ptr, ptr_b]


def test_refuses_more_managed_memory_than_is_free(free_device_memory, fake_cudart):
    free_device_memory["free"] = 1 << 20
    lib = fake_cudart()
    with pytest.raises(MemoryError, match="refusing to allocate"):
        ManagedAllocation(cr.CudaRuntime(lib), (1 << 20) + 1)
    assert lib.next_ptr == 0x7000_0000  # nothing was asked of cudaMallocManaged


def test_managed_allocation_rejects_a_negative_size(free_device_memory, fake_cudart):
    with pytest.raises(ValueError, match="nbytes"):
        ManagedAllocation(cr.CudaRuntime(fake_cudart()), -5)


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


# --- managed tensors: argument checks and the message without CUDA ----------------------------------

@pytest.mark.skipif(HAS_CUDA, reason="checks the message given where CUDA is missing")
def test_managed_empty_explains_that_it_needs_cuda():
    with pytest.raises(cr.CudaUnavailableError, match="CUDA"):
        managed_empty((4, 4))


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given where CUDA is missing")
def test_managed_empty_rejects_a_negative_dimension():
    with pytest.raises(ValueError, match="shape"):
        managed_empty((2, -1))


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given where CUDA is missing")
def test_managed_empty_rejects_a_dtype_given_as_a_string():
    with pytest.raises(TypeError, match="dtype"):
        managed_empty((2,), dtype="float32")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given where CUDA is missing")
def test_prefetch_rejects_an_unknown_destination():
    with pytest.raises(ValueError, match="to must be"):
        prefetch(torch.zeros(2), to="gpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given where CUDA is missing")
def test_prefetch_rejects_a_cpu_tensor():
    with pytest.raises(TypeError, match="CUDA tensor"):
        prefetch(torch.zeros(2), to="cpu")


# --- real CUDA (skipped with the reason on CPU machines) --------------------------------------------

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
def test_paged_adamw_equals_torch_on_cuda(optim_kit):
    ref, ours = optim_kit.mlp(device="cuda"), optim_kit.mlp(device="cuda")
    optim_kit.train_steps(ref, torch.optim.AdamW(ref.parameters(), **HP), 50, device="cuda")
    opt = PagedAdamW(ours.parameters(), min_paged_numel=0, **HP)
    assert opt.paging
    optim_kit.train_steps(ours, opt, 50, device="cuda")
    assert opt.pages.managed_bytes == opt.state_bytes() > 0
    assert optim_kit.max_diff(ref, ours) <= 1e-6
