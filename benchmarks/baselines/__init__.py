"""Baselines the benchmarks run beside our code."""
