"""Throughput and memory benchmarks and the baselines they compare with (re-implemented PaddleRec
pipelines, PaddleRec's own code): measuring code, kept out of the runtime packages tools/ and models/."""
