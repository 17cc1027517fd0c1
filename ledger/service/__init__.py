"""The ledger as a service: HTTP reads and writes, a live audit feed, and a compliance report.

This package is loaded only by `ledger serve`, `ledger report` and `ledger
service ...`, so the other commands (and a base install without the
`[service]` extra) never import a web framework. It sits on top of the gate
(`ledger.gate`) and the read models (`projections`); neither imports it.

Modules, one job each: `config` (settings shared by every server process),
`tokens` (hashed bearer tokens and their roles), `bodies` (JSON request bodies
as gate commands), `cloudevents` (a record as a CloudEvent), `backend` (the
one thread that owns the ledger, views and gate), `tail` (one follower per
fleet fanned out to every live stream), `middleware` (request ids, body
limits), `openapi` (the published description), `http` (routes), `server`
(uvicorn), `report` (the HTML compliance report, standard library only),
`client` (the remote audit sink and the remote pool driver), `cli`.
"""
