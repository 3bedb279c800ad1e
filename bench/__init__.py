"""Benchmarks (`python -m bench.<name>`); not part of the deployed package."""
