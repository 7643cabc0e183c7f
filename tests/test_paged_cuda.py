"""minilora.paged.cuda: the ctypes binding of the CUDA runtime, exercised with a stand-in
libcudart on any machine, and the discovery of libcudart."""

import ctypes

import pytest
import torch

from minilora.paged import cuda as cr

HAS_CUDA = torch.cuda.is_available()


def test_runtime_reads_the_runtime_version(fake_cudart):
    assert cr.CudaRuntime(fake_cudart(malloc_error=2)).version == 12040


def test_a_failed_call_raises_naming_the_call_and_the_error(fake_cudart):
    rt = cr.CudaRuntime(fake_cudart(malloc_error=2))
    expected = r"cudaMallocManaged\(64 bytes\) failed: cudaErrorMemoryAllocation \(2\)"
    with pytest.raises(RuntimeError, match=expected):
        rt.malloc_managed(64)


@pytest.mark.parametrize("version, has_v2", [(12040, False), (12080, True), (13000, False), (13010, True)])
def test_prefetch_uses_the_api_of_the_runtime_version(fake_cudart, version, has_v2):
    lib = fake_cudart(version=version)
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


def test_mem_location_struct_is_8_bytes():
    assert isinstance(ctypes.sizeof(cr.MemLocation), int) and ctypes.sizeof(cr.MemLocation) == 8


# --- finding libcudart ------------------------------------------------------------------------

def test_loaded_libraries_finds_libcudart_in_proc_maps():
    maps = ("7f00-7f10 r-xp 00000000 08:01 123 /opt/x/nvidia/cuda_runtime/lib/libcudart.so.12\n"
            "7f10-7f20 r--p 00000000 08:01 123 /opt/x/nvidia/cuda_runtime/lib/libcudart.so.12\n"
            "7f20-7f30 rw-p 00000000 00:00 0 \n"
            "7f30-7f40 r-xp 00000000 08:01 9 /usr/lib/libcudart_helper.txt\n"
            "7f40-7f50 r-xp 00000000 08:01 7 /my dir/libcudart-abc123.so.11.0\n")
    assert cr.loaded_libraries(maps) == ["/opt/x/nvidia/cuda_runtime/lib/libcudart.so.12",
                                         "/my dir/libcudart-abc123.so.11.0"]


def test_candidate_paths_is_a_list():
    assert isinstance(cr.candidate_paths(), list)


def test_runtime_or_reason_gives_exactly_one():
    runtime, reason = cr.runtime_or_reason()
    assert (runtime is None) == (reason is not None)


@pytest.mark.skipif(HAS_CUDA, reason="checks the reason given where CUDA is missing")
def test_the_reason_without_cuda_mentions_cuda():
    _, reason = cr.runtime_or_reason()
    assert "CUDA" in reason
