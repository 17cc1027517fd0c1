"""`ledger serve`: uvicorn around the service, on a socket bound before the workers start.

Binding here, not in uvicorn, lets `--listen 127.0.0.1:0` work (the kernel
picks a free port and the first line on stdout names it, which is how tests
and scripts find it) and lets several worker processes share the one socket.
uvicorn gives graceful shutdown: on SIGTERM or SIGINT it stops accepting,
lets requests finish for up to `--shutdown-timeout` seconds (live streams are
then closed; their clients resume with Last-Event-ID), and closes the ledger.
"""

from __future__ import annotations

import logging
import socket
import sys

import uvicorn
from uvicorn.supervisors import Multiprocess

from ledger.config import hand_over
from ledger.errors import InputError
from ledger.service.config import ENV, ServiceConfig


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputError(f"--listen takes HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def log_config() -> dict[str, object]:
    """uvicorn's loggers and the service's, one line each on stderr (every process)."""
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"line": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line",
                                "stream": "ext://sys.stderr"}},
        "loggers": {"uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
                    "uvicorn.error": {"level": "INFO"},
                    "ledger": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
    }


def serve(config: ServiceConfig, listen: str, *, workers: int = 1, shutdown_timeout: int = 5,
          forwarded_allow_ips: str | None = None) -> int:
    host, port = parse_listen(listen)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    hand_over(ENV, config.to_env())
    print(f"listening on http://{host}:{actual}", flush=True)
    uv = uvicorn.Config(
        "ledger.service.http:app_from_env", factory=True, workers=workers, access_log=False,
        timeout_graceful_shutdown=shutdown_timeout, log_config=log_config(),
        proxy_headers=forwarded_allow_ips is not None, forwarded_allow_ips=forwarded_allow_ips,
        lifespan="on")
    server = uvicorn.Server(uv)
    if workers > 1:
        Multiprocess(uv, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])
    logging.getLogger("ledger.service").info("stopped")
    sys.stdout.flush()
    return 0 if server.started or workers > 1 else 2
