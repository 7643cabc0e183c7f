"""Paged optimizer states: CUDA unified memory from Python, and ``PagedAdamW``.

QLoRA's third trick (Dettmers et al. 2023, §3 "Paged Optimizers"): allocate the optimizer
states with ``cudaMallocManaged``. Such memory has one address valid on the GPU and the CPU;
the driver moves 4 KiB-2 MiB pages to whichever side touches them, and when the GPU runs out
of memory it evicts managed pages to host RAM instead of failing. We also move pages
ourselves: ``cudaMemPrefetchAsync`` to the GPU right before a state's update, and
``page_out()`` to the host when a memory spike (long sequence, checkpoint recomputation) is
coming, so the GPU memory the states occupied is free for activations meanwhile.

    t = managed_empty((1024, 1024), torch.float32)   # a CUDA tensor in managed memory
    prefetch(t, to="cpu")                              # its pages now live in host RAM
    opt = PagedAdamW(model.parameters(), lr=1e-4)
    ...; opt.page_out(); loss.backward(); opt.step()   # states away during fwd/bwd, back for the update

Without CUDA the same API keeps the states in ordinary memory (one warning per optimizer)
and computes exactly the numbers ``minilora.adamw.AdamW`` computes.
"""

from __future__ import annotations

import ctypes
import math
import warnings
import weakref

import numpy as np
import torch

from ..adamw import STATE_KEYS, AdamW, state_bytes
from ..checks import check_int
from .cuda import CudaRuntime, load_runtime, runtime_or_reason

MIN_PAGED_NUMEL = 100_000  # bitsandbytes pages a state only from 1e5 elements on; so do we


class ManagedAllocation:
    """One ``cudaMallocManaged`` block, freed with ``cudaFree`` exactly once: when the last
    reference (e.g. a tensor's storage) dies, or at an explicit ``free()``, whichever is first.

    It exposes ``__cuda_array_interface__`` (version 3) as a flat byte array, so
    ``torch.as_tensor(allocation, device=...)`` wraps it without a copy; torch keeps a
    reference to this object until the tensor's storage is released.
    """

    def __init__(self, runtime: CudaRuntime, nbytes: int, device: int = 0):
        nbytes = check_int(nbytes, "nbytes", 0)
        free, total = torch.cuda.mem_get_info(device)
        # never oversubscribe: asking for more managed memory than is free can hang a GPU
        if nbytes > free:
            raise MemoryError(f"refusing to allocate {nbytes / 2**20:.1f} MiB of managed memory: only "
                              f"{free / 2**20:.1f} MiB of {total / 2**20:.1f} MiB is free on cuda:{device}")
        self.nbytes, self.device = nbytes, device
        self.ptr = runtime.malloc_managed(max(nbytes, 1))  # size 0 is invalid for cudaMallocManaged
        self._free = weakref.finalize(self, runtime.free, self.ptr)
        self._free.atexit = False  # the process teardown releases the context anyway

    @property
    def alive(self) -> bool:
        return self._free.alive

    def free(self) -> None:
        """``cudaFree`` now (idempotent; only call once no tensor uses the memory)."""
        self._free()

    @property
    def __cuda_array_interface__(self) -> dict:
        if not self.alive:
            raise RuntimeError("this managed allocation was already freed")
        return {"shape": (self.nbytes,), "typestr": "|u1", "data": (self.ptr, False),
                "strides": None, "version": 3, "stream": None}


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be an int or a sequence of ints, got {shape!r}") from None
    return tuple(check_int(s, f"shape[{i}]", 0) for i, s in enumerate(shape))


def managed_empty(shape, dtype=torch.float32, device=None) -> torch.Tensor:
    """An uninitialised CUDA tensor of ``shape``/``dtype`` in unified (managed) memory.

    ``cudaMallocManaged(&p, n·sizeof(dtype), cudaMemAttachGlobal)`` via ``ctypes``; the block is
    freed by ``cudaFree`` when the tensor (and every view of it) is gone. Raises
    ``CudaUnavailableError`` without CUDA and ``MemoryError`` if more than the free device
    memory (``cudaMemGetInfo``) is asked for.
    """
    shape = _check_shape(shape)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r}")
    runtime = load_runtime()
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device must be a CUDA device, got {device}")
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    with torch.cuda.device(device):
        owner = ManagedAllocation(runtime, nbytes, device.index)
        flat = torch.as_tensor(owner, device=device)
    if flat.data_ptr() != owner.ptr:  # torch copied instead of wrapping: not managed any more
        raise RuntimeError("torch.as_tensor copied the managed block instead of wrapping it")
    return flat.view(dtype).view(shape)


def _storage_range(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def prefetch(t: torch.Tensor, to="cuda") -> bool:
    """Migrate the managed memory under ``t`` to the GPU (``to="cuda"``) or to host RAM
    (``to="cpu"``) with ``cudaMemPrefetchAsync`` on the current stream (asynchronous).

    Returns False, with a warning, where the GPU lacks ``cudaDevAttrConcurrentManagedAccess``
    (Windows/WSL, pre-Pascal): there the driver decides and prefetching is not allowed.
    Memory not from ``managed_empty`` raises the CUDA error (``cudaErrorInvalidValue``).
    """
    if to not in ("cuda", "cpu"):
        raise ValueError(f"to must be 'cuda' or 'cpu', got {to!r}")
    if not isinstance(t, torch.Tensor) or not t.is_cuda:
        raise TypeError("prefetch needs a CUDA tensor from managed_empty")
    runtime = load_runtime()
    device = t.device.index
    if not runtime.concurrent_managed_access(device):
        warnings.warn(f"cuda:{device} lacks cudaDevAttrConcurrentManagedAccess: prefetch skipped, the "
                      "driver migrates managed pages on its own", RuntimeWarning, stacklevel=2)
        return False
    ptr, nbytes = _storage_range(t)
    if nbytes == 0:
        return True  # nothing to move
    stream = torch.cuda.current_stream(device).cuda_stream
    runtime.prefetch(ptr, nbytes, device if to == "cuda" else -1, stream)
    return True


def host_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy array aliasing ``t``'s managed memory, read and written by the CPU directly
    (no copy). Call ``torch.cuda.synchronize()`` first: the CPU must not touch managed pages
    while a kernel may be using them."""
    if not t.is_cuda or not t.is_contiguous():
        raise TypeError("host_view needs a contiguous CUDA tensor from managed_empty")
    raw = (ctypes.c_uint8 * (t.numel() * t.element_size())).from_address(t.data_ptr())
    raw.keep_alive = t  # the array's base keeps the tensor, hence the allocation, alive
    np_dtype = torch.empty((), dtype=t.dtype).numpy().dtype
    return np.ctypeslib.as_array(raw).view(np_dtype).reshape(t.shape)


class PageManager:
    """The managed tensors of one optimizer and where we last sent them.

    ``page_in(tensors)`` prefetches those that are on the host to the GPU; ``page_out()`` sends
    every GPU-resident one to the host. ``bytes_paged_in``/``bytes_paged_out`` count the bytes
    we asked to move (the driver may also evict pages by itself under memory pressure).
    """

    def __init__(self):
        self._where: dict[int, tuple[torch.Tensor, str]] = {}  # data_ptr -> (tensor, "cuda"|"cpu")
        self.bytes_paged_in = 0
        self.bytes_paged_out = 0

    def register(self, t: torch.Tensor, where="cuda") -> None:
        self._where[t.data_ptr()] = (t, where)

    def clear(self) -> None:
        self._where.clear()

    def _move(self, tensors, to: str) -> int:
        moved = 0
        for t in tensors:
            entry = self._where.get(t.data_ptr())
            if entry is not None and entry[1] != to and prefetch(t, to):
                self._where[t.data_ptr()] = (t, to)
                moved += t.numel() * t.element_size()
        return moved

    def page_in(self, tensors) -> int:
        """Prefetch ``tensors`` (those we manage and that are on the host) to the GPU."""
        moved = self._move(tensors, "cuda")
        self.bytes_paged_in += moved
        return moved

    def page_out(self) -> int:
        """Send every managed tensor on the GPU to host RAM; returns the bytes requested."""
        moved = self._move([t for t, _ in self._where.values()], "cpu")
        self.bytes_paged_out += moved
        return moved

    @property
    def managed_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t, _ in self._where.values())

    @property
    def resident_bytes(self) -> int:
        """Bytes we last sent to (or created on) the GPU."""
        return sum(t.numel() * t.element_size() for t, w in self._where.values() if w == "cuda")


class PagedAdamW(AdamW):
    """AdamW (minilora.adamw) whose ``exp_avg``/``exp_avg_sq`` live in CUDA managed memory for
    CUDA parameters with ≥ ``min_paged_numel`` elements; each parameter's states are
    prefetched to the GPU right before its update, and ``page_out()`` evicts them all to the
    host. Numbers are exactly those of ``AdamW``. Without CUDA (or ``paged=False``) the states
    stay in ordinary memory; ``paged=True`` then warns once, at construction.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, *,
                 min_paged_numel=MIN_PAGED_NUMEL, paged=True, foreach=None):
        min_paged_numel = check_int(min_paged_numel, "min_paged_numel", 0)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=foreach)
        self.min_paged_numel = min_paged_numel
        self.pages = PageManager()
        reason = None
        if paged:
            _, reason = runtime_or_reason()
            if reason is None and not any(p.is_cuda for g in self.param_groups for p in g["params"]):
                reason = "no parameter is on a CUDA device"
            if reason is not None:
                warnings.warn(f"PagedAdamW: paging needs CUDA ({reason}); optimizer states stay in ordinary "
                              "memory (numbers are unchanged). Pass paged=False to silence this.",
                              RuntimeWarning, stacklevel=2)
        self.paging = bool(paged) and reason is None

    def _pages(self, p: torch.Tensor) -> bool:
        return self.paging and p.is_cuda and p.numel() >= self.min_paged_numel

    def new_state_buffer(self, p: torch.Tensor) -> torch.Tensor:
        if not self._pages(p):
            return super().new_state_buffer(p)
        buffer = managed_empty(p.shape, p.dtype, p.device).zero_()  # zeroed by a GPU kernel: resident
        self.pages.register(buffer, "cuda")
        return buffer

    def update_chunks(self, params: list) -> list[list]:
        # paged tensors one by one (prefetch, update), the small ones together
        small = [p for p in params if not self._pages(p)]
        return [[p] for p in params if self._pages(p)] + (super().update_chunks(small) if small else [])

    def before_update(self, params: list) -> None:
        if self.paging:
            self.pages.page_in([self.state[p][k] for p in params for k in STATE_KEYS])

    def page_out(self) -> int:
        """Evict every paged state to host RAM (asynchronous, current stream); returns bytes."""
        return self.pages.page_out()

    @property
    def bytes_paged_in(self) -> int:
        return self.pages.bytes_paged_in

    @property
    def bytes_paged_out(self) -> int:
        return self.pages.bytes_paged_out

    def state_bytes(self) -> int:
        """Bytes of all ``exp_avg``/``exp_avg_sq`` tensors, paged or not."""
        return state_bytes(self)

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's loader (which casts states to each parameter's device and dtype), then the
        big states are copied back into managed memory."""
        super().load_state_dict(state_dict)
        self.pages.clear()
        for p, state in self.state.items():
            if self._pages(p):
                for k in STATE_KEYS:
                    if k in state:
                        state[k] = self.new_state_buffer(p).copy_(state[k])
