"""Benchmarks of selectserver against its peers: see benchmarks/run.py and docs/benchmarks.md."""
