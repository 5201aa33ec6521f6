"""Model-specific benchmarks, one per model folder name; benchmarks/benchmark.py runs the model's one."""
