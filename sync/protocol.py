"""MQTT wire contract v1 (DESIGN.md section 5): topic names and message bodies.

Everything that both sides (the device agent and the HQ tools) must agree on lives
here, so a change to the contract is a change to this one module.
"""

import base64
import binascii
import json
import operator
from dataclasses import dataclass

from kiosk.core import timefmt
from kiosk.core.audit import KINDS as ACTIVITY_KINDS
from kiosk.core.events import FIELDS as EVENT_FIELDS  # the contract's fields
from kiosk.core.events import Event  # noqa: F401 (re-exported: the contract's type)
from kiosk.errors import ProtocolError

ROOT = "kiosk/v1"
OFFLINE = b"offline"


def program_root(program: str) -> str:
    return f"{ROOT}/{program}"


def manifest_topic(program: str) -> str:
    return f"{ROOT}/{program}/codes/manifest"


def chunk_topic(program: str, sha256: str) -> str:
    return f"{ROOT}/{program}/codes/chunks/{sha256}"


def device_topic(program: str, store: str, device: str, leaf: str) -> str:
    """``leaf`` is ``redemptions``, ``acks``, ``status`` or ``activity``."""
    return f"{ROOT}/{program}/stores/{store}/devices/{device}/{leaf}"


def live_topic(program: str, store: str) -> str:
    return f"{ROOT}/{program}/stores/{store}/live"


RELAY_SENDER = "device"  # MQTT v5 user property of a relayed fan-out message


def relay_properties(device: str):
    """PUBLISH properties naming the device whose events a relayed message holds, so
    that device can skip its own events without decoding them (optional; HQ only)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = (RELAY_SENDER, device)
    return props


def relay_sender(properties) -> str | None:
    """The device a relayed message names in its user property, if any."""
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key == RELAY_SENDER:
            return value
    return None


def redemptions_filter(program: str = "+") -> str:
    return f"{ROOT}/{program}/stores/+/devices/+/redemptions"


def status_filter(program: str = "+") -> str:
    return f"{ROOT}/{program}/stores/+/devices/+/status"


def activity_filter(program: str = "+") -> str:
    return f"{ROOT}/{program}/stores/+/devices/+/activity"


@dataclass(frozen=True)
class DeviceTopic:
    program: str
    store: str
    device: str
    leaf: str


def parse_device_topic(topic: str) -> DeviceTopic:
    parts = topic.split("/")
    if len(parts) != 8 or "/".join(parts[:2]) != ROOT or parts[3] != "stores" or parts[5] != "devices":
        raise ProtocolError(f"not a device topic: {topic!r}")
    return DeviceTopic(parts[2], parts[4], parts[6], parts[7])


# -- bounded JSON -------------------------------------------------------------------
# Every message body is untrusted bytes. Before ``json.loads`` sees them they must be
# under a size cap and a nesting-depth bound: Python's parser recurses per level, and
# 200 KB of ``[[[[...`` raised RecursionError in the agent, for ever (retained poison).
MAX_EVENTS = 1000                    # events in one message (the agent sends up to 250)
MAX_EVENTS_BYTES = 2 * 1024 * 1024   # 1,000 events of ~350 bytes, with room
MAX_ACK_BYTES = 1024 * 1024          # 8 batches of 250 ids of 36 characters
MAX_MANIFEST_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_TEXT = 256                       # any string field of an event
MAX_DEPTH = 2                        # events: a list of objects of plain values
HEAD_DEPTH = 3                       # a manifest message with its chain index (a list of objects)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(payload: bytes, limit: int) -> bool:
    """True if JSON bytes nest ``[``/``{`` deeper than ``limit`` (strings skipped).
    Cheap: a count of brackets settles most messages; otherwise the strings are cut
    out (escaped backslashes and quotes dropped, then every other piece between
    quotes) and only the brackets left are walked: all but that walk in C. (Bytes
    that are not JSON may be measured oddly, but ``json.loads`` refuses them anyway.)"""
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return False
    if b"\\" in payload:
        payload = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    depth = 0
    for token in b"".join(payload.split(b'"')[::2]).translate(None, _NOT_BRACKET):
        if token in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def load_json(payload: bytes, what: str, *, max_bytes: int, max_depth: int = MAX_DEPTH):
    """``json.loads`` of untrusted bytes, or :class:`ProtocolError` - never anything else."""
    if not isinstance(payload, (bytes, bytearray)):
        raise ProtocolError(f"{what} is not bytes")
    if len(payload) > max_bytes:
        raise ProtocolError(f"{what} is {len(payload):,} bytes, more than {max_bytes:,}")
    if too_deep(bytes(payload), max_depth):
        raise ProtocolError(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"{what} is not JSON ({str(exc)[:80]})") from None


# -- bodies ---------------------------------------------------------------------
def encode_manifest(manifest: bytes, signature: bytes) -> bytes:
    return json.dumps({"manifest": base64.b64encode(manifest).decode(),
                       "signature": base64.b64encode(signature).decode()}).encode()


def decode_manifest(payload: bytes) -> tuple[bytes, bytes]:
    """The exact manifest.json bytes and the raw signature from a manifest message."""
    obj = load_json(payload, "manifest message", max_bytes=MAX_MANIFEST_MESSAGE_BYTES,
                    max_depth=HEAD_DEPTH)
    try:
        return (base64.b64decode(obj["manifest"], validate=True),
                base64.b64decode(obj["signature"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ProtocolError(f"manifest message is not {{manifest, signature}} base64 JSON ({exc})") from None


def encode_events(events: list[dict]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


_OPTIONAL_TEXT = ("voids", "reward_id", "clock", "staff", "device", "store")
_OPTIONAL_INT = ("seq", "list_version")
_texts = operator.itemgetter(*_OPTIONAL_TEXT)
_TEXT_TYPES = frozenset((str, type(None)))


def check_event(event) -> dict:
    """One event as contract v1 has it (docs/sync.md), or :class:`ProtocolError`.

    Only the fields of :class:`Event` are kept (missing ones are None); strings are
    bounded; ``at`` must be an RFC 3339 time; a void names the redemption it undoes.

    HQ checks every event it receives, so the usual one (values of exactly the JSON
    types wanted) is settled here with a few comparisons, mostly in C; anything else
    goes through :func:`_check_event_fully`, which accepts or names what is wrong."""
    if isinstance(event, dict):
        out = dict(zip(EVENT_FIELDS, map(event.get, EVENT_FIELDS), strict=True))
        event_id, kind, code_hash, at = out["id"], out["kind"], out["code_hash"], out["at"]
        seq, list_version, texts = out["seq"], out["list_version"], _texts(out)
        if (type(event_id) is str and 0 < len(event_id) <= 64 and event_id.isprintable()
                and (kind == "redeem" or (kind == "void" and out["voids"]))
                and type(code_hash) is str and 0 < len(code_hash) <= 128
                and _TEXT_TYPES.issuperset(map(type, texts))
                and max(map(len, filter(None, texts)), default=0) <= MAX_TEXT
                and (seq is None or (type(seq) is int and 0 <= seq < 2**63))
                and (list_version is None or (type(list_version) is int
                                              and 0 <= list_version < 2**63))
                and (at is None or _is_time(at))):
            return out
    return _check_event_fully(event)


def _is_time(at) -> bool:
    """An RFC 3339 time as the wire carries it (a string of at most 64 characters)."""
    if type(at) is not str or len(at) > 64:
        return False
    try:
        timefmt.parse(at)
    except (ValueError, OverflowError):
        return False
    return True


def _check_event_fully(event) -> dict:
    """:func:`check_event` field by field, naming the first thing wrong."""
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise ProtocolError("every event must be an object with a string id")
    event_id = event["id"]
    if not 0 < len(event_id) <= 64 or not event_id.isprintable():
        raise ProtocolError("event id must be 1-64 printable characters")
    if event.get("kind") not in ("redeem", "void"):
        raise ProtocolError(f"event {event_id}: kind must be redeem or void")
    code_hash = event.get("code_hash")
    if not isinstance(code_hash, str) or not 0 < len(code_hash) <= 128:
        raise ProtocolError(f"event {event_id}: code_hash must be a string")
    for key in _OPTIONAL_TEXT:
        value = event.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise ProtocolError(f"event {event_id}: {key} must be a string of at most {MAX_TEXT}")
    for key in _OPTIONAL_INT:
        value = event.get(key)
        if value is not None and (type(value) is not int or not 0 <= value < 2**63):
            raise ProtocolError(f"event {event_id}: {key} must be a whole number")
    if event["kind"] == "void" and not event.get("voids"):
        raise ProtocolError(f"event {event_id}: a void must name the redemption it voids")
    at = event.get("at")
    if at is not None and not _is_time(at):
        raise ProtocolError(f"event {event_id}: at must be an RFC 3339 time")
    return Event.from_dict(event).to_dict()


def _load_list(payload: bytes, what: str, items: str, max_bytes: int, max_items: int,
               check) -> list[dict]:
    """A bounded JSON list whose every item passes ``check``; one bad item refuses it."""
    found = load_json(payload, what, max_bytes=max_bytes)
    if not isinstance(found, list):
        raise ProtocolError(f"{what} must be a JSON list")
    if len(found) > max_items:
        raise ProtocolError(f"{what} holds {len(found):,} {items}, more than {max_items:,}")
    return [check(item) for item in found]


def decode_events(payload: bytes) -> list[dict]:
    """A list of checked events (:func:`check_event`); one bad event refuses the message."""
    return _load_list(payload, "events message", "events", MAX_EVENTS_BYTES, MAX_EVENTS,
                      check_event)


def encode_ack(ids: list[str], conflicts: list[str] | None = None, *,
               activity: int | None = None) -> bytes:
    """``activity``: the highest audit row ``n`` HQ stored from an activity message
    (optional; devices older than the field ignore it)."""
    body: dict = {"ids": ids, "conflicts": conflicts or []}
    if activity is not None:
        body["activity"] = activity
    return json.dumps(body, separators=(",", ":")).encode()


def decode_ack(payload: bytes) -> tuple[list[str], list[str]]:
    ids, conflicts, _ = decode_ack_full(payload)
    return ids, conflicts


def decode_ack_full(payload: bytes) -> tuple[list[str], list[str], int | None]:
    """ids, conflicts and the optional ``activity`` row number of an ack."""
    obj = load_json(payload, "ack", max_bytes=MAX_ACK_BYTES, max_depth=2)
    try:
        ids, conflicts, activity = obj["ids"], obj.get("conflicts", []), obj.get("activity")
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"ack is not {{ids, conflicts}} JSON ({exc})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ProtocolError("ack ids must be a list of strings")
    if not isinstance(conflicts, list) or not all(isinstance(c, str) for c in conflicts):
        raise ProtocolError("ack conflicts must be a list of strings")
    if activity is not None and not _int(activity):
        raise ProtocolError("ack activity must be a whole number from 0 to 2**63-1")
    return ids, conflicts, activity


# -- activity: the counter's audit rows, low priority (sync/activity.py) ---------------
MAX_ACTIVITY = 500                   # rows in one message (the agent sends up to 200)
MAX_ACTIVITY_BYTES = 512 * 1024      # 500 rows of ~300 bytes, with room
ACTIVITY_TEXT = ("source", "verdict", "reward_id", "code_hash")  # optional strings
ACTIVITY_FIELDS = ("n", "at", "kind", *ACTIVITY_TEXT)


def encode_activity(rows: list[dict]) -> bytes:
    """Audit rows as sent: only :data:`ACTIVITY_FIELDS` (never a raw payload)."""
    return json.dumps([{k: r.get(k) for k in ACTIVITY_FIELDS if r.get(k) is not None}
                       for r in rows], separators=(",", ":")).encode()


def check_activity(row) -> dict:
    if not isinstance(row, dict) or not _int(row.get("n")):
        raise ProtocolError("every activity row must be an object with a whole number n")
    n = row["n"]
    if row.get("kind") not in ACTIVITY_KINDS:
        raise ProtocolError(f"activity row {n}: kind must be one of {', '.join(ACTIVITY_KINDS)}")
    if not _is_time(row.get("at")):
        raise ProtocolError(f"activity row {n}: at must be an RFC 3339 time")
    for key in ACTIVITY_TEXT:
        value = row.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise ProtocolError(f"activity row {n}: {key} must be a string of at most {MAX_TEXT}")
    return {k: row.get(k) for k in ACTIVITY_FIELDS}


def decode_activity(payload: bytes) -> list[dict]:
    """A list of checked audit rows; one bad row refuses the message."""
    return _load_list(payload, "activity message", "rows", MAX_ACTIVITY_BYTES, MAX_ACTIVITY,
                      check_activity)


# -- the list chain (optional, v1-compatible) -------------------------------------------
# Besides the retained head ``codes/manifest`` (what every v1 device reads), HQ keeps
# the chain retained: the latest full snapshot on ``codes/snapshot`` and each delta
# since it on ``codes/delta/{base_version}``, in the same {manifest, signature} body.
# The head message may carry an unsigned ``chain`` index of them, so a device can plan
# the path with the fewest bytes before fetching anything; each manifest on the path is
# verified as usual, so a wrong index only costs a fallback to the snapshot.
def snapshot_topic(program: str) -> str:
    return f"{ROOT}/{program}/codes/snapshot"


def delta_topic(program: str, base_version: int) -> str:
    return f"{ROOT}/{program}/codes/delta/{int(base_version)}"


def encode_head(manifest: bytes, signature: bytes, chain: list[dict]) -> bytes:
    """The head message: :func:`encode_manifest` plus the chain index
    ``[{"version", "base_version", "bytes"}]`` (snapshot first)."""
    body = json.loads(encode_manifest(manifest, signature))
    body["chain"] = chain
    return json.dumps(body).encode()


def decode_chain(payload: bytes) -> list[dict]:
    """The chain index of a head message ([] when absent or malformed: plan without it)."""
    try:
        chain = load_json(payload, "manifest message", max_bytes=MAX_MANIFEST_MESSAGE_BYTES,
                          max_depth=HEAD_DEPTH).get("chain")
    except (ProtocolError, AttributeError):
        return []
    if not isinstance(chain, list):
        return []
    out = []
    for entry in chain[:10_000]:
        if not isinstance(entry, dict):
            return []
        version, base, size = entry.get("version"), entry.get("base_version"), entry.get("bytes", 0)
        if not (_int(version) and (base is None or _int(base)) and _int(size)):
            return []
        out.append({"version": version, "base_version": base, "bytes": size})
    return out


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
