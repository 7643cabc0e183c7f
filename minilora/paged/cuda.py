"""The few CUDA runtime calls unified memory needs, through ``ctypes`` (no compiled extension).

We bind the very ``libcudart`` that PyTorch loaded, so our allocations live in the same CUDA
context as torch's tensors. Every call's return code is checked: anything but
``cudaSuccess`` (0) becomes a ``RuntimeError`` naming the call and the CUDA error
(``cudaGetErrorName``). Where CUDA cannot be used (a CPU build of torch, no GPU, no
``libcudart``), ``load_runtime()`` raises ``CudaUnavailableError`` whose message says why.

Calls (CUDA Runtime API, "Unified Memory" / "Memory Management" sections):
``cudaMallocManaged``, ``cudaFree``, ``cudaMemPrefetchAsync`` (CUDA <= 12: destination is a
device ordinal, host = ``cudaCpuDeviceId`` = -1; CUDA >= 13: a ``cudaMemLocation`` struct plus
flags), ``cudaDeviceGetAttribute``, ``cudaRuntimeGetVersion``. What torch already offers
(``torch.cuda.mem_get_info``, ``torch.cuda.synchronize``) is used from torch.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys
from pathlib import Path

CUDA_SUCCESS = 0
CUDA_MEM_ATTACH_GLOBAL = 1  # cudaMemAttachGlobal: any stream on any device may touch it
CUDA_CPU_DEVICE_ID = -1  # cudaCpuDeviceId (the host, CUDA <= 12 prefetch API)
ATTR_CONCURRENT_MANAGED_ACCESS = 89  # cudaDevAttrConcurrentManagedAccess
LOCATION_DEVICE, LOCATION_HOST = 1, 2  # cudaMemLocationTypeDevice / cudaMemLocationTypeHost
LOCATION_API_VERSION = 13000  # cudaMemPrefetchAsync takes a cudaMemLocation from CUDA 13.0 on


class CudaUnavailableError(RuntimeError):
    """CUDA cannot be used here; the message says why (CPU-only torch, no GPU, no libcudart)."""


class MemLocation(ctypes.Structure):
    """``struct cudaMemLocation { enum cudaMemLocationType type; int id; }`` (driver_types.h)."""

    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]


def loaded_libraries(maps_text: str) -> list[str]:
    """Paths of the ``libcudart`` shared objects in a ``/proc/<pid>/maps`` listing, in order."""
    found = []
    for line in maps_text.splitlines():
        fields = line.split(maxsplit=5)  # address perms offset dev inode [path]
        path = fields[5].strip() if len(fields) == 6 else ""
        if os.path.basename(path).startswith("libcudart") and ".so" in path and path not in found:
            found.append(path)
    return found


def candidate_paths() -> list[str]:
    """Where ``libcudart`` may be: what this process has mapped (Linux), then the copies that
    ship with torch (``torch/lib``) or the NVIDIA wheels (``nvidia/*/lib``), newest name first."""
    paths = []
    try:
        paths += loaded_libraries(Path("/proc/self/maps").read_text())
    except OSError:
        pass  # not Linux
    import torch

    roots = [Path(torch.__file__).parent / "lib"]
    roots += [Path(p) / "nvidia" for p in sys.path if (Path(p) / "nvidia").is_dir()]
    patterns = ("libcudart*.so*", "*/lib/libcudart*.so*", "cudart64_*.dll", "*/bin/cudart64_*.dll")
    for root in roots:
        for pattern in patterns:
            paths += sorted(glob.glob(str(root / pattern)), reverse=True)
    return list(dict.fromkeys(paths))


def unavailable_reason() -> str | None:
    """Why this process cannot use CUDA, or None if torch can see a GPU."""
    import torch

    if torch.version.cuda is None:
        return f"this PyTorch build ({torch.__version__}) has no CUDA support (torch.version.cuda is None)"
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} was built with CUDA {torch.version.cuda} but sees no CUDA GPU"
    return None


class CudaRuntime:
    """Checked wrappers around the runtime functions; ``lib`` is a ``ctypes.CDLL`` (or a
    stand-in with the same functions, as the CPU tests use)."""

    def __init__(self, lib, path: str = "<test>"):
        self.lib, self.path = lib, path
        if isinstance(lib, ctypes.CDLL):
            self._declare()
        self.version = self._out_int("cudaRuntimeGetVersion")

    def _declare(self) -> None:
        c = ctypes
        sig = {
            "cudaGetErrorName": (c.c_char_p, [c.c_int]),
            "cudaRuntimeGetVersion": (c.c_int, [c.POINTER(c.c_int)]),
            "cudaMallocManaged": (c.c_int, [c.POINTER(c.c_void_p), c.c_size_t, c.c_uint]),
            "cudaFree": (c.c_int, [c.c_void_p]),
            "cudaDeviceGetAttribute": (c.c_int, [c.POINTER(c.c_int), c.c_int, c.c_int]),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(self.lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        # the prefetch signature changed in CUDA 13.0 (set once we know the version)
        self._prefetch_declared = False

    def error_name(self, code: int) -> str:
        """``cudaGetErrorName(code)``, e.g. ``"cudaErrorMemoryAllocation"``."""
        name = self.lib.cudaGetErrorName(code)
        return name.decode() if isinstance(name, bytes) else str(name)

    def check(self, code: int, call: str) -> None:
        """Raise ``RuntimeError("<call> failed: <cudaErrorName> (<code>)")`` unless code is 0."""
        if code != CUDA_SUCCESS:
            raise RuntimeError(f"{call} failed: {self.error_name(code)} ({code})")

    def _out_int(self, name: str, *args) -> int:
        value = ctypes.c_int()
        self.check(getattr(self.lib, name)(ctypes.byref(value), *args), name)
        return value.value

    def concurrent_managed_access(self, device: int) -> bool:
        """``cudaDevAttrConcurrentManagedAccess``: can the GPU and CPU share managed pages at
        once (needed for prefetching; 0 on Windows/WSL and pre-Pascal GPUs)."""
        return bool(self._out_int("cudaDeviceGetAttribute", ATTR_CONCURRENT_MANAGED_ACCESS, device))

    def malloc_managed(self, nbytes: int) -> int:
        """``cudaMallocManaged(&ptr, nbytes, cudaMemAttachGlobal)``; returns the address."""
        ptr = ctypes.c_void_p()
        code = self.lib.cudaMallocManaged(ctypes.byref(ptr), nbytes, CUDA_MEM_ATTACH_GLOBAL)
        self.check(code, f"cudaMallocManaged({nbytes} bytes)")
        if not ptr.value:
            raise RuntimeError(f"cudaMallocManaged({nbytes} bytes) returned a null pointer")
        return ptr.value

    def free(self, ptr: int) -> None:
        """``cudaFree(ptr)`` (implicitly synchronises the device)."""
        self.check(self.lib.cudaFree(ctypes.c_void_p(ptr)), f"cudaFree({ptr:#x})")

    def prefetch(self, ptr: int, nbytes: int, device: int, stream: int = 0) -> None:
        """``cudaMemPrefetchAsync`` of ``[ptr, ptr + nbytes)`` to ``device`` (-1 = the host), queued
        on ``stream``. CUDA >= 13: ``(ptr, count, cudaMemLocation{type, id}, flags=0, stream)``
        (``cudaMemPrefetchAsync_v2`` has that signature wherever it exists, so it is preferred);
        before: ``(ptr, count, dstDevice, stream)``."""
        new_api = self.version >= LOCATION_API_VERSION
        v2 = new_api and hasattr(self.lib, "cudaMemPrefetchAsync_v2")
        fn = self.lib.cudaMemPrefetchAsync_v2 if v2 else self.lib.cudaMemPrefetchAsync
        if isinstance(self.lib, ctypes.CDLL) and not self._prefetch_declared:
            dst = [MemLocation, ctypes.c_uint] if new_api else [ctypes.c_int]
            fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_size_t, *dst, ctypes.c_void_p]
            self._prefetch_declared = True
        if new_api:
            where = MemLocation(LOCATION_HOST, 0) if device < 0 else MemLocation(LOCATION_DEVICE, device)
            code = fn(ctypes.c_void_p(ptr), nbytes, where, 0, ctypes.c_void_p(stream))
        else:
            code = fn(ctypes.c_void_p(ptr), nbytes, CUDA_CPU_DEVICE_ID if device < 0 else device,
                      ctypes.c_void_p(stream))
        self.check(code, f"cudaMemPrefetchAsync({nbytes} bytes -> {'host' if device < 0 else device})")


@functools.lru_cache(maxsize=1)
def load_runtime() -> CudaRuntime:
    """The ``CudaRuntime`` over the ``libcudart`` PyTorch uses (loaded once per process).

    Raises ``CudaUnavailableError`` with the reason when CUDA cannot be used. torch's CUDA
    context is initialised first, so the library is mapped and we share torch's context.
    """
    reason = unavailable_reason()
    if reason is not None:
        raise CudaUnavailableError(reason)
    import torch

    torch.cuda.init()
    tried = []
    for path in candidate_paths():
        try:
            return CudaRuntime(ctypes.CDLL(path), path)
        except (OSError, AttributeError, RuntimeError) as e:
            tried.append(f"{path}: {e}")
    raise CudaUnavailableError(
        "no usable libcudart found (looked in this process's mapped libraries, torch/lib and the "
        "nvidia-* wheels); tried: " + ("; ".join(tried) or "nothing found"))


def runtime_or_reason() -> tuple[CudaRuntime | None, str | None]:
    """``(runtime, None)`` where CUDA works, else ``(None, reason)``; never raises."""
    try:
        return load_runtime(), None
    except CudaUnavailableError as e:
        return None, str(e)
