"""Read models rebuilt from the ledger: version history, last-good and fleet state.

`Projections` is the Python API; the rules they apply live in `ledger.rules`.
"""

from projections.follow import LedgerWaiter, ledger_waiter
from projections.runner import Projections, default_path, views_location

__all__ = ["LedgerWaiter", "Projections", "default_path", "ledger_waiter", "views_location"]
