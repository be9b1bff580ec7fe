"""``kiosk-hq publish BUNDLE --broker URL``: put a signed list on the broker, retained.

Order matters: every chunk is published (retained, QoS 1, each confirmed by the
broker) before the manifest that names them, so a device never sees a manifest
whose chunks are not there. Then the chunks the previous retained manifest named and
the new one does not are cleared (an empty retained message deletes one).
"""

import hashlib
import sys
import threading
import uuid

from kiosk.core import bundle
from kiosk.errors import BundleError
from sync import protocol
from sync.hq.common import HqError, add_broker_args, close, connect, settings_from_args

MARKER_WAIT_S = 15.0


def register(sub) -> None:
    p = sub.add_parser("publish", help="publish a signed bundle to devices over MQTT (retained)")
    p.add_argument("bundle", help="bundle directory or .tar made by kiosk-hq sign")
    add_broker_args(p)
    p.add_argument("--db", help="also record the codes' max_uses in this HQ database "
                                "(collect uses it to flag over-redemptions)")
    p.set_defaults(handler=cmd_publish)


def read_bundle(path) -> tuple[bundle.Manifest, bytes, object]:
    """The manifest, its signature and the open source; chunk hashes are checked first."""
    source = bundle.open_source(path)
    raw = source.read_bytes(bundle.MANIFEST)
    signature = source.read_bytes(bundle.SIGNATURE)
    manifest = bundle.parse_manifest(raw)
    if len(signature) != 64:
        raise BundleError("bad_signature", "manifest.sig must be a raw 64-byte Ed25519 signature")
    for chunk in manifest.chunks:
        if hashlib.sha256(source.read_bytes(chunk.name)).hexdigest() != chunk.sha256:
            raise BundleError("chunk_hash", f"chunk {chunk.name}: sha256 does not match the manifest")
    return manifest, signature, source


def _old_manifest(client, program: str) -> bundle.Manifest | None:
    """The manifest currently retained on the broker, if any (to clear its old chunks).

    A marker message is published right after subscribing: the broker handles one
    connection's packets in order, so when the marker comes back any retained
    manifest has already been delivered.
    """
    topic = protocol.manifest_topic(program)
    marker = f"{protocol.program_root(program)}/hq/marker/{uuid.uuid4().hex}"
    got: dict = {}
    done = threading.Event()

    def on_message(c, userdata, msg):
        if msg.topic == topic:
            got["payload"] = msg.payload
        elif msg.topic == marker:
            done.set()

    client.on_message = on_message
    client.subscribe([(topic, 1), (marker, 1)])
    client.publish(marker, b"", qos=1)
    if not done.wait(MARKER_WAIT_S):
        raise HqError("the broker did not echo the marker message; is the hq user's ACL right?")
    client.unsubscribe([topic, marker])
    client.on_message = None
    if not got.get("payload"):
        return None
    try:
        raw, _sig = protocol.decode_manifest(got["payload"])
        return bundle.parse_manifest(raw)
    except (protocol.ProtocolError, BundleError):
        return None  # a broken old manifest: its chunks cannot be known


def publish(settings, path, *, log=print) -> bundle.Manifest:
    manifest, signature, source = read_bundle(path)
    program = manifest.program
    client = connect(settings, f"hq-publish-{uuid.uuid4().hex[:8]}")
    try:
        old = _old_manifest(client, program)
        sent = set()
        for chunk in manifest.chunks:
            if chunk.sha256 in sent:
                continue
            _send(client, protocol.chunk_topic(program, chunk.sha256), source.read_bytes(chunk.name))
            sent.add(chunk.sha256)
        _send(client, protocol.manifest_topic(program),
              protocol.encode_manifest(manifest.raw, signature))
        stale = {c.sha256 for c in old.chunks} - sent if old else set()
        for sha in stale:
            _send(client, protocol.chunk_topic(program, sha), b"")
    finally:
        close(client)
        source.close()
    log(f"published {program} version {manifest.version} ({manifest.record_count:,} records, "
        f"{len(sent)} chunk(s)) to {settings.url}; cleared {len(stale)} old chunk(s)")
    return manifest


def _send(client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1, retain=True)
    info.wait_for_publish(timeout=120)
    if not info.is_published():
        raise HqError(f"the broker did not confirm {topic}")


def cmd_publish(args) -> int:
    try:
        manifest = publish(settings_from_args(args), args.bundle)
        if args.db:
            from sync.hq.db import HqDb

            db = HqDb(args.db)
            try:
                program, count = db.load_bundle(args.bundle)
            finally:
                db.close()
            print(f"recorded max_uses of {count:,} code(s) of {program} in {args.db}")
    except (BundleError, RuntimeError, ValueError, OSError) as exc:
        print(f"kiosk-hq: publish: {exc}", file=sys.stderr)
        return 1
    return 0 if manifest else 1
