"""Runner utilities. Importing this package before paddle tunes the process for paddle's CPU
math (see ``_pick_mkl_code_path``) and silences paddle's import-time ccache warning."""
import os
import warnings

# PaddlePaddle warns at import that ccache (for compiling custom C++ ops) is missing; we compile none.
warnings.filterwarnings("ignore", message="No ccache found")

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


_pick_mkl_code_path()
