"""Paths are never built from record data without a strict mapping.

A driven move's record names the workers to start, and the local driver makes a
lock and a log file for each: a worker id like `../../x` must neither pass the
schema nor, if it reached the driver some other way, name a file outside the
driver's run directory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import commands as build
from ledger.api import Ledger
from ledger.errors import RecordError
from ledger.sim.local_driver import LocalProcessDriver, worker_file

BAD_IDS = ["../../x", "../x", "..", ".", ".hidden", "a/b", "/etc/passwd", "", "x\n", "x\x00y",
           "a" * 65, "-rf", "x y", "w\u00e9", "C:\\x"]
GOOD_IDS = ["w1", "pool-a.2", "A_b", "0", "a" * 64]


@pytest.mark.parametrize("worker_id", GOOD_IDS)
def test_a_valid_worker_id_maps_to_a_file_in_the_run_directory(tmp_path: Path, worker_id: str) -> None:
    for kind in ("lock", "log"):
        path = worker_file(tmp_path, worker_id, kind)  # type: ignore[arg-type]
        assert path.parent == tmp_path and path.name == f"{worker_id}.{kind}"


@pytest.mark.parametrize("worker_id", BAD_IDS)
def test_anything_else_is_refused_by_the_mapping(tmp_path: Path, worker_id: str) -> None:
    with pytest.raises(RecordError, match="worker id"):
        worker_file(tmp_path, worker_id, "lock")


def test_only_lock_and_log_files_exist(tmp_path: Path) -> None:
    with pytest.raises(RecordError):
        worker_file(tmp_path, "w1", "pid")  # type: ignore[arg-type]


@pytest.mark.parametrize("worker_id", BAD_IDS)
@pytest.mark.parametrize("field", ["start_workers", "drain_workers"])
def test_a_plan_naming_a_bad_worker_id_is_refused_by_the_schema(worker_id: str, field: str) -> None:
    body = {**build.deploy("v2", "ci"), field: ["w1", worker_id]}
    with pytest.raises(RecordError, match=field):
        Ledger.validate(body)


@pytest.mark.parametrize("worker_id", ["../../x", ".hidden", "a/b"])
def test_worker_records_with_a_bad_id_are_refused(worker_id: str) -> None:
    for body in (build.worker_start(worker_id, "v1", "ci"), build.worker_drain(worker_id, "v1", "ci")):
        with pytest.raises(RecordError, match="worker_id"):
            Ledger.validate(body)


def test_the_driver_creates_nothing_outside_its_run_directory(tmp_path: Path) -> None:
    rundir = tmp_path / "a" / "b" / "run"
    driver = LocalProcessDriver(str(tmp_path / "l.db"), str(tmp_path / "l.key"), "prod", rundir)
    for worker_id in ("../../x", "../x", "/tmp/x"):
        with pytest.raises(RecordError):
            driver.start_worker(worker_id, "v1")
        with pytest.raises(RecordError):
            driver.is_alive(worker_id)
        with pytest.raises(RecordError):
            driver.drain(worker_id)
    created = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert created == ["a", "a/b", "a/b/run"]
