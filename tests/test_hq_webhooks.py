"""Webhooks as the loyalty platform receives them: a real HTTP receiver on a free
loopback port that checks the signature, fails on purpose, and counts deliveries;
events stored through HqDb exactly as the collector stores them, on both engines."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.hq import webhooks
from sync.testing import wait_until


class Receiver:
    """The platform's endpoint: answers ``fail`` times with 500, then 200."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.got: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.got.append({"body": body, **json.loads(body)})
                outer.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def ev(i, *, kind="redeem", code=None, voids=None, device="k1"):
    return {"id": f"e{i}", "seq": i, "device": device, "store": "s1", "kind": kind, "voids": voids,
            "code_hash": code or f"c{i}", "reward_id": "coffee", "list_version": 1,
            "at": f"2026-12-01T10:00:{i:02d}Z", "clock": "synced", "staff": None}


def test_every_event_and_conflict_is_delivered_signed_in_order(hq_db, receiver):
    hq_db.store_batch("cafe", "s1", "k1", [ev(1)])  # before the webhook: not delivered
    secret = webhooks.add(hq_db.conn, "platform", receiver.url)
    hq_db.store_batch("cafe", "s1", "k1", [ev(2), ev(3)])
    hq_db.store_batch("cafe", "s1", "k2", [ev(4, code="c2", device="k2")])  # c2 a second time: conflict
    hq_db.store_batch("cafe", "s1", "k1", [ev(5, kind="void", voids="e3", code="c3")])
    dispatcher = webhooks.Dispatcher(hq_db.engine)
    assert dispatcher.deliver_pending(hq_db.conn) == 5

    kinds = [(g["type"], g["data"].get("id") or g["data"]["event_id"]) for g in receiver.got]
    assert kinds == [("redemption.created", "e2"), ("redemption.created", "e3"),
                     ("redemption.created", "e4"), ("redemption.voided", "e5"),
                     ("conflict.created", "e4")]
    for got, headers in zip(receiver.got, receiver.headers, strict=True):
        stamp = headers["Kiosk-Webhook-Timestamp"]
        mac = hmac.new(secret.encode(), stamp.encode() + b"." + got["body"], hashlib.sha256)
        assert headers["Kiosk-Webhook-Signature"] == "v1=" + mac.hexdigest()
        assert headers["Kiosk-Webhook-Id"] == got["id"]
    assert dispatcher.deliver_pending(hq_db.conn) == 0  # nothing twice
    assert webhooks.listing(hq_db.conn)[0]["delivered"] == 5


def test_a_failing_receiver_gets_retries_with_the_same_id_and_nothing_is_skipped(hq_db):
    receiver = Receiver(fail=3)
    try:
        webhooks.add(hq_db.conn, "platform", receiver.url)
        hq_db.store_batch("cafe", "s1", "k1", [ev(1), ev(2)])
        dispatcher = webhooks.Dispatcher(hq_db.engine, backoff_s=0.01)
        deadline = time.monotonic() + 20
        while len(receiver.got) < 2 and time.monotonic() < deadline:
            dispatcher.deliver_pending(hq_db.conn)
            time.sleep(0.02)
        assert [g["data"]["id"] for g in receiver.got] == ["e1", "e2"]
        assert receiver.fail == 0  # the three failures happened and were retried
        assert webhooks.listing(hq_db.conn)[0]["last_error"] is None
    finally:
        receiver.close()


def test_backoff_waits_and_a_restarted_dispatcher_resumes_from_the_stored_cursor(hq_db):
    receiver = Receiver(fail=1)
    try:
        webhooks.add(hq_db.conn, "platform", receiver.url)
        hq_db.store_batch("cafe", "s1", "k1", [ev(1), ev(2)])
        first = webhooks.Dispatcher(hq_db.engine, backoff_s=30)
        assert first.deliver_pending(hq_db.conn) == 0
        assert "HTTP 500" in webhooks.listing(hq_db.conn)[0]["last_error"]
        assert first.deliver_pending(hq_db.conn) == 0  # still backing off: no request
        assert receiver.got == []
        # a restart (new process) keeps only the database's cursor
        hq_db.conn.close()  # the first process is gone
        hq_db.conn = hq_db.engine.connect()
        second = webhooks.Dispatcher(hq_db.engine, poll_s=0.05).start()
        try:
            wait_until(lambda: len(receiver.got) == 2, 20, what="both delivered after restart")
        finally:
            second.stop()
        assert [g["data"]["id"] for g in receiver.got] == ["e1", "e2"]
    finally:
        receiver.close()


def test_bad_urls_and_names_are_refused(hq_db):
    with pytest.raises(webhooks.WebhookError, match="http"):
        webhooks.add(hq_db.conn, "x", "ftp://example/hook")
    webhooks.add(hq_db.conn, "x", "https://example.invalid/hook")
    with pytest.raises(webhooks.WebhookError, match="already exists"):
        webhooks.add(hq_db.conn, "x", "https://example.invalid/other")
    with pytest.raises(webhooks.WebhookError, match="no webhook"):
        webhooks.remove(hq_db.conn, "nope")


def test_only_one_dispatcher_per_database_delivers(hq_db, receiver):
    webhooks.add(hq_db.conn, "platform", receiver.url)
    hq_db.store_batch("cafe", "s1", "k1", [ev(1)])
    other = hq_db.engine.connect()  # a second kiosk-hq serve on the same database
    try:
        assert webhooks.Dispatcher(hq_db.engine).deliver_pending(hq_db.conn) == 1
        hq_db.store_batch("cafe", "s1", "k1", [ev(2)])
        assert webhooks.Dispatcher(hq_db.engine).deliver_pending(other) == 0  # stands by
        assert [g["data"]["id"] for g in receiver.got] == ["e1"]
    finally:
        other.close()
    hq_db.conn.close()  # the leader goes away: the next one takes over on a later poll
    hq_db.conn = hq_db.engine.connect()  # (PostgreSQL frees the lock when the old backend
    successor = webhooks.Dispatcher(hq_db.engine)  # has exited, a moment after the close)
    wait_until(lambda: successor.deliver_pending(hq_db.conn), 10, what="the next dispatcher to take over")
    assert successor.delivered == 1
    assert [g["data"]["id"] for g in receiver.got] == ["e1", "e2"]
