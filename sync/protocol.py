"""MQTT wire contract v1 (DESIGN.md section 5): topic names and message bodies.

Everything that both sides (the device agent and the HQ tools) must agree on lives
here, so a change to the contract is a change to this one module.
"""

import base64
import binascii
import json
from dataclasses import dataclass

ROOT = "kiosk/v1"
EVENT_FIELDS = ("id", "seq", "device", "store", "kind", "voids", "code_hash", "reward_id",
                "list_version", "at", "clock", "staff")
OFFLINE = b"offline"


class ProtocolError(ValueError):
    """A message on the wire does not follow contract v1."""


def program_root(program: str) -> str:
    return f"{ROOT}/{program}"


def manifest_topic(program: str) -> str:
    return f"{ROOT}/{program}/codes/manifest"


def chunk_topic(program: str, sha256: str) -> str:
    return f"{ROOT}/{program}/codes/chunks/{sha256}"


def device_topic(program: str, store: str, device: str, leaf: str) -> str:
    """``leaf`` is ``redemptions``, ``acks`` or ``status``."""
    return f"{ROOT}/{program}/stores/{store}/devices/{device}/{leaf}"


def live_topic(program: str, store: str) -> str:
    return f"{ROOT}/{program}/stores/{store}/live"


def redemptions_filter(program: str = "+") -> str:
    return f"{ROOT}/{program}/stores/+/devices/+/redemptions"


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


# -- bodies ---------------------------------------------------------------------
def encode_manifest(manifest: bytes, signature: bytes) -> bytes:
    return json.dumps({"manifest": base64.b64encode(manifest).decode(),
                       "signature": base64.b64encode(signature).decode()}).encode()


def decode_manifest(payload: bytes) -> tuple[bytes, bytes]:
    """The exact manifest.json bytes and the raw signature from a manifest message."""
    try:
        obj = json.loads(payload)
        return (base64.b64decode(obj["manifest"], validate=True),
                base64.b64decode(obj["signature"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ProtocolError(f"manifest message is not {{manifest, signature}} base64 JSON ({exc})") from None


def encode_events(events: list[dict]) -> bytes:
    return json.dumps(events, separators=(",", ":")).encode()


def decode_events(payload: bytes) -> list[dict]:
    """A list of events; each must at least carry a string id and a known kind."""
    try:
        events = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"events message is not JSON ({exc})") from None
    if not isinstance(events, list):
        raise ProtocolError("events message must be a JSON list")
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            raise ProtocolError("every event must be an object with a string id")
        if event.get("kind") not in ("redeem", "void") or not isinstance(event.get("code_hash"), str):
            raise ProtocolError(f"event {event['id']}: kind must be redeem or void, with a code_hash")
    return events


def encode_ack(ids: list[str], conflicts: list[str] | None = None) -> bytes:
    return json.dumps({"ids": ids, "conflicts": conflicts or []}, separators=(",", ":")).encode()


def decode_ack(payload: bytes) -> tuple[list[str], list[str]]:
    try:
        obj = json.loads(payload)
        ids, conflicts = obj["ids"], obj.get("conflicts", [])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"ack is not {{ids, conflicts}} JSON ({exc})") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ProtocolError("ack ids must be a list of strings")
    return ids, [str(c) for c in conflicts] if isinstance(conflicts, list) else []


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
        chain = json.loads(payload).get("chain")
    except (ValueError, AttributeError, RecursionError):
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
