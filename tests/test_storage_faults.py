"""Storage faults are one line and exit 4, never a traceback and never "verification failed".

One test per kind of fault, each on real storage: a read-only copy as a user
who may not write it, a read-only file system, a full disk, a truncated file,
a file of random bytes, an empty file, a PostgreSQL server that is not there,
and one that restarts while commands run. Read-only copies must still verify
and answer queries.
"""

from __future__ import annotations

import contextlib
import encodings.ascii  # noqa: F401 - loaded before a child drops to a user who cannot read the venv
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Ledger
from ledger import commands as build
from ledger.cli import main as cli_main
from tests.conftest import ROOT, CliResult, Env, run_cli, seed
from tests.test_postgres import own_server as own_server  # a fixture: a server of this test's own

NOBODY = 65534


def run_as(uid: int, *argv: str) -> CliResult:
    """Run the CLI in a forked child that has dropped to `uid` (no exec: the venv
    may live where that user cannot read, so everything is imported before the fork)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 99
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                code = cli_main(list(argv))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 2
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return CliResult(os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode())


def assert_storage_fault(result: CliResult, *words: str) -> None:
    assert result.code == 4, result
    assert result.err.count("\n") == 1, result.err
    assert result.err.startswith("ledger: storage fault: "), result.err
    assert "Traceback" not in result.err
    for word in words:
        assert word in result.err, (word, result.err)


def rows(db: str) -> bytes:
    return Path(db).read_bytes()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's root-only tree, so another user can reach it."""
    directory = Path(tempfile.mkdtemp(prefix="ledger-faults-"))
    directory.chmod(0o755)
    yield directory
    with contextlib.suppress(OSError):
        subprocess.run(["umount", str(directory / "mnt")], capture_output=True, check=False)
    for path in directory.rglob("*"):
        with contextlib.suppress(OSError):
            path.chmod(0o700)
    shutil.rmtree(directory, ignore_errors=True)


def copy_ledger(env: Env, directory: Path) -> tuple[str, str, str]:
    """A copy of the (seeded) SQLite ledger, its key and its public key, in `directory`."""
    with env.open() as lg:
        seed(lg)
    directory.mkdir(exist_ok=True)
    db = directory / "ledger.db"
    assert not Path(env.db + "-wal").exists()  # the last connection closed: all of it is in the file
    shutil.copy(env.db, db)
    shutil.copy(env.key, directory / "ledger.key")
    shutil.copy(env.pub, directory / "ledger.key.pub")
    return str(db), str(directory / "ledger.key"), str(directory / "ledger.key.pub")


def mount_tmpfs(target: Path, size: str) -> None:
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        # A full disk is made with a small tmpfs, which only root may mount: a developer's
        # unprivileged run skips it; as root (CI) a failed mount fails the test.
        if os.geteuid() == 0:
            pytest.fail(f"cannot mount a tmpfs as root: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


READS = [["verify", "--public-key"], ["history", "--fleet", "prod"], ["fleet", "--fleet", "prod"],
         ["feed", "--fleet", "prod"], ["keys", "show"], ["last-good", "--fleet", "prod"]]


def _read_argv(read: list[str], db: str, pub: str) -> list[str]:
    argv = [*read, pub] if read[-1] == "--public-key" else list(read)
    return [*argv, "--db", db]


def test_a_read_only_copy_verifies_and_answers_for_a_user_who_may_not_write_it(
        sqlite_env: Env, shared_dir: Path) -> None:
    db, key, pub = copy_ledger(sqlite_env, shared_dir / "copy")
    for path in (shared_dir / "copy").iterdir():
        path.chmod(0o444)
    (shared_dir / "copy").chmod(0o555)
    before = rows(db)
    for read in READS:
        result = run_as(NOBODY, *_read_argv(read, db, pub))
        assert result.code == 0, (read, result)
        assert "Traceback" not in result.err and result.err.count("\n") <= 1, result.err
    assert "verified 6 records in fleet prod" in run_as(NOBODY, *_read_argv(READS[0], db, pub)).out
    assert "using a temporary one" in run_as(NOBODY, "history", "--fleet", "prod", "--db", db).err
    written = run_as(NOBODY, "deploy", "v2", "--actor", "ci", "--fleet", "prod", "--db", db, "--key", key)
    assert_storage_fault(written, db, "read-only")
    assert rows(db) == before
    assert sorted(p.name for p in (shared_dir / "copy").iterdir()) == [
        "ledger.db", "ledger.key", "ledger.key.pub"]  # nothing was created beside it


def test_a_read_only_file_system_verifies_and_refuses_writes_in_one_line(
        sqlite_env: Env, shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mount_tmpfs(shared_dir / "mnt", "4m")
    db, key, pub = copy_ledger(sqlite_env, shared_dir / "mnt")
    remounted = subprocess.run(["mount", "-o", "remount,ro", str(shared_dir / "mnt")],
                               capture_output=True, text=True)
    assert remounted.returncode == 0, remounted.stderr
    before = rows(db)
    for read in READS:
        result = run_cli(capsys, *_read_argv(read, db, pub))
        assert result.code == 0, (read, result)
    written = run_cli(capsys, "deploy", "v2", "--actor", "ci", "--fleet", "prod", "--db", db, "--key", key)
    assert_storage_fault(written, db, "read-only")
    assert rows(db) == before


def test_a_full_disk_refuses_writes_in_one_line_and_still_verifies(
        sqlite_env: Env, shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mount_tmpfs(shared_dir / "mnt", "512k")
    db, key, pub = copy_ledger(sqlite_env, shared_dir / "mnt")
    with contextlib.suppress(OSError), open(shared_dir / "mnt" / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
    assert os.statvfs(shared_dir / "mnt").f_bavail == 0
    before = rows(db)
    for argv in (["deploy", "v2", "--actor", "ci", "--fleet", "prod", "--key", key],
                 ["history", "--fleet", "prod"]):
        assert_storage_fault(run_cli(capsys, *argv, "--db", db), "disk is full")
    init = run_cli(capsys, "init", "--db", str(shared_dir / "mnt" / "new.db"),
                   "--key", str(shared_dir / "mnt" / "new.key"))
    assert_storage_fault(init, "disk is full")
    verified = run_cli(capsys, "verify", "--db", db, "--public-key", pub)
    assert verified.code == 0, verified
    assert rows(db) == before


@pytest.mark.parametrize(("damage", "cause"), [
    pytest.param(lambda data: data[: len(data) // 2], "damaged", id="truncated"),
    pytest.param(lambda data: data[:100], "damaged", id="truncated-to-header"),
    pytest.param(lambda data: os.urandom(len(data)), "not a ledger database", id="random-bytes"),
    pytest.param(lambda data: b"", "empty", id="empty"),
])
def test_a_damaged_database_file_is_a_storage_fault_for_every_command(
        sqlite_env: Env, capsys: pytest.CaptureFixture[str], damage: object, cause: str) -> None:
    with sqlite_env.open() as lg:
        for n in range(60):  # enough pages that half the file loses some of them
            seed(lg, f"fleet{n}", 1)
    data = Path(sqlite_env.db).read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(sqlite_env.db + suffix).unlink(missing_ok=True)
    assert callable(damage)
    Path(sqlite_env.db).write_bytes(damage(data))
    for argv in (["verify", "--public-key", str(sqlite_env.pub)], ["history", "--fleet", "prod"],
                 ["feed", "--fleet", "fleet1"],
                 ["deploy", "v2", "--actor", "ci", "--fleet", "prod", "--key", str(sqlite_env.key)]):
        result = run_cli(capsys, *argv, "--db", sqlite_env.db)
        assert_storage_fault(result, sqlite_env.db, cause)


def test_a_server_that_is_not_there_is_a_storage_fault(pg_url: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://ledger:s3cret-pw@127.0.0.1:1/ledger_test?password=s3cret-pw"
    key = tmp_path / "ledger.key"
    for argv in (["verify", "--public-key", "ed25519:" + "A" * 43 + "="], ["history", "--fleet", "prod"],
                 ["feed", "--fleet", "prod"], ["deploy", "v1", "--actor", "ci", "--key", str(key)],
                 ["init", "--key", str(key)]):
        result = run_cli(capsys, *argv, "--db", url)
        assert_storage_fault(result, "127.0.0.1:1", "refused")
        assert "s3cret" not in result.err and "s3cret" not in result.out


@pytest.mark.usefixtures("own_server")
def test_commands_while_the_server_restarts_succeed_or_fail_in_one_line(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url, directory = request.getfixturevalue("own_server")
    key = tmp_path / "ledger.key"
    env = {**os.environ, "LEDGER_DB": url, "LEDGER_KEY": str(key)}
    command = [sys.executable, "-m", "ledger.cli"]
    assert subprocess.run([*command, "init"], env=env, capture_output=True).returncode == 0
    for n in range(20):
        subprocess.run([*command, "worker", "start", f"w{n}", "--version", "v1", "--actor", "ci",
                        "--fleet", "prod"], env=env, capture_output=True, check=True)
    restart = subprocess.Popen([str(ROOT / "scripts" / "postgres-restart"), str(directory), "immediate"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    outcomes = set()
    while restart.poll() is None:
        for argv in (["verify", "--public-key", str(key) + ".pub"], ["history", "--fleet", "prod"]):
            done = subprocess.run([*command, *argv], env=env, capture_output=True, text=True, timeout=120)
            outcomes.add(done.returncode)
            assert done.returncode in (0, 4), done.stderr
            assert "Traceback" not in done.stderr and done.stderr.count("\n") <= 1, done.stderr
            if done.returncode == 4:
                assert done.stderr.startswith("ledger: storage fault: "), done.stderr
    assert restart.wait() == 0
    after = subprocess.run([*command, "verify", "--public-key", str(key) + ".pub"], env=env,
                           capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    assert "verified 20 records" in after.stdout


@pytest.mark.usefixtures("own_server")
def test_a_role_that_may_only_read_verifies_and_queries_a_postgresql_ledger(
        request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    url, _directory = request.getfixturevalue("own_server")
    admin = url.replace("ledger:ledger@", "postgres:postgres@")
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("CREATE SCHEMA audit AUTHORIZATION ledger")
    db = f"{url}?schema=audit"
    key = tmp_path / "ledger.key"
    with Ledger.init(db, key) as lg:
        seed(lg)
    assert run_cli(capsys, "history", "--fleet", "prod", "--db", db).code == 0  # the owner's views exist
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("CREATE ROLE reviewer LOGIN PASSWORD 'rv-secret'")
        c.execute("GRANT USAGE ON SCHEMA audit TO reviewer")
        c.execute("GRANT SELECT ON ALL TABLES IN SCHEMA audit TO reviewer")
    with Ledger.open(db, key) as lg:  # a record the views have not seen: answering needs a write
        lg.append("prod", build.worker_start("w9", "v1", "ci"))
    reviewer = db.replace("ledger:ledger@", "reviewer:rv-secret@")
    verified = run_cli(capsys, "verify", "--db", reviewer, "--public-key", f"{key}.pub")
    assert verified.code == 0, verified
    assert "verified 7 records in fleet prod" in verified.out
    history = run_cli(capsys, "history", "--fleet", "prod", "--db", reviewer)
    assert history.code == 0, history
    assert "using a temporary one" in history.err and history.err.count("\n") == 1
    written = run_cli(capsys, "deploy", "v2", "--actor", "ci", "--fleet", "prod", "--db", reviewer,
                      "--key", str(key))
    assert_storage_fault(written, "permission denied")
    assert "rv-secret" not in written.err + history.err + verified.out
