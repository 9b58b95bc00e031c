"""Kernel and throughput benchmarks; see README.md. Not installed: run from the repository."""
