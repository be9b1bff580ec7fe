"""Fuzzing every MQTT message decoder (hypothesis): the wire decoders in sync/protocol.py,
the device agent's message handler and the HQ collector's, fed arbitrary bytes, random
JSON (deep, wide, wrongly typed) and mutated valid messages.

Properties: a decoder returns a well-typed value or raises ProtocolError, nothing else;
the agent and the collector never raise, keep working, and no input ever undoes a
redemption made on the kiosk itself. A short bounded pass runs with the test suite;
``FUZZ_EXAMPLES=20000 pytest tests/security/test_fuzz_mqtt.py`` (or ``make fuzz``) runs a long one.
"""

import json
import os
import uuid

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.core.verdict import Verdict
from sync import protocol
from sync.hq.collect import Collector
from sync.hq.db import HqDb

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=40)
FIELD_VALUES = {
    "id": st.one_of(st.uuids().map(str), st.text(max_size=80), json_values),
    "kind": st.one_of(st.sampled_from(["redeem", "void"]), json_values),
    "code_hash": st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), json_values),
    "at": st.one_of(st.just("2026-01-01T10:00:00.000Z"), st.text(max_size=30), json_values),
}


@st.composite
def event_like(draw):
    """Mostly event-shaped objects with some fields wrong, missing or extra."""
    event = {"id": str(uuid.uuid4()), "seq": 1, "device": "k2", "store": "s1",
             "kind": "redeem", "voids": None, "code_hash": "ab" * 32, "reward_id": "coffee",
             "list_version": 1, "at": "2026-01-01T10:00:00.000Z", "clock": "synced",
             "staff": None}
    for key in draw(st.lists(st.sampled_from(sorted(event) + ["extra"]), max_size=4)):
        event[key] = draw(FIELD_VALUES.get(key, json_values))
    for key in draw(st.lists(st.sampled_from(sorted(event)), max_size=2)):
        event.pop(key, None)
    return event


def deep(depth: int, opener: bytes) -> bytes:
    closer = {b"[": b"]", b'{"a":': b"}"}[opener]
    return opener * depth + b"1" + closer * depth


payloads = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(event_like(), max_size=5).map(lambda v: json.dumps(v).encode()),
    st.builds(deep, st.integers(1, 50_000), st.sampled_from([b"[", b'{"a":'])),
    st.builds(lambda ids: json.dumps({"ids": ids}).encode(), json_values),
    st.builds(lambda n: json.dumps({"ids": [], "activity": n}).encode(), json_values),
)


@FUZZ
@given(payloads)
def test_wire_decoders_return_typed_values_or_protocol_errors(payload):
    for decode in (protocol.decode_events, protocol.decode_ack, protocol.decode_manifest,
                   protocol.decode_ack_full, protocol.decode_activity):
        try:
            value = decode(payload)
        except protocol.ProtocolError:
            continue
        if decode is protocol.decode_events:
            assert isinstance(value, list)
            for event in value:
                assert set(event) == set(protocol.EVENT_FIELDS)
                assert isinstance(event["id"], str) and event["kind"] in ("redeem", "void")
                assert isinstance(event["code_hash"], str)
        elif decode is protocol.decode_ack:
            assert all(isinstance(i, str) for part in value for i in part)
        elif decode is protocol.decode_ack_full:
            assert value[2] is None or (type(value[2]) is int and 0 <= value[2] < 2**63)
        elif decode is protocol.decode_activity:
            assert all(set(r) == set(protocol.ACTIVITY_FIELDS) and type(r["n"]) is int
                       and r["kind"] in protocol.ACTIVITY_KINDS for r in value)
        else:
            assert all(isinstance(part, bytes) for part in value)


@FUZZ
@given(st.lists(event_like(), min_size=1, max_size=5))
def test_valid_events_survive_the_wire_unchanged(events):
    try:
        decoded = protocol.decode_events(protocol.encode_events(events))
    except protocol.ProtocolError:
        return
    assert decoded == [{k: e.get(k) for k in protocol.EVENT_FIELDS} for e in events]


def _outcome(check, event):
    try:
        return check(event)
    except protocol.ProtocolError as exc:
        return f"refused: {exc}"


@FUZZ
@given(st.one_of(event_like(), json_values))
def test_the_fast_event_check_agrees_with_the_field_by_field_one(event):
    """check_event settles the usual event with a few comparisons; whatever it is given,
    it accepts, keeps and refuses (with the same words) exactly what the full check does."""
    fast, full = _outcome(protocol.check_event, event), _outcome(protocol._check_event_fully, event)
    assert fast == full
    assert isinstance(fast, str) or list(fast) == list(full)


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


tricky_text = st.text(alphabet='[]{}"\\ab', max_size=8)
nested = st.recursive(st.one_of(scalars, tricky_text), lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(tricky_text, inner, max_size=4)), max_leaves=30)


@FUZZ
@given(nested, st.integers(1, 4), st.booleans())
def test_the_depth_bound_measures_json_as_parsed(value, limit, ascii_only):
    """too_deep skips brackets, quotes and backslashes inside strings: on any JSON it
    says what the parsed value's nesting says."""
    payload = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert protocol.too_deep(payload, limit) == (_depth(value) > limit)


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """A real agent (config, SQLite, paho client) that never connects: messages go
    through its own handler exactly as its worker thread runs them."""
    from helpers import Hq, make_device

    from sync.agent import Agent

    root = tmp_path_factory.mktemp("fuzz-agent")
    hq = Hq(root / "hq")
    assert hq.keygen().rc == 0
    device = make_device(root / "k1", hq, name="k1", store="s1",
                         extra='[mqtt]\nbroker = "mqtt://127.0.0.1:9"\n')  # never connects
    assert device.import_(hq.bundle(["FUZZ-0001", "FUZZ-0002"], 1)).rc == 0
    a = Agent(device.config())
    mine = a.ledger.confirm("FUZZ-0001").redemption_id
    yield a, mine
    a.ledger.store.close()


def aimed_at(payload: bytes, redemption_id: str) -> bytes:
    """The same events, turned into voids of ``redemption_id`` where they are objects."""
    try:
        events = json.loads(payload)
    except (ValueError, RecursionError):
        return payload
    if not isinstance(events, list):
        return payload
    for event in events:
        if isinstance(event, dict):
            event.update(kind="void", voids=redemption_id)
    return json.dumps(events).encode()


@FUZZ
@given(st.sampled_from(["live", "acks", "manifest", "other"]), payloads, st.booleans())
def test_the_agent_survives_any_message_and_keeps_its_own_redemption(agent, leaf, payload, aim):
    a, mine = agent
    topic = a.topics.get(leaf, "kiosk/v1/elsewhere")
    if aim:
        payload = aimed_at(payload, mine)
    a._handle_safely(("message", topic, payload))  # raises nothing
    assert a.ledger.check("FUZZ-0001").verdict is Verdict.ALREADY_REDEEMED
    row = a.ledger.store.conn.execute("SELECT voided_by FROM redemptions WHERE id = ?",
                                      (mine,)).fetchone()
    assert row == (None,)


@pytest.fixture(scope="module")
def collector(tmp_path_factory):
    db = HqDb(tmp_path_factory.mktemp("fuzz-hq") / "hq.sqlite")
    c = Collector(db, "p1")
    yield c
    db.close()


class Message:
    def __init__(self, topic: str, payload: bytes):
        self.topic, self.payload = topic, payload


topics = st.one_of(
    st.just("kiosk/v1/p1/stores/s1/devices/k1/redemptions"),
    st.builds(lambda s, d: f"kiosk/v1/p1/stores/{s}/devices/{d}/redemptions",
              st.text(max_size=10), st.text(max_size=10)),
    st.text(max_size=60),
)


@FUZZ
@given(topics, payloads)
def test_the_collector_survives_any_message(collector, topic, payload):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)  # offline
    before = collector.rejected + collector.stored + collector.duplicates
    collector.on_message(client, None, Message(topic, payload))  # raises nothing
    after = collector.rejected + collector.stored + collector.duplicates
    assert after >= before
    assert collector.db.count("events") >= 0
