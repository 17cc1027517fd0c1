"""A pool host in its own process: real OpenRTC pools reporting through the service and
draining on the service's stream (`RemoteAuditSink` + `StreamDrainer`).

    python -m tests.service_pool_process URL TOKEN FLEET SPOOL_DIR WORKER VERSION

Prints `started` once the pool runs and its drainer follows the stream, and
`exited` once a drain order arrived, the pool drained and its sink delivered
everything; exit 0 then.
"""

from __future__ import annotations

import sys

from livekit.agents import Agent
from openrtc import AgentPool

from ledger.openrtc.driver import OpenRTCPoolDriver
from ledger.service.client import RemoteAuditSink, StreamDrainer


class EchoAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="noop")


def main(argv: list[str]) -> int:
    url, token, fleet, spool, worker, version = argv
    sinks: list[RemoteAuditSink] = []

    def sink_for(worker_id: str) -> RemoteAuditSink:
        sink = RemoteAuditSink(url, token, fleet, source=worker_id, spool_dir=spool, retry_s=(0.1, 0.5))
        sinks.append(sink)
        return sink

    def factory(worker_id: str, version: str, sink: RemoteAuditSink) -> AgentPool:
        return AgentPool(agent=EchoAgent, deployment_version=version, audit_sink=sink, port=0,
                         enable_introspection=False)

    driver = OpenRTCPoolDriver(factory, sink_for=sink_for, poll_s=0.05)
    try:
        driver.start_worker(worker, version)
        if not driver.wait_started(worker, 60):
            return 2
        drainer = StreamDrainer(url, token, fleet, driver)
        print("started", flush=True)
        exited = driver.wait_exited(worker, 120)
        drainer.close(1)
    finally:
        driver.close()
    delivered = all(not sink.pending for sink in sinks)  # the driver closed (flushed) them
    print("exited" if exited and delivered else "stuck", flush=True)
    return 0 if exited and delivered else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
