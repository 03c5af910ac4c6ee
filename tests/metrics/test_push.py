"""The JSON push batch's fast path (metrics/push.py) against the IngestBatch model: the same
documents accepted, the same values stored, the model's errors for what is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from codecs import BOM_UTF8
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pilothouse.core.inputs import raw_text_may_be_bad
from pilothouse.deps import SHAPED_BODIES, ShapedRequest, checked_body
from pilothouse.metrics import api as metrics_api
from pilothouse.metrics import push
from pilothouse.metrics.models import MetricSeries, metric_samples
from pilothouse.metrics.samples import Sample
from pilothouse.metrics.schemas import IngestBatch
from tests.conftest import Api

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OK: dict[str, Any] = {"name": "http_ms", "value": 1.5}


def _model_samples(document: Any) -> list[Sample] | None:
    """What the model makes of a document, as the store's samples (None: refused)."""
    try:
        batch = IngestBatch.model_validate(document)
    except ValidationError:
        return None
    return [
        Sample(
            s.name,
            {**s.tags, "environment": "prod"},
            s.value,
            s.timestamp or NOW,
            unit=s.unit,
            source=s.source,
        )
        for s in batch.samples
    ]


def _fast_samples(document: Any) -> list[Sample] | None:
    """What the fast check alone makes of it: the samples it stands for, each checked against
    the store columns made of it (the finite ones; the others are left out, as write_samples
    leaves them)."""
    checked = push.check_fast(document)
    if checked is None:
        return None
    samples = checked["samples"]
    columns = push.to_columns(samples, NOW, {})
    out = [push.describe(s, "prod", NOW) for s in samples]
    finite = [i for i, s in enumerate(out) if math.isfinite(s.value)]
    assert columns.series == [0] * len(finite)  # nothing known yet
    assert [index for _, _, index in columns.late] == finite
    assert [position for position, _, _ in columns.late] == list(range(len(finite)))
    for position, i in enumerate(finite):
        assert columns.times[position] == round(out[i].at.timestamp() * 1000)
        assert columns.values[position] == out[i].value
        assert columns.late[position][1] == push.push_key(samples[i])
    return out


def _same(a: list[Sample] | None, b: list[Sample] | None) -> bool:
    if a is None or b is None:
        return a is b
    # NaN != NaN: compare the values' reprs.
    return [(s.name, dict(s.tags), repr(s.value), s.at, s.unit, s.source) for s in a] == [
        (s.name, dict(s.tags), repr(s.value), s.at, s.unit, s.source) for s in b
    ]


def _one(**fields: Any) -> dict[str, Any]:
    sample = {**OK, **fields}
    return {"environment": "prod", "samples": [{k: v for k, v in sample.items() if v is not ...}]}


CASES: list[tuple[str, Any, bool]] = [
    ("minimal", _one(), True),
    ("everything", _one(tags={"a": "b"}, timestamp="2026-12-01T11:00:00Z", unit="ms"), True),
    ("no environment", {"samples": [OK]}, True),
    ("environment null", {"environment": None, "samples": [OK]}, True),
    ("environment a number", {"environment": 3, "samples": [OK]}, False),
    ("no samples", {"environment": "prod"}, False),
    ("samples empty", {"samples": []}, True),
    ("samples not a list", {"samples": {"0": OK}}, False),
    ("unknown top-level field", {"samples": [OK], "extra": 1}, False),
    ("body a list", [OK], False),
    ("body a string", "samples", False),
    ("body null", None, False),
    ("10,000 samples", {"samples": [OK] * 10_000}, True),
    ("10,001 samples", {"samples": [OK] * 10_001}, False),
    ("sample not an object", {"samples": [1]}, False),
    ("unknown sample field", _one(extra="x"), False),
    ("name missing", _one(name=...), False),
    ("name empty", _one(name=""), False),
    ("name 200 characters", _one(name="a" * 200), True),
    ("name 201 characters", _one(name="a" * 201), False),
    ("name with a space", _one(name="bad name"), False),
    ("name with a trailing newline", _one(name="a\n"), False),
    ("name starting with a digit", _one(name="1a"), False),
    ("name with colon, dot, dash", _one(name="a:b.c-d_e"), True),
    ("name not text", _one(name=5), False),
    ("value missing", _one(value=...), False),
    ("value an integer", _one(value=3), True),
    ("value true", _one(value=True), True),
    ("value a numeric string", _one(value="2.5"), True),
    ("value 'nan' string", _one(value="nan"), True),
    ("value not a number", _one(value="abc"), False),
    ("value null", _one(value=None), False),
    ("value NaN", _one(value=math.nan), True),
    ("value inf", _one(value=math.inf), True),
    ("value -inf", _one(value=-math.inf), True),
    ("value too large an integer", _one(value=10**400), False),
    ("value 2**63", _one(value=2**63), True),
    ("tags missing", _one(tags=...), True),
    ("tags empty", _one(tags={}), True),
    ("tags null", _one(tags=None), False),
    ("tags a list", _one(tags=["a"]), False),
    ("tag value a number", _one(tags={"a": 1}), False),
    ("tag value null", _one(tags={"a": None}), False),
    ("tag key empty", _one(tags={"": "x"}), False),
    ("tag key 200", _one(tags={"k" * 200: "x"}), True),
    ("tag key 201", _one(tags={"k" * 201: "x"}), False),
    ("tag value 200", _one(tags={"k": "v" * 200}), True),
    ("tag value 201", _one(tags={"k": "v" * 201}), False),
    ("tag value empty", _one(tags={"k": ""}), True),
    ("20 tags", _one(tags={f"k{i}": "v" for i in range(20)}), True),
    ("21 tags", _one(tags={f"k{i}": "v" for i in range(21)}), False),
    ("environment tag of another", _one(tags={"environment": "x", "a": "b"}), True),
    ("unit 32", _one(unit="u" * 32), True),
    ("unit 33", _one(unit="u" * 33), False),
    ("unit null", _one(unit=None), False),
    ("unit empty", _one(unit=""), True),
    ("source infrastructure", _one(source="infrastructure"), True),
    ("source external", _one(source="external"), True),
    ("source unknown", _one(source="internal"), False),
    ("source capitalised", _one(source="Application"), False),
    ("source null", _one(source=None), False),
    ("timestamp null", _one(timestamp=None), True),
    ("timestamp with offset", _one(timestamp="2026-12-01T13:00:00.123456+01:00"), True),
    ("timestamp without a time zone", _one(timestamp="2026-12-01T12:00:00"), False),
    ("timestamp a date", _one(timestamp="2026-12-01"), False),
    ("timestamp a Unix time", _one(timestamp=1_700_000_000), True),
    ("timestamp a Unix time in ms", _one(timestamp=1_700_000_000_000), True),
    ("timestamp a Unix time as text", _one(timestamp="1700000000"), True),
    ("timestamp year 1", _one(timestamp="0001-01-01T00:00:00+01:00"), True),
    ("timestamp year 9999", _one(timestamp="9999-12-31T23:59:59-01:00"), True),
    ("timestamp year 10000", _one(timestamp="10000-01-01T00:00:00Z"), False),
    ("timestamp month 13", _one(timestamp="2026-13-01T00:00:00Z"), False),
    ("timestamp February 30", _one(timestamp="2026-02-30T00:00:00Z"), False),
    ("timestamp hour 24", _one(timestamp="2026-12-01T24:00:00Z"), False),
    ("timestamp offset 24h", _one(timestamp="2026-12-01T12:00:00+24:00"), False),
    ("timestamp a huge number", _one(timestamp=10**20), False),
    ("timestamp true", _one(timestamp=True), False),
    ("timestamp text", _one(timestamp="yesterday"), False),
]


@pytest.mark.parametrize(
    ("document", "accepted"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_fast_path_accepts_what_the_model_accepts(document: Any, accepted: bool) -> None:
    by_model = _model_samples(document)
    assert (by_model is not None) == accepted
    assert _same(_fast_samples(document), by_model)
    if accepted:
        assert push.check_fast(document) is not None  # not only through the fallback


@pytest.mark.parametrize(
    "document", [c[1] for c in CASES if not c[2]], ids=[c[0] for c in CASES if not c[2]]
)
def test_a_refused_batch_gets_the_models_errors(document: Any) -> None:
    with pytest.raises(ValidationError) as fast:
        push.read_batch(document)
    with pytest.raises(ValidationError) as model:
        IngestBatch.model_validate(document)
    assert fast.value.errors(include_context=False) == model.value.errors(include_context=False)


TEXT = st.one_of(
    st.sampled_from(["a", "x_y", "a:b", "", "1a", "a b", "a\n", "k" * 200, "k" * 201]),
    st.text(max_size=4),
)
ANY = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), TEXT, st.lists(st.integers(), max_size=2)
)
SAMPLE = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(TEXT, ANY),
        "value": st.one_of(st.floats(), st.integers(), ANY),
        "tags": st.one_of(st.dictionaries(TEXT, st.one_of(TEXT, ANY), max_size=22), ANY),
        "timestamp": st.one_of(
            st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
            st.datetimes().map(datetime.isoformat),
            st.integers(),
            ANY,
        ),
        "unit": st.one_of(st.text(max_size=34), ANY),
        "source": st.one_of(st.sampled_from(["application", "infrastructure", "x"]), ANY),
        "other": ANY,
    },
)
BATCH = st.one_of(
    st.fixed_dictionaries(
        {"samples": st.lists(SAMPLE, max_size=3)},
        optional={"environment": st.one_of(TEXT, ANY), "junk": ANY},
    ),
    ANY,
)


@settings(max_examples=300, deadline=None)
@given(BATCH)
def test_fast_path_and_model_agree_on_any_document(document: Any) -> None:
    assert _same(_fast_samples(document), _model_samples(document))


def _json_path(raw: bytes) -> Any:
    """What the push route's request makes of a JSON text in one pass (deps.ShapedRequest.json
    with the endpoint's check): the checked batch, or None when it leaves the text to
    json.loads and the decoded path."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def read() -> Any:
        request = ShapedRequest(
            {"type": "http", "method": "POST", "headers": []},
            receive,
            SHAPED_BODIES[metrics_api.ingest],
        )
        with contextlib.suppress(ValueError):  # not JSON at all: json.loads refused it
            await request.json()
        return checked_body(request)

    return asyncio.run(read())


def _decoded_path(raw: bytes) -> Any:
    """What the decoded path makes of it: json.loads, then the fast check (None: refused)."""
    try:
        document = json.loads(raw)
    except ValueError:
        return None
    return push.check_fast(document)


def _agree(raw: bytes) -> None:
    """The one-pass check accepts a text only as the decoded path does, with the same values;
    it leaves to that path only texts with an infinite value, a bad-text escape or a UTF-8
    byte-order mark (which json.loads skips)."""
    one_pass, decoded = _json_path(raw), _decoded_path(raw)
    if one_pass is not None:
        assert repr(one_pass) == repr(decoded)  # repr: NaN != NaN
    elif decoded is not None and not raw_text_may_be_bad(raw) and not raw.startswith(BOM_UTF8):
        assert any(math.isinf(s["value"]) for s in decoded["samples"])


JSON_TEXTS: list[tuple[str, bytes, bool]] = [
    ("plain", b'{"samples": [{"name": "a", "value": 1}]}', True),
    ("NaN literal", b'{"samples": [{"name": "a", "value": NaN}]}', True),
    ("Infinity literal", b'{"samples": [{"name": "a", "value": Infinity}]}', False),
    (
        "an integer too large for a float",
        b'{"samples": [{"name": "a", "value": 1%s}]}' % (b"0" * 400),
        False,
    ),
    ("1e400", b'{"samples": [{"name": "a", "value": 1e400}]}', False),
    ("1e-400", b'{"samples": [{"name": "a", "value": 1e-400}]}', True),
    ("an integer of 30 digits", b'{"samples": [{"name": "a", "value": %s}]}' % (b"9" * 30), True),
    ("a key twice", b'{"samples": [{"name": "a", "value": 1, "value": 2}]}', True),
    (
        "a tag twice",
        b'{"samples": [{"name": "a", "value": 1, "tags": {"x": "1", "y": "2", "x": "3"}}]}',
        True,
    ),
    ("samples twice", b'{"samples": [{"name": "a", "value": 1}], "samples": []}', True),
    ("UTF-8 text", '{"samples": [{"name": "a", "value": 1, "tags": {"é": "ü"}}]}'.encode(), True),
    ("escaped text", b'{"samples": [{"name": "a", "value": 1, "tags": {"\\u00e9": "\\n"}}]}', True),
    ("a byte-order mark", b'\xef\xbb\xbf{"samples": []}', False),
    ("trailing data", b'{"samples": []} x', False),
    ("whitespace around", b' \n{"samples": []}\t ', True),
    ("a leading zero", b'{"samples": [{"name": "a", "value": 01}]}', False),
    ("not UTF-8", b'{"samples": [{"name": "a", "value": 1, "tags": {"a": "\xff"}}]}', False),
    (
        "an escaped NUL",
        b'{"samples": [{"name": "a", "value": 1, "tags": {"a": "\\u0000"}}]}',
        False,
    ),
    (
        "a lone surrogate",
        b'{"samples": [{"name": "a", "value": 1, "tags": {"a": "\\ud800"}}]}',
        False,
    ),
    ("timestamp a float", b'{"samples": [{"name": "a", "value": 1, "timestamp": 1.5e9}]}', True),
    ("timestamp 1e20", b'{"samples": [{"name": "a", "value": 1, "timestamp": 1e20}]}', False),
]


@pytest.mark.parametrize(
    ("raw", "in_one_pass"), [c[1:] for c in JSON_TEXTS], ids=[c[0] for c in JSON_TEXTS]
)
def test_one_pass_check_reads_a_text_as_json_loads_does(raw: bytes, in_one_pass: bool) -> None:
    assert (_json_path(raw) is not None) == in_one_pass
    _agree(raw)


@settings(max_examples=300, deadline=None)
@given(BATCH, st.booleans())
def test_one_pass_check_and_decoded_path_agree_on_any_text(document: Any, ascii: bool) -> None:
    _agree(json.dumps(document, ensure_ascii=ascii).encode("utf-8", "surrogatepass"))


def test_push_decodes_an_accepted_body_in_one_pass(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accepted push body is decoded by the one-pass check alone (json.loads never sees it);
    one that check leaves to the decoded path gets the model's answer through the API."""
    api.ok(api.post("/environments", {"name": "prod"}), 201)
    loads = json.loads
    seen: list[bytes] = []

    def counting(text: Any, **kwargs: Any) -> Any:
        if isinstance(text, bytes) and b'"samples"' in text:
            seen.append(text)
        return loads(text, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}
    body = (
        b'{"environment": "prod", "samples": '
        b'[{"name": "a", "value": 1}, {"name": "a", "value": Infinity}]}'
    )
    got = api.client.post("/api/v1/metrics/ingest", content=body, headers=headers)
    assert got.status_code == 200, got.text
    assert got.json() == {"written": 1, "environment": "prod"}
    assert seen == [body]  # an infinite value: left to json.loads, stored as before
    seen.clear()
    got = api.client.post(
        "/api/v1/metrics/ingest", content=body.replace(b"Infinity", b"2"), headers=headers
    )
    assert got.json() == {"written": 2, "environment": "prod"}
    assert seen == []
    huge = body.replace(b"Infinity", b"1" + b"0" * 400)
    refused = api.client.post("/api/v1/metrics/ingest", content=huge, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == [
        {"field": "samples.1.value", "rule": "Input should be a valid number"}
    ]


def test_push_refuses_a_timestamp_without_a_time_zone(api: Api) -> None:
    api.ok(api.post("/environments", {"name": "prod"}), 201)
    naive = api.post(
        "/metrics/ingest",
        {"environment": "prod", "samples": [_one(timestamp="2026-12-01T12:00:00")["samples"][0]]},
    )
    assert naive.status_code == 422, naive.text
    assert naive.json()["detail"] == [
        {"field": "samples.0.timestamp", "rule": "Input should have timezone info"}
    ]


def test_push_errors_are_the_models(api: Api) -> None:
    api.ok(api.post("/environments", {"name": "prod"}), 201)
    bad = api.post(
        "/metrics/ingest",
        {"environment": "prod", "samples": [OK, {"name": "bad name", "value": 1, "x": 2}]},
    )
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        {
            "field": "samples.1.name",
            "rule": "String should match pattern '^[A-Za-z_:][A-Za-z0-9_:.\\-]*$'",
        },
        {"field": "samples.1.x", "rule": "Extra inputs are not permitted"},
    ]
    too_many = api.post("/metrics/ingest", {"environment": "prod", "samples": [OK] * 10_001})
    assert too_many.json()["detail"] == [
        {
            "field": "samples",
            "rule": "List should have at most 10000 items after validation, not 10001",
        }
    ]
    headers = {"Authorization": f"Bearer {api.token}"}
    missing = api.client.post("/api/v1/metrics/ingest", headers=headers)
    assert missing.status_code == 422
    assert missing.json()["detail"] == [{"field": "body", "rule": "Field required"}]
    not_json = api.client.post(
        "/api/v1/metrics/ingest",
        content=b"{not json",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 422 and not_json.json()["detail"][0]["field"] == "1"
    as_text = api.client.post(
        "/api/v1/metrics/ingest", content=b"{}", headers={**headers, "Content-Type": "text/plain"}
    )
    assert as_text.status_code == 422 and as_text.json()["detail"][0]["field"] == "body"


def test_push_stores_values_and_skips_non_finite_ones(api: Api) -> None:
    api.ok(api.post("/environments", {"name": "prod"}), 201)
    body = (
        b'{"environment": "prod", "samples": ['
        b'{"name": "q", "value": NaN}, {"name": "q", "value": Infinity},'
        b'{"name": "q", "value": 7, "tags": {"environment": "other", "a": "b"},'
        b' "timestamp": "2026-12-01T13:00:00+01:00", "unit": "ms", "source": "external"}]}'
    )
    got = api.client.post(
        "/api/v1/metrics/ingest",
        content=body,
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    assert got.status_code == 200, got.text
    assert got.json() == {"written": 1, "environment": "prod"}
    (series,) = api.ok(api.get("/metrics/series", params={"name": "q"}))
    assert series["tags"] == {"environment": "prod", "a": "b"}
    assert (series["unit"], series["source"]) == ("ms", "external")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abc"), st.sampled_from("abc"), max_size=3),
    st.dictionaries(st.sampled_from("abc"), st.sampled_from("abc"), max_size=3),
)
def test_push_keys_of_different_tags_differ(a: dict[str, str], b: dict[str, str]) -> None:
    """The memory's flat key (name, tag keys, tag values) names one tag set: keys and values
    drawn from the same letters never make two tag sets collide."""
    same = push.push_key({"name": "m", "value": 1.0, "tags": a}) == push.push_key(
        {"name": "m", "value": 1.0, "tags": b}
    )
    assert same == (list(a.items()) == list(b.items()))


def _stored(db_url: str) -> list[tuple[str, list[tuple[str, str]], int]]:
    """(name, sorted tag items, samples) of every series, as the store holds them."""
    url = sa.engine.make_url(db_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(MetricSeries.name, MetricSeries.tags, sa.func.count())
                .join(metric_samples, metric_samples.c.series_id == MetricSeries.id)
                .group_by(MetricSeries.id, MetricSeries.name, MetricSeries.tags)
            ).all()
    finally:
        engine.dispose()
    return sorted((n, sorted(t.items()), c) for n, t, c in rows)


def test_push_memory_files_each_sample_under_its_own_series(api: Api, db_url: str) -> None:
    """The process remembers pushed series per environment by name and tags as sent: a new tag
    set, another tag order, a tag of another environment or the same series in another
    environment each land where the store's own identity (name + sorted tags) puts them, on
    the push that creates the series and on the next ones, served from the memory."""
    for env in ("prod", "staging"):
        api.ok(api.post("/environments", {"name": env}), 201)
    tag_sets: list[dict[str, str]] = [
        {},
        {"a": "1"},
        {"a": "2"},
        {"a": "1", "b": "x"},
        {"b": "x", "a": "1"},  # the series above, in another order
        {"environment": "other", "a": "1"},  # the {"a": "1"} series of the pushed environment
        {"a": "b", "c": "d"},
        {"a": "c", "b": "d"},
    ]
    for _ in range(2):  # the first push creates the series, the second finds them remembered
        for env in ("prod", "staging"):
            body = {
                "environment": env,
                "samples": [{"name": "m", "value": 1.0, "tags": t} for t in tag_sets],
            }
            assert api.ok(api.post("/metrics/ingest", body)) == {"written": 8, "environment": env}
    expected = [
        ("m", sorted({**tags, "environment": env}.items()), count)
        for env in ("prod", "staging")
        for tags, count in (
            ({}, 2),
            ({"a": "1"}, 4),
            ({"a": "2"}, 2),
            ({"a": "1", "b": "x"}, 4),
            ({"a": "b", "c": "d"}, 2),
            ({"a": "c", "b": "d"}, 2),
        )
    ]
    assert _stored(db_url) == sorted(expected)


def test_push_keeps_the_text_rules_of_every_body(api: Api) -> None:
    """The push body's checked shape stands in for the walk over its containers: a body the
    shape refuses still gets the nesting rule, and text no store can hold is refused whatever
    the shape, before the body's own rules (the field named)."""
    api.ok(api.post("/environments", {"name": "prod"}), 201)
    deep: Any = "x"
    for _ in range(70):
        deep = {"k": deep}
    nested = api.post("/metrics/ingest", {"environment": "prod", "samples": [{**OK, "x": deep}]})
    assert nested.status_code == 422, nested.text
    (detail,) = nested.json()["detail"]
    assert detail["rule"] == "must not nest deeper than 64 levels"
    assert detail["field"].startswith("samples.0.x.k.k")
    nul = api.post(
        "/metrics/ingest",
        {"environment": "prod", "samples": [{**OK, "tags": {"a": "b\u0000"}}, {"x": 1}]},
    )
    assert nul.status_code == 422, nul.text
    assert nul.json()["detail"] == [
        {"field": "samples.0.tags.a", "rule": "must not contain the NUL character (\\u0000)"}
    ]
    accepted = api.post("/metrics/ingest", {"environment": "prod", "samples": [OK]})
    assert api.ok(accepted) == {"written": 1, "environment": "prod"}


def test_push_memory_is_bounded_over_every_environment_together(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The series memory's bound counts every environment's ids together: many environments
    each under the bound do not add up to an unbounded memory."""
    from pilothouse.metrics import samples

    class Bound:  # stands in for an engine: the memory is keyed by the session's bind
        pass

    class Session:
        def __init__(self) -> None:
            self.bind = Bound()

    monkeypatch.setattr(samples, "KNOWN_LIMIT", 3)
    session: Any = Session()
    samples.known_ids(session, "prod").update({"a": 1, "b": 2})
    samples.known_ids(session, "staging").update({"c": 3, "d": 4})
    assert samples.known_ids(session, "prod") == {}  # 4 ids in all, over the bound of 3
    assert samples.known_ids(session, "staging") == {}
