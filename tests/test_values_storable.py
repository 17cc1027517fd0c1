"""Whatever passes the value checks encodes canonically and is stored and read back on every backend.

The values drawn here include what used to slip through: NUL and other control
characters (PostgreSQL text cannot hold a NUL, and a view that stored one
could never be read again), nesting deeper than orjson can encode, integers
and floats at any depth, non-ASCII keys.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import commands as build
from ledger.api import Ledger
from ledger.encoding import canonical, check_values
from ledger.errors import RecordError
from projections import Projections
from tests.conftest import Env

any_text = st.text(max_size=12)
keys = st.one_of(st.text(alphabet="abc_", min_size=1, max_size=4), any_text)
scalars = st.one_of(
    st.none(), st.booleans(), any_text,
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=12)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


values_or_deep = st.one_of(values, st.integers(20, 300).map(deep))
versions = st.one_of(st.from_regex(r"v[0-9]{1,3}", fullmatch=True), any_text)


@settings(max_examples=300, deadline=None)
@given(values_or_deep)
def test_accepted_values_round_trip_through_canonical(value: Any) -> None:
    record = {"x": value}
    try:
        check_values(record)
    except RecordError:
        return
    data = canonical(record)
    assert orjson.loads(data) == record
    assert canonical(orjson.loads(data)) == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=versions, extra=values_or_deep)
def test_accepted_records_are_stored_read_and_projected_on_every_backend(
    env: Env, version: str, extra: Any
) -> None:
    body = {**build.deploy(version, "ci"), "extra": extra}
    try:
        Ledger.validate(body)
    except RecordError:
        return
    with env.open() as lg:
        receipt = lg.append("prod", body)
        stored = orjson.loads(next(iter(lg.raw_records("prod", receipt.seq - 1))))
        assert stored["extra"] == extra and stored["version"] == version
    with Projections.open(env.db, notice=lambda _: None) as views:
        versions_seen = [v["version"] for v in views.history("prod")["versions"]]
        assert version in versions_seen


@pytest.mark.parametrize("version", ["v\u0000x", "v1\n", "v\u0085", "../v1", "v 1", ""])
def test_bad_versions_are_refused_before_they_reach_any_store(env: Env, version: str) -> None:
    with env.open() as lg, pytest.raises(RecordError):
        lg.append("prod", build.deploy(version, "ci"))
