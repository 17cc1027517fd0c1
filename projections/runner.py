"""The runner and Python API: catch up, rebuild, follow, and answer from the read models.

`Projections` follows the ledger's notification log from its tracking position
in batches, and catches up before every answer, so an answer is never behind
the ledger as it was when the question was asked. Answers read only the
views: their cost does not grow with the number of records. `follow()` keeps
the views caught up as records are committed (woken by PostgreSQL's
LISTEN/NOTIFY, or by polling on SQLite).

Where the views live: beside a SQLite ledger in a file of their own; in the
ledger's own database and schema (tables `deployledger_views_*`) for a
PostgreSQL ledger; or wherever `--projections` / LEDGER_PROJECTIONS says (a
SQLite path or a `postgresql://` URL, whose `views=NAME` query parameter
names another set of tables). Views that are missing, damaged, of another
format, or of another ledger are rebuilt from the ledger, with a notice: a
file is deleted and made again, PostgreSQL tables are dropped and created
again in one transaction.

Notification ids need not be contiguous (PostgreSQL sequences skip the ids of
rolled-back inserts): the runner reads "every record after my position" and
never waits for a particular id.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Event
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson
from eventsourcing.persistence import IntegrityError, Tracking

from ledger.api import Ledger
from ledger.chain import unsigned_hash
from ledger.errors import FaultCheck, NotInitializedError, StorageError, UnknownFleetError
from ledger.events import check_fleet_name
from ledger.postgres_url import postgres_env, redact
from ledger.rules import FleetHistory, LastGood, Version
from ledger.store import (
    KEY_CHAIN,
    LedgerApplication,
    Store,
    default_db,
    is_postgres,
    storage_errors,
    storage_fault,
    stored_bytes,
)
from projections.follow import LedgerWaiter, ledger_waiter
from projections.integrity import LinkFaultError
from projections.projection import FleetProjection, load_state
from projections.sqlite_views import open_sqlite_views
from projections.views import FORMAT, LedgerViews, ViewsDamagedError

if TYPE_CHECKING:  # imported when views live on PostgreSQL: a SQLite install has no psycopg
    from projections.postgres_views import PostgresLedgerViews

PAGE_SIZE = 5000
BATCH_SIZE = 20_000
#: Rebuilds after damage before giving up (another process keeps damaging or resetting them?).
MAX_ATTEMPTS = 5
#: Lost races before giving up. Each one means another runner moved the views on (so a
#: catch-up to a fixed head ends), or reset them; a short random pause spreads racers out.
MAX_RACES = 100
APPLICATION = LedgerApplication.name
#: `follow()` reads the ledger's head at least this often, notification or not.
IDLE_S = 5.0

Notice = Callable[[str], None]
T = TypeVar("T")

_log = logging.getLogger("projections")


def default_path(db: str) -> Path:
    """The views file of a SQLite ledger unless told: beside it."""
    if is_postgres(db):
        raise StorageError("a PostgreSQL ledger keeps its views in its own database, not in a file "
                           "(see `views_location`)")
    return Path(f"{db}.projections.db")


def views_location(db: str, configured: str | os.PathLike[str] | None = None) -> str:
    """Where the views of the ledger at `db` live: `configured` (a SQLite path or a
    `postgresql://` URL; the CLI passes LEDGER_PROJECTIONS), else the PostgreSQL ledger's
    own database and schema, else a file beside the SQLite ledger."""
    if configured is not None:
        return str(configured)
    if is_postgres(db):
        return db
    return f"{db}.projections.db"


def _can_write_file(path: Path) -> bool:
    """Whether a SQLite file can be written at `path` (it and its -wal/-shm files beside it)."""
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def _refused_writes(exc: StorageError) -> bool:
    text = str(exc)
    return "permission denied" in text or "read-only" in text


def _same_database(a: str, b: str) -> bool:
    keys = ("POSTGRES_DBNAME", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD")
    env_a, env_b = postgres_env(a), postgres_env(b)
    return all(env_a.get(k) == env_b.get(k) for k in keys) and (
        (env_a.get("POSTGRES_SCHEMA") or "public") == (env_b.get("POSTGRES_SCHEMA") or "public"))


def ledger_identity(store: Store) -> str:
    """The hash of the key chain's genesis record: which ledger the views were built from."""
    first = store.page(KEY_CHAIN, 0, 1)
    if not first:
        raise NotInitializedError(f"{store.label} holds no ledger (run `ledger init`)")
    return str(orjson.loads(stored_bytes(first[0].state))["hash"])


def _delete_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class _Home(ABC):
    """Where the views live, and how to start them again from nothing."""

    label: str  # "projection file X" / "projection tables P* in URL": the subject of notices
    where: str  # what `ledger projections` prints after its figures
    it, is_, has, was = "it", "is", "has", "was"

    @abstractmethod
    def open(self) -> tuple[LedgerViews, bool]:
        """The views (tables created if need be), and whether they existed before."""

    @abstractmethod
    def recreate(self, views: LedgerViews | None, ledger_id: str) -> LedgerViews:
        """Empty views in place of damaged ones, reset for `ledger_id`."""


class _FileHome(_Home):
    """A SQLite file of the views' own: deleted and made again when damaged."""

    def __init__(self, path: Path):
        self.path = path
        self.label = f"projection file {path}"
        self.where = str(path)

    def open(self) -> tuple[LedgerViews, bool]:
        existed = self.path.exists()
        return open_sqlite_views(self.path), existed

    def recreate(self, views: LedgerViews | None, ledger_id: str) -> LedgerViews:
        if views is not None:
            views.close()
        _delete_file(self.path)
        try:
            fresh = open_sqlite_views(self.path)
            fresh.reset(ledger_id, APPLICATION)
        except ViewsDamagedError as exc:
            raise StorageError(f"cannot rebuild {self.label}: {exc}") from None
        return fresh


class _PostgresHome(_Home):
    """Tables in a PostgreSQL schema: dropped and created again (one transaction) when damaged."""

    it, is_, has, was = "them", "are", "have", "were"

    def __init__(self, url: str, store: Store):
        from projections.postgres_views import DEFAULT_NAME, check_views_name

        self.url = url
        self.name = check_views_name(parse_qs(urlsplit(url).query).get("views", [DEFAULT_NAME])[0])
        shared = is_postgres(store.db) and _same_database(url, store.db)
        self.datastore = store.recorder.datastore if shared else None
        self.where = f"tables deployledger_{self.name}_* in {redact(url)}"
        self.label = f"projection {self.where}"

    def _open(self, *, create: bool) -> PostgresLedgerViews:
        from projections.postgres_views import open_postgres_views

        return open_postgres_views(self.url, self.name, datastore=self.datastore, create=create)

    def open(self) -> tuple[LedgerViews, bool]:
        views = self._open(create=True)
        return views, bool(views.existed)

    def recreate(self, views: LedgerViews | None, ledger_id: str) -> LedgerViews:
        from projections.postgres_views import PostgresLedgerViews

        fresh = views if isinstance(views, PostgresLedgerViews) else self._open(create=False)
        try:
            fresh.recreate(ledger_id, APPLICATION)
        except ViewsDamagedError as exc:
            raise StorageError(f"cannot rebuild {self.label}: {exc}") from None
        return fresh


MAX_SEQ = 2**53 - 1


class Projections:
    """Version history, last-good and fleet state of a ledger, kept caught up.

    Open with `Projections.open(db)` (or around an open `Store`), ask
    `history`, `last_good`, `fleet` or `state`; each first applies any records
    the views have not seen. `rebuild()` starts the views again from nothing;
    `follow()` keeps them caught up live. One `Projections` is for one thread.
    """

    def __init__(self, store: Store, path: str | os.PathLike[str] | None = None, *,
                 notice: Notice | None = None, batch_size: int = BATCH_SIZE,
                 owns_store: bool = False):
        self.store = store
        self.notice: Notice = notice if notice is not None else _log.warning
        location = views_location(store.db, path)
        defaulted = location in (store.db, f"{store.db}.projections.db")  # not chosen by the user
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if defaulted and not is_postgres(location) and not _can_write_file(Path(location)):
            location = self._scratch_file(f"cannot write projection file {location} (read-only location)")
        self.batch_size = batch_size
        self._owns_store = owns_store
        self._ledger_id = ledger_identity(store)
        self.views: LedgerViews
        self.projection: FleetProjection
        self._seen = 0  # the views' position when the last catch-up ended
        #: Views in the ledger's own PostgreSQL database may be refused to a role that
        #: may only read; then they move to a temporary file (once).
        self._may_move = defaulted and is_postgres(location)
        self._settle(location)
        try:
            self._open()
        except StorageError as exc:
            if not self._move_if_refused(exc):
                raise
            self._open()

    def _move_if_refused(self, exc: StorageError) -> bool:
        """Move the views to a temporary file if `exc` says their database refuses our writes."""
        if not (self._may_move and _refused_writes(exc)):
            return False
        self._may_move = False
        old = getattr(self, "views", None)
        if old is not None:
            old.close()
        self._settle(self._scratch_file(f"cannot write the views in {redact(self.store.db)} "
                                        "(the database refuses this role's writes)"))
        return True

    def _settle(self, location: str) -> None:
        self.home: _Home
        if is_postgres(location):
            self.home = _PostgresHome(location, self.store)
            self.path: Path | None = None
        else:
            self.home = _FileHome(Path(location))
            self.path = Path(location)

    def _scratch_file(self, why: str) -> str:
        """A private temporary views file, built from the ledger and removed on close, for a
        ledger whose own views location cannot be written (a read-only copy or role)."""
        self._scratch = tempfile.TemporaryDirectory(prefix="deploy-ledger-views-")
        self.notice(f"{why}; using a temporary one, built from the ledger for this run")
        return str(Path(self._scratch.name) / "views.db")

    @classmethod
    def open(cls, db: str | os.PathLike[str] | None = None, path: str | os.PathLike[str] | None = None,
             *, notice: Notice | None = None) -> Projections:
        """Open the ledger at `db` read-only, and its views (by default beside a SQLite
        ledger, or in a PostgreSQL ledger's own database and schema)."""
        ledger = Ledger.open(db if db is not None else default_db(), writable=False)
        try:
            return cls.of(ledger, path, notice=notice, owns_store=True)
        except BaseException:
            ledger.close()
            raise

    @classmethod
    def of(cls, ledger: Ledger, path: str | os.PathLike[str] | None = None, *,
           notice: Notice | None = None, owns_store: bool = False) -> Projections:
        """The views of an open ledger, reading its records (closing it too with `owns_store`)."""
        return cls(ledger.store, path, notice=notice, owns_store=owns_store)  # the views read its store

    @property
    def where(self) -> str:
        """Where the views are: a file path, or the tables and their database."""
        return self.home.where

    def close(self) -> None:
        try:
            views = getattr(self, "views", None)
            if views is not None:
                views.close()
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()
            if self._owns_store:
                self.store.close()

    def __enter__(self) -> Projections:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- where the views live ---------------------------------------------------------

    def _open(self) -> None:
        home = self.home
        try:
            self.views, existed = home.open()
            self.projection = FleetProjection(self.views)
            meta = self.views.meta()
            if meta is None:
                if existed:
                    self.notice(f"{home.label} {home.is_} empty; building {home.it} from the ledger")
                elif self._scratch is None and self._ledger(self.store.chains):
                    # (a temporary file was announced already; a ledger with no fleet records
                    # yet has nothing to build, so its first views are no news)
                    self.notice(f"no {home.label}; building {home.it} from the ledger")
                self.views.reset(self._ledger_id, APPLICATION)
            elif meta.format != FORMAT:
                self.notice(f"{home.label} {home.has} format {meta.format!r}, not {FORMAT!r}; "
                            f"rebuilding {home.it} from the ledger")
                self.views.reset(self._ledger_id, APPLICATION)
            elif meta.ledger_id != self._ledger_id:
                self.notice(f"{home.label} {home.was} built from another ledger; "
                            f"rebuilding {home.it} from this one")
                self.views.reset(self._ledger_id, APPLICATION)
        except ViewsDamagedError as exc:
            self._recreate(f"damaged ({exc})")

    def _recreate(self, reason: str) -> None:
        """Replace damaged views with empty ones (filled by the next catch-up)."""
        home = self.home
        self.notice(f"{home.label} {home.is_} {reason}; rebuilding {home.it} from the ledger")
        self.views = home.recreate(getattr(self, "views", None), self._ledger_id)
        self.projection = FleetProjection(self.views)

    def _guarded(self, action: Callable[[], T]) -> T:
        """Run `action`; on a lost race reload and retry; on damage rebuild and retry."""
        damaged = races = 0
        while True:
            try:
                return action()
            except IntegrityError:
                # Another runner moved the views on (or rebuilt them): start from what it wrote.
                races += 1
                if races >= MAX_RACES:
                    raise StorageError(f"{self.home.label}: gave up after losing {races} races "
                                       "with other runners (are they rebuilding in a loop?)") from None
                self.projection.forget()
                time.sleep(random.uniform(0, 0.001 * 2 ** min(races, 5)))
                try:
                    self.views.meta()
                except ViewsDamagedError as exc:
                    self._recreate(f"damaged ({exc})")
            except ViewsDamagedError as exc:
                damaged += 1
                if damaged >= MAX_ATTEMPTS:
                    raise StorageError(f"{self.home.label}: still damaged after {damaged} rebuilds "
                                       f"({exc})") from None
                self._recreate(f"damaged ({exc})")
            except StorageError as exc:
                if not self._move_if_refused(exc):
                    raise
                self._open()  # a private file this time: the action starts again there

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
        except storage_errors() as exc:
            raise storage_fault(exc, self.store.label, "read ledger",
                                server=not self.store.is_sqlite) from None

    def _ledger_head(self) -> int:
        return self._ledger(self.store.max_notification_id)

    def _read(self, after: int, limit: int) -> list[Any]:
        return self._ledger(lambda: self.store.notifications(after, limit))

    def catch_up(self) -> int:
        """Apply every ledger record the views have not seen; return how many fleet records.

        Done once the views reach the ledger's head as it was when called, whoever
        (this runner or another) wrote them there.
        """
        target = self._ledger_head()
        return self._guarded(lambda: self._catch_up(target))

    def rebuild(self) -> int:
        """Empty the views and build them again from the first record."""

        def reset() -> None:
            self.projection.forget()
            self.views.reset(self._ledger_id, APPLICATION)

        self._guarded(reset)
        target = self._ledger_head()
        return self._guarded(lambda: self._catch_up(target))

    def waiter(self) -> LedgerWaiter:
        """A waiter for new ledger records (LISTEN/NOTIFY on PostgreSQL, polling on SQLite).

        `with views.waiter() as w: w.wait(after=views.position(), timeout=5)`.
        """
        return ledger_waiter(self.store)

    def follow(self, stop: Event | None = None, *, timeout: float | None = None,
               on_update: Callable[[int], None] | None = None, idle_s: float = IDLE_S) -> int:
        """Keep the views caught up as records are committed, until `stop` is set or
        `timeout` seconds have passed (with neither, forever). Returns how many fleet
        records were applied.

        It catches up in batches from the views' own position, then waits for the
        next commit: woken by PostgreSQL's NOTIFY (on SQLite, polling), and in any
        case reading the ledger's head every `idle_s` seconds. `on_update(position)`
        is called after every catch-up that moved the views. Waiting compares with
        the ledger's highest notification id, so gaps in the ids never stall it.
        Faults stop it as they stop `catch_up`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        applied = 0
        reported = self.position()
        with self.waiter() as waiter:
            while True:
                applied += self.catch_up()
                position = self.position()
                if on_update is not None and position != reported:
                    on_update(position)
                reported = position
                remaining = idle_s if deadline is None else min(idle_s, deadline - time.monotonic())
                if (stop is not None and stop.is_set()) or remaining <= 0:
                    return applied
                waiter.wait(position, remaining, stop)

    def _catch_up(self, target: int | None = None) -> int:
        """Apply the records after the views' position (none if it is at `target` already)."""
        position = self._seen = self._position()
        self.projection.follow(position)  # another process may have moved the views on
        if position == target:
            return 0
        head = self._ledger_head()
        if position > head:
            raise ViewsDamagedError(f"is ahead of the ledger (position {position}, ledger {head})")
        if position == head or (target is not None and position >= target):
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
                self._check_not_moved(position)
                if not self._ledger_agrees(exc):
                    raise ViewsDamagedError(
                        f"disagrees with the ledger about fleet {exc.fault.chain} "
                        f"at seq {exc.head_seq}") from None
                raise
            position = self._seen = last

    def _check_not_moved(self, position: int) -> None:
        """Raise the lost-race error if another runner wrote the views since `position` was read.

        A fleet's stored state is loaded when a batch first touches it; if another
        runner committed in between, that state is ahead of the batch (or, after a
        reset, behind it) and the records do not link to it. That is a race to
        retry, not damage: the tracking position, written with every state, tells.
        """
        if self._position() != position:
            raise IntegrityError("another runner moved the views on during this batch")

    def _ledger_agrees(self, exc: LinkFaultError) -> bool:
        """Whether the head the views hold is the ledger's: if so, the link fault is real."""
        fleet, head_seq = exc.fault.chain, exc.head_seq
        if head_seq > 0:
            rows = self._ledger(lambda: self.store.page(fleet, head_seq - 1, 1))
            if not rows or rows[0].originator_version != head_seq:
                return False
            if unsigned_hash(orjson.loads(stored_bytes(rows[0].state))) != exc.head_hash:
                return False
        if exc.fault.check is FaultCheck.SEQ:
            following = self._ledger(lambda: self.store.page(fleet, head_seq, 1))
            found = following[0].originator_version if following else None
            return found is not None and found > head_seq + 1
        return True

    # -- answers ----------------------------------------------------------------------

    def _answer(self, fleet: str, read: Callable[[], T | None]) -> T:
        check_fleet_name(fleet)
        target = self._ledger_head()

        def action() -> T | None:
            self._catch_up(target)
            value = read()
            if value is None and self._ledger(lambda: self.store.last(fleet)) is not None:
                self._check_not_moved(self._seen)  # a rebuild elsewhere may have just reset them
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
        target = self._ledger_head()
        return self._guarded(lambda: (self._catch_up(target), self.views.fleet_names())[1])

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

    def decision_state(self, fleet: str, target: str | None = None) -> FleetHistory:
        """The part of the rules' state a rollback decision reads, at a cost that does
        not grow with the fleet's history: the core (current, in flight, workers),
        the target (given, or the stored rollback target), the current version, and
        every version that ranks above the target (each a candidate skipped).

        Over these versions the rules give the same last-good and the same checks as
        over all of them: a version ranked below the target can never win.
        """
        return self._answer(fleet, lambda: self._decision_state(fleet, target))

    def _decision_state(self, fleet: str, target: str | None) -> FleetHistory | None:
        core = self.views.core_state(fleet)
        stored = self.views.last_good_row(fleet)
        if core is None or stored is None:
            return None
        data = self._decode(core)
        answer = self._decode(stored).get("rollback_target")
        name = target if target is not None else (answer["version"] if answer else None)
        names = [n for n in (name, data.get("current")) if n is not None]
        completed_after = 0
        if name is not None:
            rows = self.views.version_rows(fleet, [name], MAX_SEQ)
            # An unknown target is refused whatever ranks above it: read nothing more.
            completed_after = MAX_SEQ
            if rows:
                completed = self._decode(rows[0]).get("completed")
                completed_after = completed["seq"] if completed else 0
        return self._state_with(fleet, data, self.views.version_rows(fleet, names, completed_after))

    def command_state(self, fleet: str, versions: Sequence[str]) -> FleetHistory:
        """The fleet's core state (current version, move in flight, workers) with the
        entries of `versions` only: what a deploy, a settlement or a verdict reads.
        Two indexed reads, whatever the size of the fleet's history."""
        return self._answer(fleet, lambda: self._command_state(fleet, versions))

    def _command_state(self, fleet: str, versions: Sequence[str]) -> FleetHistory | None:
        core = self.views.core_state(fleet)
        if core is None:
            return None
        names = [n for n in dict.fromkeys(versions) if n]
        return self._state_with(fleet, self._decode(core), self.views.version_rows(fleet, names, MAX_SEQ))

    def _state_with(self, fleet: str, data: dict[str, Any], rows: list[bytes]) -> FleetHistory:
        data["versions"] = [self._decode(row) for row in rows]
        try:
            return FleetHistory.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise ViewsDamagedError(f"the stored state of fleet {fleet!r} is unreadable ({exc})") from None

    def _read_row(self, row: bytes | None) -> dict[str, Any] | None:
        return None if row is None else dict(self._decode(row))

