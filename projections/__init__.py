"""Read models rebuilt from the ledger: version history, last-good and fleet state.

`Projections` is the Python API; the rules they apply live in `ledger.rules`.
"""

from projections.runner import Projections, default_path

__all__ = ["Projections", "default_path"]
