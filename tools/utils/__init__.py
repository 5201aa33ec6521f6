import warnings

# PaddlePaddle warns at import that ccache (for compiling custom C++ ops) is missing; we compile none.
warnings.filterwarnings("ignore", message="No ccache found")
