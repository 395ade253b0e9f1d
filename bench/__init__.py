"""Benchmarks: `baoxue bench` (bench.suite) and standalone scripts."""
