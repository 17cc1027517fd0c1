"""The runner and Python API: catch up, rebuild, and answer from the read models.

`Projections` follows the ledger's notification log from its tracking position
(SQLite has no subscriptions, so it reads pages on demand), and catches up
before every answer, so an answer is never behind the ledger as it was when the
question was asked. Answers read only the views: their cost does not grow with
the number of records. A views file that is missing, damaged, of another
format, or of another ledger is rebuilt from the ledger, with a notice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from eventsourcing.persistence import IntegrityError, PersistenceError, Tracking

from ledger.api import Ledger
from ledger.chain import unsigned_hash
from ledger.errors import NotInitializedError, StorageError, UnknownFleetError
from ledger.events import check_fleet_name
from ledger.rules import FleetHistory, LastGood, Version
from ledger.store import KEY_CHAIN, LedgerApplication, Store, default_db, is_postgres
from projections.integrity import LinkFaultError
from projections.projection import FleetProjection, load_state
from projections.sqlite_views import open_sqlite_views
from projections.views import FORMAT, LedgerViews, ViewsDamagedError

PAGE_SIZE = 5000
BATCH_SIZE = 20_000
MAX_ATTEMPTS = 5
APPLICATION = LedgerApplication.name

Notice = Callable[[str], None]
T = TypeVar("T")

_log = logging.getLogger("projections")


def default_path(db: str) -> Path:
    """Where the views live unless told: beside the ledger file (or LEDGER_PROJECTIONS)."""
    configured = os.environ.get("LEDGER_PROJECTIONS")
    if configured:
        return Path(configured)
    if is_postgres(db):
        raise StorageError(
            "a PostgreSQL ledger has no file to put the views beside: give --projections PATH "
            "(or LEDGER_PROJECTIONS)")
    return Path(f"{db}.projections.db")


def ledger_identity(store: Store) -> str:
    """The hash of the key chain's genesis record: which ledger the views were built from."""
    try:
        first = store.page(KEY_CHAIN, 0, 1)
    except PersistenceError as exc:
        raise StorageError(f"cannot read ledger {store.label}: {exc}") from None
    if not first:
        raise NotInitializedError(f"{store.label} holds no ledger (run `ledger init`)")
    return str(orjson.loads(first[0].state)["hash"])


def _delete_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class Projections:
    """Version history, last-good and fleet state of a ledger, kept caught up.

    Open with `Projections.open(db)` (or around an open `Store`), ask
    `history`, `last_good`, `fleet` or `state`; each first applies any records
    the views have not seen. `rebuild()` starts the views again from nothing.
    """

    def __init__(self, store: Store, path: str | os.PathLike[str] | None = None, *,
                 notice: Notice | None = None, batch_size: int = BATCH_SIZE,
                 owns_store: bool = False):
        self.store = store
        self.path = Path(path) if path is not None else default_path(store.db)
        self.notice: Notice = notice if notice is not None else _log.warning
        self.batch_size = batch_size
        self._owns_store = owns_store
        self._ledger_id = ledger_identity(store)
        self.views: LedgerViews
        self.projection: FleetProjection
        self._open()

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None, path: str | os.PathLike[str] | None = None,
             *, notice: Notice | None = None) -> Projections:
        """Open the ledger at `db` read-only, and its views (default: beside it)."""
        ledger = Ledger.open(db if db is not None else default_db(), writable=False)
        try:
            return cls(ledger.store, path, notice=notice, owns_store=True)
        except BaseException:
            ledger.close()
            raise

    def close(self) -> None:
        self.views.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Projections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the views file ---------------------------------------------------------------

    def _open(self) -> None:
        existed = self.path.exists()
        try:
            self.views = open_sqlite_views(self.path)
            self.projection = FleetProjection(self.views)
            meta = self.views.meta()
            if meta is None:
                if existed:
                    self.notice(f"projection file {self.path} is empty; building it from the ledger")
                else:
                    self.notice(f"no projection file at {self.path}; building it from the ledger")
                self.views.reset(self._ledger_id, APPLICATION)
            elif meta.format != FORMAT:
                self.notice(f"projection file {self.path} has format {meta.format!r}, not {FORMAT!r}; "
                            "rebuilding it from the ledger")
                self.views.reset(self._ledger_id, APPLICATION)
            elif meta.ledger_id != self._ledger_id:
                self.notice(f"projection file {self.path} was built from another ledger; "
                            "rebuilding it from this one")
                self.views.reset(self._ledger_id, APPLICATION)
        except ViewsDamagedError as exc:
            self._recreate(f"is damaged ({exc})")

    def _recreate(self, reason: str) -> None:
        """Replace a damaged views file with an empty one (filled by the next catch-up)."""
        self.notice(f"projection file {self.path} {reason}; rebuilding it from the ledger")
        views = getattr(self, "views", None)
        if views is not None:
            views.close()
        _delete_file(self.path)
        try:
            self.views = open_sqlite_views(self.path)
            self.views.reset(self._ledger_id, APPLICATION)
        except ViewsDamagedError as exc:
            raise StorageError(f"cannot rebuild projection file {self.path}: {exc}") from None
        self.projection = FleetProjection(self.views)

    def _guarded(self, action: Callable[[], T]) -> T:
        """Run `action`; on a lost race reload and retry; on damage rebuild and retry."""
        for _attempt in range(MAX_ATTEMPTS):
            try:
                return action()
            except IntegrityError:
                # Another process moved the views on (or rebuilt them): start from what it wrote.
                self.projection.forget()
                try:
                    self.views.meta()
                except ViewsDamagedError as exc:
                    self._recreate(f"is damaged ({exc})")
            except ViewsDamagedError as exc:
                self._recreate(f"is damaged ({exc})")
        raise StorageError(f"projection file {self.path}: gave up after {MAX_ATTEMPTS} attempts "
                           "(other processes keep rebuilding it?)")

    # -- following the ledger ---------------------------------------------------------

    def position(self) -> int:
        """Notification id of the last ledger record the views reflect."""
        return self._guarded(self._position)

    def _position(self) -> int:
        return self.views.max_tracking_id(APPLICATION) or 0

    def _ledger(self, read: Callable[[], T]) -> T:
        """Read the ledger; its storage errors are the ledger's, not the views'."""
        try:
            return read()
        except PersistenceError as exc:
            raise StorageError(f"cannot read ledger {self.store.label}: {exc}") from None

    def _ledger_head(self) -> int:
        return self._ledger(self.store.max_notification_id)

    def _read(self, after: int, limit: int) -> list[Any]:
        page = self._ledger(lambda: self.store.recorder.select_notifications(
            after, limit, inclusive_of_start=False))
        mapper = self.store.app.mapper
        return [(n.id, mapper.to_domain_event(n)) for n in page]

    def catch_up(self) -> int:
        """Apply every ledger record the views have not seen; return how many fleet records."""
        return self._guarded(self._catch_up)

    def rebuild(self) -> int:
        """Empty the views and build them again from the first record."""

        def action() -> int:
            self.projection.forget()
            self.views.reset(self._ledger_id, APPLICATION)
            return self._catch_up()

        return self._guarded(action)

    def _catch_up(self) -> int:
        position = self._position()
        self.projection.follow(position)  # another process may have moved the views on
        head = self._ledger_head()
        if position > head:
            raise ViewsDamagedError(f"is ahead of the ledger (position {position}, ledger {head})")
        if position == head:
            return 0
        applied = 0
        while True:
            batch: list[Any] = []
            last = position
            while len(batch) < self.batch_size:
                page = self._read(last, min(PAGE_SIZE, self.batch_size - len(batch)))
                if not page:
                    break
                batch.extend(event for _, event in page)
                last = page[-1][0]
            if not batch:
                return applied
            try:
                applied += self.projection.process_batch(batch, Tracking(APPLICATION, last))
            except LinkFaultError as exc:
                if not self._ledger_agrees(exc):
                    raise ViewsDamagedError(
                        f"disagrees with the ledger about fleet {exc.fault.chain} "
                        f"at seq {exc.head_seq}") from None
                raise
            position = last

    def _ledger_agrees(self, exc: LinkFaultError) -> bool:
        """Whether the head the views hold is the ledger's: if so, the link fault is real."""
        fleet, head_seq = exc.fault.chain, exc.head_seq
        if head_seq > 0:
            rows = self._ledger(lambda: self.store.page(fleet, head_seq - 1, 1))
            if not rows or rows[0].originator_version != head_seq:
                return False
            if unsigned_hash(orjson.loads(rows[0].state)) != exc.head_hash:
                return False
        if exc.fault.check == "seq":
            following = self._ledger(lambda: self.store.page(fleet, head_seq, 1))
            found = following[0].originator_version if following else None
            return found is not None and found > head_seq + 1
        return True

    # -- answers ----------------------------------------------------------------------

    def _answer(self, fleet: str, read: Callable[[], T | None]) -> T:
        check_fleet_name(fleet)

        def action() -> T | None:
            self._catch_up()
            value = read()
            if value is None and self._ledger(lambda: self.store.last(fleet)) is not None:
                raise ViewsDamagedError(f"lacks rows of fleet {fleet!r}, which has ledger records")
            return value

        value = self._guarded(action)
        if value is None:
            raise UnknownFleetError(f"fleet {fleet!r} has no records in {self.store.label}")
        return value

    def _decode(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ViewsDamagedError(f"holds an unreadable row ({exc})") from None

    def fleets(self) -> list[str]:
        """Names of the fleets with records, in name order."""
        return self._guarded(lambda: (self._catch_up(), self.views.fleet_names())[1])

    def history(self, fleet: str) -> dict[str, Any]:
        """The fleet's head, current version, rollout in flight, and every version's entry."""

        def read() -> dict[str, Any] | None:
            header = self.views.header(fleet)
            if header is None:
                return None
            versions = [self._decode(row) for row in self.views.history_rows(fleet)]
            return {"fleet": fleet, **self._decode(header), "versions": versions}

        return self._answer(fleet, read)

    def last_good(self, fleet: str, leaving: str | None = None, *,
                  for_rollback: bool = False) -> LastGood | None:
        """The newest good version other than `leaving` (if given).

        `for_rollback=True` leaves the fleet's current version: the version a
        rollback returns to by default. Reads one stored row (or one index
        lookup for another `leaving`), whatever the size of the ledger.
        """

        def read() -> tuple[LastGood | None] | None:
            row = self.views.last_good_row(fleet)
            if row is None:
                return None
            stored = self._decode(row)
            if for_rollback or (leaving is not None and leaving == stored["current"]):
                answer = stored["rollback_target"]
            elif leaving is None:
                answer = stored["last_good"]
            else:
                entry = self.views.newest_good_row(fleet, leaving)
                if entry is None:
                    return (None,)
                return (LastGood.of(Version.from_dict(self._decode(entry)), leaving),)
            return (LastGood.from_dict(answer) if answer is not None else None,)

        return self._answer(fleet, read)[0]

    def last_good_answer(self, fleet: str) -> dict[str, Any]:
        """The stored last-good row: head seq, current version, last-good and rollback target."""
        return self._answer(fleet, lambda: self._read_row(self.views.last_good_row(fleet)))

    def fleet(self, fleet: str) -> dict[str, Any]:
        """Live workers, the newest exits, and the summary of the fleet."""
        return self._answer(fleet, lambda: self._read_row(self.views.fleet_state_row(fleet)))

    def state(self, fleet: str) -> FleetHistory:
        """The rules' state of the fleet at its head (`head_seq`), for validating commands."""
        return self._answer(fleet, lambda: load_state(self.views, fleet))

    def fleet_state(self, fleet: str) -> FleetHistory:
        """`state`, under the name the rollback command's `StateSource` asks for."""
        return self.state(fleet)

    def _read_row(self, row: bytes | None) -> dict[str, Any] | None:
        return None if row is None else dict(self._decode(row))

