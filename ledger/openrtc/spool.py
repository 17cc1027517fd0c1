"""A durable local spool: records the ledger could not take yet, in arrival order.

One append-only JSON-lines file per sink (fleet and source), held with an
exclusive `flock` so two live sinks never share it. Each append is written and
`fsync`ed before the sink moves on, so a spooled record survives a crash. A
small state file, replaced atomically, holds how far the ledger has
acknowledged the file (`offset`) and from which ledger position a flush must
look for records that are already there (`scan_from`): a crash between the
ledger's commit and the acknowledgement then costs a lookup, never a double.
The file is truncated only once everything in it is acknowledged.

A torn last line (a crash in the middle of a write) was never acknowledged to
anyone and is cut off on open; its bytes are kept in `<name>.torn`. A line
that cannot be read is moved to `<name>.bad`, never silently dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class SpoolBusyError(RuntimeError):
    """Another live sink holds this spool file."""


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled record and the file offset just past its line."""

    end: int
    body: dict[str, Any]


def spool_name(fleet: str, source: str) -> str:
    """A file name for one (fleet, source) pair: plain characters only."""
    return _SAFE.sub("_", f"{fleet}.{source}")[:120]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool file `<directory>/<name>.spool` and its state file."""

    def __init__(self, directory: str | os.PathLike[str], name: str):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{name}.spool"
        self.state_path = self.directory / f"{name}.state"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise SpoolBusyError(f"spool {self.path} is held by another live sink") from None
        self.size = self._repair_tail()
        self.offset, self.scan_from = self._read_state()
        if self.offset > self.size:  # the file was replaced behind our back: read it all
            self.offset = 0
            self._write_state(0, 0)
        self.appended = 0

    # -- opening ------------------------------------------------------------------------

    def _repair_tail(self) -> int:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        with open(self.path, "rb") as handle:
            data = handle.read()
        keep = data.rfind(b"\n") + 1
        if keep < size:
            with open(self.directory / f"{self.path.stem}.torn", "ab") as torn:
                torn.write(data[keep:] + b"\n")
                torn.flush()
                os.fsync(torn.fileno())
            os.ftruncate(self._fd, keep)
            os.fsync(self._fd)
        return keep

    def _read_state(self) -> tuple[int, int]:
        try:
            state = orjson.loads(self.state_path.read_bytes())
            offset, scan_from = int(state["offset"]), int(state["scan_from"])
        except FileNotFoundError:
            return 0, 0
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return 0, 0  # unreadable: re-read everything; the flush's lookup prevents doubles
        return max(offset, 0), max(scan_from, 0)

    def _write_state(self, offset: int, scan_from: int) -> None:
        temporary = self.state_path.with_suffix(".state.tmp")
        with open(temporary, "wb") as handle:
            handle.write(orjson.dumps({"offset": offset, "scan_from": scan_from}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.state_path)
        _fsync_dir(self.directory)
        self.offset, self.scan_from = offset, scan_from

    # -- writing ------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether records wait for the ledger."""
        return self.size > self.offset

    def append(self, bodies: Sequence[dict[str, Any]], scan_from: int) -> None:
        """Durably add records; `scan_from` is the ledger head known now (used when the spool was empty)."""
        if not bodies:
            return
        if not self.pending:
            self._write_state(self.offset, scan_from)
        data = b"".join(orjson.dumps(body) + b"\n" for body in bodies)
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
        except OSError:
            # A partial line must not stay behind to be glued to the next one.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
            raise
        self.size += len(data)
        self.appended += len(bodies)

    # -- reading and acknowledging ------------------------------------------------------

    def entries(self) -> list[SpoolEntry]:
        """Every record after the acknowledged offset, in order."""
        if not self.pending:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(self.size - self.offset)
        found, position = [], self.offset
        bad: list[bytes] = []
        for line in data.splitlines(keepends=True):
            position += len(line)
            try:
                body = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad.append(line)
                continue
            if isinstance(body, dict):
                found.append(SpoolEntry(position, body))
            else:
                bad.append(line)
        if bad:
            with open(self.directory / f"{self.path.stem}.bad", "ab") as handle:
                handle.write(b"".join(bad))
                handle.flush()
                os.fsync(handle.fileno())
            if not found:
                self.acknowledge(position)
        return found

    def acknowledge(self, end: int) -> None:
        """The ledger holds every record up to file offset `end`."""
        self._write_state(end, self.scan_from)

    def reset_if_done(self, scan_from: int) -> bool:
        """Truncate the file once all of it is acknowledged; `scan_from` is the ledger head now."""
        if self.pending:
            return False
        if not self.size and scan_from == self.scan_from:
            return True
        if self.size:
            self._write_state(0, self.scan_from)  # a crash after this re-reads: the lookup finds all
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self.size = 0
        self._write_state(0, scan_from)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1
