"""Speed and memory benchmarks (``python -m bench.perf.<name>``): scripts, not tests."""
