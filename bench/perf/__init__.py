"""Benchmarks for speed and memory (not tests): python -m bench.perf.<name>."""
