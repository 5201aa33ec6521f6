"""MetaEmb's generator training and cold-start + warm-up evaluation (Pan et al., SIGIR 2019):

    python tools/trainer.py -m models/rank/metaemb/config.yaml                        # 1. pre-train the base
    python models/rank/metaemb/infer_warmup.py -m models/rank/metaemb/config.yaml     # 2. generator, cold, warm-up
    python models/rank/metaemb/infer_warmup.py -m models/rank/metaemb/config.yaml --seeds 3   # mean +- std

This is tools/infer.py, which evaluates every cold-start model this way (the protocol:
models/common/coldstart.py); the same command with tools/infer.py gives the same result.
"""
import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools", "infer.py"),
                   run_name="__main__")
