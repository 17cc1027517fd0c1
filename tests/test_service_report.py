"""The compliance report in a real browser: Debian's headless Chromium driven by Playwright.

Playwright's own browser download is never used (`executable_path` is the
system Chromium); the test is skipped when either is missing.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api

from ledger import commands as build
from tests.conftest import Env, run_process, submit
from tests.service_support import Server, make_tokens

FLEET = "prod"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def browser() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), "no chromium: scripts/setup installs Debian's package (as root)"
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def history_with_a_rollback(env: Env) -> None:
    with env.open() as lg:
        submit(lg, FLEET, build.deploy("v1", "ci", "first"), build.worker_start("w1", "v1", "platform"),
               build.complete("v1", "ci"), build.deploy("v2", "ci", "weekly"),
               build.worker_start("w2", "v2", "platform"), build.complete("v2", "ci"))
        lg.append(FLEET, build.worker_drain("w1", "v1", "fleet-driver"))
        lg.append(FLEET, build.worker_exit("w1", "v1", 2, "fleet-driver"))
    done = run_process("rollback", *env.args(), "--fleet", FLEET, "--actor", "on-call",
                       "--reason", "elevated session errors", "--no-drive")
    assert done.returncode == 0, done.stderr
    refused = run_process("deploy", "v3", *env.args(), "--fleet", FLEET, "--actor", "ci")
    assert refused.returncode == 1


def check_page(page: Any, tmp: Path) -> None:
    label = page.locator("#timeline .rollback-label")
    assert label.count() == 1
    assert label.is_visible()  # drawn, not just present (SVG text has no innerText)
    assert "rollback v2 \u2192 v1 by on-call: elevated session errors" in (label.text_content() or "")
    assert page.locator("#timeline .mark.refusal").count() == 1
    assert page.locator("#timeline .mark.dropped").count() == 1
    assert page.locator("#timeline .mark.drain").count() == 1
    assert page.locator("#timeline .band").count() == 3  # v1, v2, v1 again
    assert page.locator("#verification").inner_text().startswith("verified")
    rows = page.locator("#changes tr").count() - 1
    with page.expect_download() as info:
        page.click("#csv")
    saved = tmp / "changes.csv"
    info.value.save_as(saved)
    table = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert len(table) == rows >= 5
    assert [r["event"] for r in table if r["event"] == "deployment.rolled_back"] == ["deployment.rolled_back"]
    assert any(r["event"] == "command.rejected" and r["check"] == "rollout_in_flight" for r in table)


def test_the_report_file_shows_the_rollback_and_its_csv_downloads(sqlite_env: Env, browser: Any) -> None:
    env = sqlite_env
    history_with_a_rollback(env)
    out = env.dir / "report.html"
    done = run_process("report", *env.args(), "--fleet", FLEET, "--out", str(out))
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    page = browser.new_page(accept_downloads=True)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    check_page(page, env.dir)
    assert all(url.startswith(("file:", "data:")) for url in requests), requests


def test_the_served_report_in_the_browser(env: Env, browser: Any) -> None:
    history_with_a_rollback(env)
    server = Server(env, make_tokens(env.dir)).start()
    try:
        context = browser.new_context(accept_downloads=True, extra_http_headers={
            "Authorization": f"Bearer {server.tokens.read}"})
        page = context.new_page()
        page.goto(f"{server.url}/report/{FLEET}")
        check_page(page, env.dir)
        assert page.locator("#checkpoint").inner_text().startswith("deploy-ledger/")
        context.close()
    finally:
        server.stop()
