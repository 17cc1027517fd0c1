"""Benchmarks of the ledger, run from a checkout (`python -m benchmarks.<name>`); not installed
with the package. See benchmarks/README.md."""
