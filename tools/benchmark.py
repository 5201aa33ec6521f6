"""The benchmark under the path PaddleRec users and the side-by-side harness
(../shared/bench/rechub/run_rounds.sh) call:

    python tools/benchmark.py -m models/rank/deepfm/config.yaml [--rows N] [--baseline] ...

It is benchmarks/benchmark.py (the code lives there, outside the runtime packages); the same
arguments, the same output.
"""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "benchmark.py"),
                   run_name="__main__")
