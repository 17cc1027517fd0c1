"""`OpenRTCPoolDriver`: a fleet driver whose workers are real, in-process OpenRTC `AgentPool`s.

The rollback executor (`ledger.drive.Executor`) carries out a recorded
rollback through any `FleetDriver`; with this one, "start a worker of v1" builds
a pool through the caller's factory and runs it (`pool.server.run(unregistered=True)`),
and "drain" is `pool.begin_drain()`. The driver reads `deployment_version`,
`draining` and `active_sessions` from `pool.runtime_snapshot()`, and closes
the pool once it is draining and holds no session: a drain never cuts a call.

The workers report into the ledger themselves, as the executor expects, through
their own OpenRTC audit log: the driver emits `worker.started` once the pool is
up, `worker.sessions` when a draining pool's session count changes, and
`worker.exited` after the pool has closed. So each pool needs a ledger sink:
`sink_for(worker_id)` makes one (a `LedgerAuditSink(..., source=worker_id)`)
and the driver hands it to `factory(worker_id, version, sink)`, which passes it
as `AgentPool(audit_sink=...)`. The driver flushes that sink before it reports
a pool gone (`is_alive` False), so the executor reads the pool's own
`worker.exited` rather than recording one for a worker that "vanished"
(flushing is part of closing the sink, which frees the worker id's spool for
a later start of the same id). The `deployment.drain_started` that
`begin_drain()` emits lands in the ledger too (the projections count it once
with the executor's own drain record).

Pools run on one asyncio loop in a daemon thread owned by the driver.
livekit requires its plugins to be registered on the main thread, so construct
the driver on the main thread (it imports them there), and guard the
application's entry point with `if __name__ == "__main__":` (livekit's
inference helper re-imports the main module).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openrtc import AgentPool
    from openrtc.observability.snapshot import PoolRuntimeSnapshot

#: `factory(worker_id, version, audit_sink)` -> a pool, not yet running.
PoolFactory = Callable[[str, str, Any], "AgentPool"]

_log = logging.getLogger("ledger.openrtc")


def preload_plugins() -> None:
    """Import the livekit plugins a pool's startup needs, on the main thread (livekit's rule)."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("construct OpenRTCPoolDriver on the main thread: livekit registers its "
                           "plugins there")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in ("livekit.plugins.silero", "livekit.plugins.turn_detector.multilingual"):
            importlib.import_module(name)


def outcome_fields(snapshot: object) -> dict[str, Any]:
    """The cumulative session outcome counters a pool's snapshot exposes, under the ledger's names.

    OpenRTC's snapshot has no outcome counters of its own today; a pool (or an
    app's subclass) that adds `sessions_ok`, `sessions_error` or
    `sessions_dropped` gets them reported, and nothing is invented when it does not.
    An app that knows its call outcomes can also emit them itself:
    `pool.audit_log.emit("worker.sessions", ..., sessions_ok=n, sessions_error=m)`.
    """
    found: dict[str, Any] = {}
    for name in ("sessions_ok", "sessions_error", "sessions_dropped"):
        value = getattr(snapshot, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            found[name] = value
    return found


@dataclass
class PoolWorker:
    """One pool the driver runs, and where it is in its life."""

    worker_id: str
    version: str
    pool: AgentPool
    sink: Any = None
    run_task: asyncio.Task[None] | None = None
    watch_task: asyncio.Task[None] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    drain_requested: asyncio.Event = field(default_factory=asyncio.Event)
    drain_called: bool = False
    started: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class OpenRTCPoolDriver:
    """Starts, drains and watches in-process `AgentPool`s; a `ledger.fleet.FleetDriver`.

    `factory(worker_id, version, audit_sink)` builds a pool (not yet running)
    tagged `deployment_version=version` with `audit_sink` as its sink (and, in
    tests, `port=0`); `sink_for(worker_id)` makes that sink (None: the factory
    wires its own, and the driver cannot flush it before reporting an exit).
    """

    def __init__(self, factory: PoolFactory, *, sink_for: Callable[[str], Any] | None = None,
                 actor: str = "openrtc-driver", poll_s: float = 0.1, start_timeout_s: float = 60.0):
        preload_plugins()
        self.factory, self.sink_for, self.actor, self.poll_s = factory, sink_for, actor, poll_s
        self.start_timeout_s = start_timeout_s
        self._workers: dict[str, PoolWorker] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openrtc-driver", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a process that forgets close() still records its pools' exits

    # -- FleetDriver -----------------------------------------------------------------------

    def start_worker(self, worker_id: str, version: str) -> None:
        """Build the pool and start running it; returns once it is starting (not yet ready)."""
        if self.is_alive(worker_id):
            return
        self._call(self._start(worker_id, version))

    def drain(self, worker_id: str) -> None:
        """`begin_drain()` once (it emits an audit event per call); repeated calls are harmless."""
        worker = self._workers.get(worker_id)
        if worker is not None:
            self._loop.call_soon_threadsafe(worker.drain_requested.set)

    def is_alive(self, worker_id: str) -> bool:
        worker = self._workers.get(worker_id)
        return worker is not None and not worker.exited.is_set()

    # -- reading the pools ---------------------------------------------------------------------

    def snapshot(self, worker_id: str) -> PoolRuntimeSnapshot:
        """The pool's own `runtime_snapshot()`: deployment_version, draining, active_sessions, ..."""
        return self._workers[worker_id].pool.runtime_snapshot()

    def pool(self, worker_id: str) -> AgentPool:
        return self._workers[worker_id].pool

    def worker_ids(self) -> list[str]:
        return sorted(self._workers)

    def wait_started(self, worker_id: str, timeout: float | None = None) -> bool:
        """Wait until the pool is up and has reported `worker.started`."""
        worker = self._workers.get(worker_id)
        return worker is not None and worker.started.wait(timeout or self.start_timeout_s)

    def wait_exited(self, worker_id: str, timeout: float = 30.0) -> bool:
        worker = self._workers.get(worker_id)
        return worker is None or worker.exited.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Close every pool still running and record its exit (cuts their calls: for shutdown
        and tests), stop the loop. Runs by itself when the process ends."""
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._close_all(), timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
        for worker in self._workers.values():
            _close_sink(worker.sink)

    # -- on the driver's loop ------------------------------------------------------------------------

    def _call(self, coroutine: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(
            timeout if timeout is not None else self.start_timeout_s)

    async def _start(self, worker_id: str, version: str) -> None:
        sink = self.sink_for(worker_id) if self.sink_for is not None else None
        try:
            pool = self.factory(worker_id, version, sink)
            if pool.deployment_version != version:
                raise ValueError(f"factory built a pool of version {pool.deployment_version!r} for "
                                 f"{worker_id}, not {version!r}")
        except BaseException:
            _close_sink(sink)
            raise
        worker = PoolWorker(worker_id, version, pool, sink)
        pool.server.on("worker_started", lambda *_: worker.ready.set())
        worker.run_task = asyncio.create_task(pool.server.run(unregistered=True))
        worker.watch_task = asyncio.create_task(self._watch(worker))
        self._workers[worker_id] = worker

    async def _watch(self, worker: PoolWorker) -> None:
        """Report start, drain on request, report sessions, close when empty, report exit."""
        pool, run_task = worker.pool, worker.run_task
        assert run_task is not None
        try:
            ready = asyncio.create_task(worker.ready.wait())
            await asyncio.wait({ready, run_task}, timeout=self.start_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
            if not worker.ready.is_set():
                ready.cancel()
                raise RuntimeError(f"pool {worker.worker_id} did not start within {self.start_timeout_s}s")
            snapshot = pool.runtime_snapshot()
            pool.audit_log.emit("worker.started", actor=self.actor, target=worker.worker_id,
                                version=snapshot.deployment_version, worker_id=worker.worker_id,
                                pid=os.getpid())
            worker.started.set()
            await worker.drain_requested.wait()
            await self._drain(worker)
        except Exception as exc:
            worker.error = exc
            _log.exception("openrtc pool %s failed", worker.worker_id)
            await self._stop(worker)
        finally:
            if worker.sink is not None:
                # its reports reach the ledger before anyone is told it is gone
                await asyncio.get_running_loop().run_in_executor(None, _close_sink, worker.sink)
            worker.exited.set()

    async def _drain(self, worker: PoolWorker) -> None:
        pool = worker.pool
        if not worker.drain_called:
            worker.drain_called = True
            pool.begin_drain()
        held: int | None = None
        while True:
            snapshot = pool.runtime_snapshot()
            if held is not None and snapshot.active_sessions != held:
                pool.audit_log.emit("worker.sessions", actor=self.actor, target=worker.worker_id,
                                    version=snapshot.deployment_version, worker_id=worker.worker_id,
                                    active_sessions=snapshot.active_sessions,
                                    **outcome_fields(snapshot))
            held = snapshot.active_sessions
            if snapshot.draining and held == 0:
                break
            await asyncio.sleep(self.poll_s)
        await self._stop(worker)
        pool.audit_log.emit("worker.exited", actor=self.actor, target=worker.worker_id,
                            version=worker.version, worker_id=worker.worker_id, active_sessions=0,
                            exit_code=0, reason="drained: no session left")

    async def _stop(self, worker: PoolWorker) -> None:
        """`aclose()` (never cancel: a cancelled run leaves its server and helpers running)."""
        if worker.run_task is None or worker.run_task.done():
            return
        await asyncio.sleep(0)  # run() must hold its lock before aclose() (it then waits for startup)
        with contextlib.suppress(Exception):
            await worker.pool.server.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.run_task, timeout=30)

    async def _close_all(self) -> None:
        """Close every running pool and record its exit, with the calls it still held (cut)."""
        for worker in list(self._workers.values()):
            if not worker.exited.is_set():
                held = 0
                with contextlib.suppress(Exception):
                    held = worker.pool.runtime_snapshot().active_sessions
                await self._stop(worker)
                if worker.started.is_set():  # before the watcher closes the pool's sink
                    worker.pool.audit_log.emit(
                        "worker.exited", actor=self.actor, target=worker.worker_id, version=worker.version,
                        worker_id=worker.worker_id, active_sessions=held,
                        reason="closed by the driver (its process is ending)")
                if worker.watch_task is not None:
                    worker.watch_task.cancel()
                    with contextlib.suppress(BaseException):
                        await worker.watch_task
                worker.exited.set()


def _close_sink(sink: Any) -> None:
    close = getattr(sink, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
