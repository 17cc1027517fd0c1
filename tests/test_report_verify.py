"""The report's verification status: the fleet is verified once, and the checkpoint it shows is
signed over exactly the history that verification proved (no second pass that could see more)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import commands as build
from ledger.api import Ledger
from ledger.service import report as report_module
from tests.conftest import Env, run_cli, seed


def test_the_report_verifies_once_and_signs_the_checkpoint_of_what_it_verified(
        env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with env.open() as lg:
        seed(lg)
        lg.append("prod", build.worker_start("w9", "v1", "ops"))
    calls: list[int] = []
    real = Ledger.verify

    def counting(self: Ledger, *args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch, env.open() as lg:
        patch.setattr(Ledger, "verify", counting)
        status = report_module._verify(lg, "prod", None)
        count = len(list(lg.records("prod")))
    assert calls == [1] and status.ok and status.checkpoint is not None
    assert status.checkpoint.splitlines()[1] == str(count)  # the size verified
    kept = Path(env.dir) / "report.checkpoint"
    kept.write_text(status.checkpoint)
    checked = run_cli(capsys, "verify", *env.args(), "--checkpoint", str(kept))
    assert checked.code == 0 and f"extends checkpoint of {count} records" in checked.out
