"""Runner utilities. Importing this package before paddle tunes the process for paddle's CPU
math (see ``_prefer_avx2_mkl``) and silences paddle's import-time ccache warning."""
import os
import warnings

# PaddlePaddle warns at import that ccache (for compiling custom C++ ops) is missing; we compile none.
warnings.filterwarnings("ignore", message="No ccache found")


def _prefer_avx2_mkl():
    """paddle's CPU wheel does its matmuls with Intel MKL, which picks a slow generic code path
    on AMD processors (measured here: 4.2 ms vs 1.6 ms for a 512x351x512 matmul on an AMD EPYC).
    MKL_DEBUG_CPU_TYPE=5 makes it use its AVX2 kernels, which every AVX2-capable AMD CPU runs.
    It must be set before MKL is loaded, i.e. before ``import paddle``; a value the user set wins."""
    if "MKL_DEBUG_CPU_TYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            info = f.read(65536)
    except OSError:
        return
    if "AuthenticAMD" in info and " avx2" in info:
        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"


_prefer_avx2_mkl()
