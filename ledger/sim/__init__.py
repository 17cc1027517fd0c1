"""The simulator: local worker processes that stand in for a real fleet, and the demo.

Nothing here is imported by a production command unless `--driver local` is
chosen; it exists so the demo and the tests drive real processes and signals.
"""
