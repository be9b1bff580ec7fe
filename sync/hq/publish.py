"""``kiosk-hq publish BUNDLE --broker URL``: put a signed list on the broker, retained.

The broker keeps a chain (docs/sync.md): the latest full snapshot on
``codes/snapshot``, each delta since it on ``codes/delta/{base_version}`` and the
newest of them all on ``codes/manifest`` (the head every device reads, with an index
of the chain). Order matters: every chunk is published (retained, QoS 1, each
confirmed by the broker) before a manifest that names them, so a device never sees a
manifest whose chunks are not there. Then deltas and chunks no longer in the chain
are cleared (an empty retained message deletes one): a new full snapshot prunes the
whole previous chain.
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


def _retained(client, program: str) -> dict[str, bytes]:
    """The list messages retained on the broker now: the head, the snapshot and every
    delta (topic -> payload).

    A marker message is published right after subscribing: the broker handles one
    connection's packets in order, so when the marker comes back every retained
    message has already been delivered.
    """
    topics = [protocol.manifest_topic(program), protocol.snapshot_topic(program),
              protocol.delta_topic(program, 0)[:-1] + "+"]
    marker = f"{protocol.program_root(program)}/hq/marker/{uuid.uuid4().hex}"
    got: dict = {}
    done = threading.Event()

    def on_message(c, userdata, msg):
        if msg.topic == marker:
            done.set()
        elif msg.payload:
            got[msg.topic] = msg.payload

    # callbacks for these topics only: a collector's client (serve) keeps its on_message
    for topic in [*topics, marker]:
        client.message_callback_add(topic, on_message)
    try:
        client.subscribe([(t, 1) for t in topics] + [(marker, 1)])
        client.publish(marker, b"", qos=1)
        if not done.wait(MARKER_WAIT_S):
            raise HqError("the broker did not echo the marker message; is the hq user's ACL right?")
        client.unsubscribe([*topics, marker])
    finally:
        for topic in [*topics, marker]:
            client.message_callback_remove(topic)
    return got


def _parse(payload: bytes | None) -> bundle.Manifest | None:
    if not payload:
        return None
    try:
        raw, _sig = protocol.decode_manifest(payload)
        return bundle.parse_manifest(raw)
    except (protocol.ProtocolError, BundleError):
        return None  # a broken old message: its chunks cannot be known


def _old_chain(retained: dict[str, bytes], program: str) -> list[tuple[bundle.Manifest, bytes, int]]:
    """The chain on the broker, snapshot first: (manifest, message, bytes) per element.
    A head published before chains existed counts as a one-element chain if it is a
    full snapshot."""
    head = _parse(retained.get(protocol.manifest_topic(program)))
    sizes = {e["version"]: e["bytes"] for e in
             protocol.decode_chain(retained.get(protocol.manifest_topic(program), b""))}
    snap_payload = retained.get(protocol.snapshot_topic(program))
    snap = _parse(snap_payload)
    if snap is None and head is not None and not head.is_delta:
        snap, snap_payload = head, retained[protocol.manifest_topic(program)]
    if snap is None or head is None:
        return []
    chain = [(snap, protocol.encode_manifest(*protocol.decode_manifest(snap_payload)),
              sizes.get(snap.version, 0))]
    while chain[-1][0].version != head.version:
        payload = retained.get(protocol.delta_topic(program, chain[-1][0].version))
        delta = _parse(payload)
        if delta is None:
            return chain if head.version == chain[-1][0].version else []
        chain.append((delta, payload, sizes.get(delta.version, 0)))
    return chain


def publish(settings, path, *, log=print, client=None) -> bundle.Manifest:
    """Publish a bundle as the new head of the chain, then prune what it replaces.

    A full snapshot starts a new chain; a delta extends the chain on the broker and must
    apply on its latest version. Order: chunks, then the chain message, then the head,
    so a device never sees a manifest whose chunks are not there; then the delta
    messages and chunks no longer in the chain are cleared. ``client``: a connected
    client to publish with (``serve``'s collector: the broker allows one connection
    per login); by default a connection of its own."""
    manifest, signature, source = read_bundle(path)
    program = manifest.program
    own = client is None
    try:
        client = client or connect(settings, f"hq-publish-{uuid.uuid4().hex[:8]}")
    except BaseException:
        source.close()
        raise
    try:
        retained = _retained(client, program)
        old = _old_chain(retained, program)
        if manifest.is_delta:
            tip = old[-1][0].version if old else None
            if tip != manifest.base_version:
                raise HqError(f"delta {manifest.version} applies on version {manifest.base_version}, "
                              f"but the broker's chain ends at {tip if tip is not None else 'no snapshot'}: "
                              "publish the missing versions or a full snapshot first")
            keep = old
        else:
            keep = []
        sent, size = set(), 0
        for chunk in manifest.chunks:
            data = source.read_bytes(chunk.name)
            size += len(data)
            if chunk.sha256 in sent:
                continue
            _send(client, protocol.chunk_topic(program, chunk.sha256), data)
            sent.add(chunk.sha256)
        message = protocol.encode_manifest(manifest.raw, signature)
        chain = [*keep, (manifest, message, size)]
        if keep and protocol.snapshot_topic(program) not in retained:  # a pre-chain head
            _send(client, protocol.snapshot_topic(program), keep[0][1])
        _send(client, protocol.snapshot_topic(program) if not manifest.is_delta
              else protocol.delta_topic(program, manifest.base_version), message)
        index = [{"version": m.version, "base_version": m.base_version, "bytes": b}
                 for m, _msg, b in chain]
        _send(client, protocol.manifest_topic(program),
              protocol.encode_head(manifest.raw, signature, index))
        stale = _prune(client, program, retained, chain)
    finally:
        if own:
            close(client)
        source.close()
    log(f"published {program} version {manifest.version} ({manifest.record_count:,} records, "
        f"{len(sent)} chunk(s)); chain on the broker: {len(chain)} list(s) from version "
        f"{chain[0][0].version}; cleared {stale} old message(s) to {settings.url}")
    return manifest


def _prune(client, program: str, retained: dict[str, bytes], chain: list) -> int:
    """Clear the delta messages and chunks the new chain does not use."""
    live = {protocol.delta_topic(program, m.base_version) for m, _msg, _b in chain if m.is_delta}
    used = {c.sha256 for m, _msg, _b in chain for c in m.chunks}
    stale_chunks = set()
    for payload in retained.values():
        manifest = _parse(payload)
        if manifest is not None:
            stale_chunks |= {c.sha256 for c in manifest.chunks} - used
    stale = [t for t in retained if t.startswith(protocol.delta_topic(program, 0)[:-1])
             and t not in live]
    stale += [protocol.chunk_topic(program, sha) for sha in stale_chunks]
    for topic in stale:
        _send(client, topic, b"")
    return len(stale)


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
