"""Benchmarks: each prints figures and writes a JSON report under bench/results/."""
