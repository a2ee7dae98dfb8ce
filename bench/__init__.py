"""Benchmark harness for the gateway: ``.venv/bin/python -m bench.run [--quick]`` (see bench/README.md)."""
