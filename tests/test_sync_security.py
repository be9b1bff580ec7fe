"""Broker security with the shipped mosquitto.conf and ACL: TLS, per-device users.

Absence of a message is shown with a sentinel: after the forbidden message, an
allowed one is sent on the same connection; MQTT keeps one publisher's QoS 1
messages in order, so once the sentinel has arrived the forbidden one never will.
"""

import ssl
import threading
import uuid

import pytest

from kiosk import connection
from sync import protocol
from sync.hq.common import HqError, close, connect
from sync.testing import Broker, hq_settings, make_pki, wait_until


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with Broker(tmp_path_factory.mktemp("broker")) as b:
        hq_settings(b, "hq")
        yield b


@pytest.fixture
def program():
    return f"p{uuid.uuid4().hex[:8]}"


class Listener:
    """A connected client that records every message it receives."""

    def __init__(self, settings, topics):
        self.got: list[tuple[str, bytes]] = []
        self.suback = threading.Event()
        self.granted: list = []
        self.client = connect(settings, f"listen-{uuid.uuid4().hex[:6]}")
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))

        def on_subscribe(c, u, mid, reason_codes, props):
            self.granted = reason_codes
            self.suback.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe([(t, 1) for t in topics])
        wait_until(self.suback.is_set, 10, what="SUBACK")

    def topics(self):
        return [t for t, _ in self.got]

    def close(self):
        close(self.client)


def device_settings(broker, program, store, device):
    broker.add_device(program, store, device)
    return hq_settings(broker, device)


def publish(settings, messages):
    client = connect(settings, f"pub-{uuid.uuid4().hex[:6]}")
    try:
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        close(client)


def test_device_cannot_publish_a_manifest_or_chunk(broker, program):
    dev = device_settings(broker, program, "s1", "d1")
    hq = Listener(hq_settings(broker), [f"kiosk/v1/{program}/#"])
    try:
        own = protocol.device_topic(program, "s1", "d1", "status")
        publish(dev, [(protocol.manifest_topic(program), b"{}", True),
                      (protocol.chunk_topic(program, "0" * 64), b"x", True),
                      (own, b"sentinel", True)])
        wait_until(lambda: own in hq.topics(), 10, what="sentinel")
        assert hq.topics() == [own]
    finally:
        hq.close()
    # and nothing was retained under codes/ for a device to pick up later
    late = Listener(hq_settings(broker), [f"kiosk/v1/{program}/#"])
    try:
        wait_until(lambda: own in late.topics(), 10, what="retained sentinel")
        assert late.topics() == [own]
    finally:
        late.close()


def test_device_cannot_impersonate_another_device_or_store(broker, program):
    dev = device_settings(broker, program, "s1", "d1")
    hq = Listener(hq_settings(broker), [protocol.redemptions_filter(program)])
    try:
        own = protocol.device_topic(program, "s1", "d1", "redemptions")
        publish(dev, [(protocol.device_topic(program, "s1", "d2", "redemptions"), b"[]", False),
                      (protocol.device_topic(program, "s2", "d1", "redemptions"), b"[]", False),
                      (own, b"[]", False)])
        wait_until(lambda: own in hq.topics(), 10, what="sentinel")
        assert hq.topics() == [own]
    finally:
        hq.close()


def test_device_cannot_read_another_stores_topics(broker, program):
    dev = device_settings(broker, program, "s1", "d1")
    other_live = protocol.live_topic(program, "s2")
    other_acks = protocol.device_topic(program, "s2", "d9", "acks")
    own_live = protocol.live_topic(program, "s1")
    spy = Listener(dev, [other_live, other_acks, f"kiosk/v1/{program}/stores/#", own_live])
    try:
        # mosquitto 2.0 grants the SUBSCRIBE and enforces "read" on every delivery
        publish(hq_settings(broker), [(other_live, b"[]", False), (other_acks, b"{}", False),
                                      (own_live, b"sentinel", False)])
        wait_until(lambda: own_live in spy.topics(), 10, what="sentinel")
        assert other_live not in spy.topics() and other_acks not in spy.topics()
    finally:
        spy.close()


def test_device_reads_its_programme_codes_only(broker, program):
    dev = device_settings(broker, program, "s1", "d1")
    other = f"q{uuid.uuid4().hex[:8]}"
    publish(hq_settings(broker), [(protocol.manifest_topic(other), b"theirs", True),
                                  (protocol.manifest_topic(program), b"ours", True)])
    spy = Listener(dev, [protocol.manifest_topic(other), protocol.manifest_topic(program)])
    try:
        wait_until(lambda: protocol.manifest_topic(program) in spy.topics(), 10, what="own manifest")
        assert protocol.manifest_topic(other) not in spy.topics()
    finally:
        spy.close()


def test_cannot_connect_without_credentials_or_tls(broker, program, tmp_path):
    good = device_settings(broker, program, "s1", "d1")
    connection_attempts = [
        (connection.BrokerSettings("127.0.0.1", broker.port, True, ca=broker.pki["ca"]), "no user"),
        (connection.BrokerSettings("127.0.0.1", broker.port, True, ca=broker.pki["ca"],
                                   username="d1", password="wrong"), "bad password"),
        (connection.BrokerSettings("127.0.0.1", broker.port, True, ca=broker.pki["ca"],
                                   username="intruder", password="x"), "unknown user"),
    ]
    for settings, why in connection_attempts:
        with pytest.raises(HqError, match="refused|Not authorized"):
            connect(settings, f"bad-{uuid.uuid4().hex[:6]}")
        assert why
    plain = connection.BrokerSettings("127.0.0.1", broker.port, False, username="d1",
                                      password=good.password)
    with pytest.raises(HqError):
        connect(plain, "plain", timeout=5)  # TLS-only listener: no plaintext MQTT
    rogue_ca = make_pki(tmp_path / "rogue")["ca"]
    with pytest.raises((HqError, ssl.SSLError)):
        connect(connection.BrokerSettings("127.0.0.1", broker.port, True, ca=rogue_ca,
                                          username="d1", password=good.password), "mitm")
    close(connect(good, "good"))  # the right credentials do work


def test_client_certificate_login_as_documented(tmp_path, program):
    """The shipped config's alternative: require_certificate + use_identity_as_username."""
    options = {"require_certificate": "true", "use_identity_as_username": "true"}
    from sync.hq import credentials

    b = Broker(tmp_path / "certbroker", clients=("d5", "hqc"), overrides=options)
    credentials.upsert_acl(b.folder / "acl", "d5", credentials.device_acl(program, "s1", "d5"))
    credentials.upsert_acl(b.folder / "acl", "hqc", credentials.hq_acl("hqc"))
    with b:
        base = connection.BrokerSettings("127.0.0.1", b.port, True, ca=b.pki["ca"])
        with_cert = connection.BrokerSettings("127.0.0.1", b.port, True, ca=b.pki["ca"],
                                              cert=b.pki["d5"], key=b.pki["d5.key"])
        hq_cert = connection.BrokerSettings("127.0.0.1", b.port, True, ca=b.pki["ca"],
                                            cert=b.pki["hqc"], key=b.pki["hqc.key"])
        with pytest.raises((HqError, ssl.SSLError)):
            connect(base, "no-cert", timeout=3)
        client = connect(with_cert, "d5")
        try:
            status_topic = protocol.device_topic(program, "s1", "d5", "status")
            got = []
            client.on_message = lambda c, u, m: got.append(m.topic)
            client.subscribe(protocol.live_topic(program, "s1"), qos=1)
            client.publish(status_topic, b"x", qos=1).wait_for_publish(10)
            publish(hq_cert, [(protocol.live_topic(program, "s1"), b"[]", False)])
            wait_until(lambda: got, 10, what="own store's live topic readable as d5")
        finally:
            close(client)
