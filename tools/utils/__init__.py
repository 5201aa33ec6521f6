"""Runner utilities. ``prepare_process()``, called by every entry point before paddle is imported,
tunes the process for paddle's CPU math (``_pick_mkl_code_path``, ``_keep_freed_memory``) and
silences paddle's import-time ccache warning; importing this package changes nothing."""
import ctypes
import os
import sys
import warnings

# MKL_DEBUG_CPU_TYPE values of MKL's kernels, best first, with the CPU flags each needs.
MKL_CODE_PATHS = (("7", ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")),  # AVX-512
                  ("5", ("avx2", "fma")))  # AVX2


def mkl_code_path(cpuinfo):
    """The MKL_DEBUG_CPU_TYPE for an AMD CPU described by /proc/cpuinfo text, or None."""
    if "AuthenticAMD" not in cpuinfo:
        return None
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return next((value for value, needed in MKL_CODE_PATHS if flags.issuperset(needed)), None)


def _pick_mkl_code_path():
    """paddle's CPU wheel does its matmuls with Intel MKL, which picks a slow generic code path
    on AMD processors. MKL_DEBUG_CPU_TYPE makes it use the kernels the CPU can run: measured on
    an AMD EPYC (Zen 5), a [1024, 896] x [896, 512] matmul took 37 ms by default, 11 ms on the
    AVX2 kernels (5) and 6.2 ms on the AVX-512 ones (7). It must be set before MKL is loaded,
    i.e. before ``import paddle``; a value the user set wins."""
    if "MKL_DEBUG_CPU_TYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read(65536)
    except OSError:
        return
    value = mkl_code_path(info)
    if value:
        os.environ["MKL_DEBUG_CPU_TYPE"] = value


# glibc mallopt parameters and the values _keep_freed_memory sets: never trim the heap (1 GiB
# threshold); serve every block from the heap, none from mmap (raising the mmap threshold would
# not do: glibc caps it at 32 MiB, and a large table's dense gradient would stay a fresh mmap).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
MALLOPT_SETTINGS = ((M_TRIM_THRESHOLD, 1 << 30), (M_MMAP_MAX, 0))


def _keep_freed_memory(libc=None):
    """Let glibc keep freed memory for reuse instead of returning it to the kernel.

    Paddle's CPU tensors come from malloc. With glibc's defaults, large blocks are fresh mmaps
    (until a dynamic threshold has grown) and the free top of the heap is returned to the kernel
    once it exceeds twice that threshold, so every meta-step faults its memory in again: 34-44k
    page faults per MetaHeac second-order meta-step at batch 1024, 1.8-2.0k with these settings;
    and the dense gradient of DeepFM's 840k x 17 table (57 MB, paddle allocates a fresh one per
    step) took 47 ms of a 180 ms step to fault in, 4 ms once served from the heap.
    What that saves depends on what a fault costs on the host: from nothing to ~20% of the step on
    this project's VM (docs/benchmarks.md, "Stop 16"). Peak memory does not change; memory freed
    after the peak stays with the process.
    Returns True when the settings were applied; malloc settings the user made (MALLOC_*
    variables, glibc.malloc tunables) win: nothing is changed."""
    user_set = any(name.startswith("MALLOC_") for name in os.environ) or "glibc.malloc." in os.environ.get(
        "GLIBC_TUNABLES", "")
    if not sys.platform.startswith("linux") or user_set:
        return False
    try:
        libc = libc or ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in MALLOPT_SETTINGS)
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False


def prepare_process():
    """What an entry point does before ``import paddle``: MKL's kernels for this CPU, freed memory
    kept for reuse, and no warning about ccache (paddle's, for compiling custom C++ ops; we compile
    none). Settings made by the user win (see the two functions)."""
    warnings.filterwarnings("ignore", message="No ccache found")
    _pick_mkl_code_path()
    _keep_freed_memory()
