"""A real `ledger serve` process on a loopback port, and plain HTTP helpers, for the service tests.

The server is the installed command in a child process (`python -m
ledger.cli serve --listen 127.0.0.1:0`); the port is the one it prints.
Clients use only the standard library, as a remote pool host would.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ledger.service.tokens import Role, add_token
from tests.conftest import Env


@dataclass
class Tokens:
    path: Path
    read: str
    write: str
    both: str


def make_tokens(directory: Path) -> Tokens:
    path = directory / "tokens"
    return Tokens(path, add_token(path, "reader", frozenset({Role.READ})),
                  add_token(path, "writer", frozenset({Role.WRITE})),
                  add_token(path, "pool", frozenset({Role.READ, Role.WRITE})))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def lines(self) -> list[Any]:
        return [orjson.loads(line) for line in self.body.splitlines() if line.strip()]


@dataclass
class Server:
    """One server process; `restart()` stops it (SIGTERM) and starts it again."""

    env: Env
    tokens: Tokens
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    log: Path | None = None
    listen: str = "127.0.0.1:0"

    def start(self) -> Server:
        self.log = self.env.dir / f"server-{time.monotonic_ns()}.log"
        with open(self.log, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ledger.cli", "serve", *self.env.args(), "--listen", self.listen,
                 "--tokens", str(self.tokens.path), "--keepalive", "1", "--shutdown-timeout", "1",
                 *self.extra],
                stdout=subprocess.PIPE, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert line.startswith("listening on "), (line, self.log.read_text())
        self.url = line.split()[-1]
        self.listen = self.url.removeprefix("http://")  # a restart comes back on the same port
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.get("/readyz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready: {self.log.read_text()}")

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()

    def restart(self) -> Server:
        self.stop()
        return self.start()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def call(self, method: str, path: str, token: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> Response:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()},
                                answer.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())

    def get(self, path: str, token: str | None = None, headers: dict[str, str] | None = None) -> Response:
        return self.call("GET", path, token, headers=headers)

    def command(self, fleet: str, body: dict[str, Any], token: str | None = None) -> Response:
        return self.call("POST", f"/fleets/{fleet}/commands", token or self.tokens.write, body)

    def open_stream(self, fleet: str, token: str, *, last_event_id: int | None = None,
                    query: str = "", accept: str = "text/event-stream",
                    timeout: float = 30) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Bearer {token}", "Accept": accept}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        connection.request("GET", f"/fleets/{fleet}/stream{'?' + query if query else ''}", headers=headers)
        return connection, connection.getresponse()
