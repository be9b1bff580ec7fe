"""The device's sync agent: one paho network thread feeding one worker loop.

paho's callbacks only put items on a queue; the agent's own thread owns the
database connection and does all the work (acks, fan-out, list chunks, status).
Waiting is always a blocking ``queue.get`` with a timeout, so the agent never
busy-loops; paho reconnects with exponential backoff, for ever.
"""

import json
import logging
import os
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from kiosk import __version__, connection, context, watchdog
from kiosk.config import Config
from kiosk.core import ids, importer, syncstate, timefmt
from kiosk.errors import KioskError
from kiosk.i18n import N_, Msg
from sync import lists, protocol, remote
from sync.activity import ActivitySender
from sync.lists import ListEvent, ListReceiver
from sync.outbox import OutboxSender

log = logging.getLogger("kiosk.sync")
# "code list <state>" in `kiosk sync-status`: each state's words, for the catalogs
LIST_STATES = {"current": N_("current: {message}"), "downloading": N_("downloading: {message}"),
               "importing": N_("importing: {message}"), "installed": N_("installed: {message}"),
               "rejected": N_("rejected: {message}")}


@dataclass(frozen=True)
class AgentSettings:
    """Tunables from ``[mqtt]``; the defaults suit a kiosk on a shop's network."""

    heartbeat_s: float = 30.0
    batch_size: int = 250
    window: int = 8
    ack_timeout_s: float = 10.0
    poll_s: float = 0.5
    reconnect_max_s: int = 60
    session_expiry_s: int = 86_400
    client_id: str | None = None
    peer_budget_per_hour: int = 300

    @classmethod
    def from_section(cls, section) -> "AgentSettings":
        values = {
            "heartbeat_s": section.get("heartbeat_seconds", (int, float), cls.heartbeat_s),
            "batch_size": section.get("batch_size", int, cls.batch_size),
            "ack_timeout_s": section.get("ack_timeout_seconds", (int, float), cls.ack_timeout_s),
            "poll_s": section.get("poll_seconds", (int, float), cls.poll_s),
            "reconnect_max_s": section.get("reconnect_max_seconds", int, cls.reconnect_max_s),
            "client_id": section.get("client_id", str, None),
            "peer_budget_per_hour": section.get("peer_budget_per_hour", int, cls.peer_budget_per_hour),
        }
        for key, low in (("heartbeat_seconds", 1), ("batch_size", 1), ("ack_timeout_seconds", 1),
                         ("poll_seconds", 0.05), ("reconnect_max_seconds", 1),
                         ("peer_budget_per_hour", 1)):
            if section.get(key, (int, float), low) < low:
                raise section.error(key, Msg("must be at least {low}", low=low))
        if values["batch_size"] > protocol.MAX_EVENTS:
            raise section.error("batch_size", Msg("must be at most {most} (HQ refuses bigger messages)",
                                                  most=protocol.MAX_EVENTS))
        return cls(**values)


class Agent:
    def __init__(self, cfg: Config, settings: AgentSettings | None = None):
        section = cfg.section("mqtt")
        if "broker" not in section.data:
            raise section.error("broker", Msg("missing (the sync agent needs a broker URL such as "
                                              "{example})", example="mqtts://hq.example.com:8883"))
        self.cfg = cfg
        self.settings = settings or AgentSettings.from_section(section)
        self.broker = connection.from_section(section, default_username=cfg.device_id)
        self.ledger = context.open_ledger(cfg)
        self.store = self.ledger.store
        self.inbox: queue.Queue = queue.Queue()
        self.connection = 0  # counts successful connects (network thread)
        self.stop_event = threading.Event()
        self.connected = False
        self.last_error: Msg | None = None
        self.list_state: ListEvent | None = None
        self.topics = self._topics()
        self.client = self._make_client()
        self.sender = OutboxSender(self.ledger, self._publish_batch,
                                   batch_size=self.settings.batch_size, window=self.settings.window,
                                   ack_timeout=self.settings.ack_timeout_s)
        self.activity = ActivitySender(self.store, self._publish_activity)  # after redemptions
        self.lists = ListReceiver(
            cfg, self.store, self.ledger.clock, cfg.data_dir / "sync-incoming",
            subscribe=self._subscribe_chunks, unsubscribe=self._unsubscribe,
            report=self._list_report, done=lambda ev: self.inbox.put(("imported", ev)))
        self.peers = PeerBudget(self.settings.peer_budget_per_hour)
        known = syncstate.read_status(self.store)  # counted, logged refusals, since enrolment
        self.rejected = {kind: known[f"rejected_{kind}"] for kind in ("messages", "fanout")}
        self.saved_rejected = dict(self.rejected)
        self.refused_here = 0
        self.spool_dir = cfg.data_dir / "sync-spool"
        self.remote = remote.Remote(cfg, lambda topic, body: self.client.publish(topic, body, qos=1))
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    # -- setup --------------------------------------------------------------------
    def _topics(self) -> dict[str, str]:
        p, s, d = self.cfg.program, self.cfg.store, self.cfg.device_id
        return {
            "redemptions": protocol.device_topic(p, s, d, "redemptions"),
            "acks": protocol.device_topic(p, s, d, "acks"),
            "status": protocol.device_topic(p, s, d, "status"),
            "activity": protocol.device_topic(p, s, d, "activity"),
            "live": protocol.live_topic(p, s),
            "manifest": protocol.manifest_topic(p),
            "chunks": protocol.chunk_topic(p, ""),
        }

    def _make_client(self) -> mqtt.Client:
        # the shipped broker makes the client id the user name whatever is sent here
        client_id = self.settings.client_id or self.broker.username or self.cfg.device_id
        client = connection.make_client(self.broker, client_id)
        client.will_set(self.topics["status"], protocol.OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, self.settings.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = lambda c, u: self.inbox.put(("error", Msg("cannot reach the broker")))
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_mqtt_message
        # A message is acknowledged to the broker only once the worker has handled it
        # (an ("ack", ...) item queued after it): a kill -9 before then means the broker
        # sends it again, so no store fan-out is lost in the queue.
        client.manual_ack_set(True)
        return client

    # -- paho callbacks (network thread: enqueue only) -------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.inbox.put(("error", Msg("broker refused the connection: {reason}",
                                             reason=str(reason_code))))
        else:
            self.connection += 1  # acks of messages from an earlier connection are void
            self.inbox.put(("connected", flags.session_present))

    def _on_mqtt_message(self, client, userdata, msg) -> None:
        """Chunks (megabytes each) go to disk at once, everything else on the queue;
        then its acknowledgement, sent when the worker gets to it."""
        if msg.topic.startswith(self.topics["chunks"]):
            sha = msg.topic[len(self.topics["chunks"]):]
            try:
                if msg.payload:  # (an empty one is a cleared chunk)
                    self.inbox.put(("chunk", sha, lists.spool(self.spool_dir, sha, msg.payload)))
            except OSError as exc:
                self.inbox.put(("error", Msg("cannot store a received list chunk: {error}",
                                                 error=str(exc))))
        elif (msg.topic == self.topics["live"]
              and protocol.relay_sender(msg.properties) == self.cfg.device_id):
            client.ack(msg.mid, msg.qos)  # our own events, relayed back: nothing to do
            return
        else:
            self.inbox.put(("message", msg.topic, msg.payload))
        self.inbox.put(("ack", self.connection, msg.mid, msg.qos))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.inbox.put(("disconnected", str(reason_code)))

    # -- running ------------------------------------------------------------------
    def run(self) -> None:
        """Run until :meth:`stop` (or SIGTERM via the CLI)."""
        log.info("kiosk-sync %s: device %s, store %s, program %s, broker %s", __version__,
                 self.cfg.device_id, self.cfg.store, self.cfg.program, self.broker.url)
        self._write_status(connected=False, seen_at=datetime.now(UTC), broker=self.broker.url,
                           pid=os.getpid(), stopped_at=None)
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive,
                                  clean_start=False,
                                  properties=connection.session_properties(self.settings.session_expiry_s))
        self.client.loop_start()
        watchdog.notify_ready(f"device {self.cfg.device_id}, broker {self.broker.url}")
        next_beat = next_ping = 0.0
        ping_every = watchdog.interval_s(10.0)
        try:
            while not self.stop_event.is_set():
                self._drain(timeout=self.settings.poll_s)
                now = time.monotonic()
                if now >= next_ping:  # from this loop: a wedged loop stops the pings
                    next_ping = now + ping_every
                    watchdog.ping()
                try:
                    if self.connected:
                        self.sender.check_timeout(now)
                        self.sender.pump(now)
                        self.activity.check_timeout(now)
                        self.activity.pump(now, self._redemptions_idle)
                        self.lists.retry_due(now)
                    if now >= next_beat:
                        next_beat = now + self.settings.heartbeat_s
                        self._heartbeat()
                except (sqlite3.Error, KioskError, OSError) as exc:  # e.g. database locked
                    log.error("sync step failed, will retry: %s: %s", type(exc).__name__, exc)
                    self.stop_event.wait(1.0)
        finally:
            watchdog.notify_stopping()
            self._shutdown()

    def stop(self) -> None:
        self.stop_event.set()
        self.inbox.put(("wake",))

    def _drain(self, timeout: float) -> None:
        """Handle everything queued, waiting up to ``timeout`` for the first item."""
        try:
            item = self.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._handle_safely(item)
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _handle_safely(self, item: tuple) -> None:
        """One bad message or a busy database must not stop the agent: log, go on.
        Nothing is lost: unacked events stay in the outbox, HQ re-acks resends."""
        try:
            self._handle(item)
        except (sqlite3.Error, KioskError, OSError) as exc:
            log.error("could not handle %s: %s: %s", item[0], type(exc).__name__, exc)
        except Exception as exc:  # a message nobody foresaw: refuse it, keep running
            if item[0] == "message":
                self._reject("messages", item[1], f"{type(exc).__name__}: {str(exc)[:200]}")
            else:
                log.exception("could not handle %s", item[0])
        if item[0] == "message":
            self._save_rejected()

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "message":
            self._on_message(item[1], item[2])
        elif kind == "connected":
            self._connected(item[1])
        elif kind == "disconnected":
            self._disconnected(item[1])
        elif kind == "error":
            self._error(item[1])
        elif kind == "chunk":
            self.lists.on_chunk(item[1], item[2])
        elif kind == "imported":
            self.lists.import_finished(item[1])
        elif kind == "ack" and item[1] == self.connection:
            self.client.ack(item[2], item[3])

    def _connected(self, session_present: bool) -> None:
        log.info("connected to %s (session %s)", self.broker.url,
                 "resumed" if session_present else "new")
        self.connected = True
        self.last_error = None
        self.client.subscribe([(self.topics["acks"], 1), (self.topics["manifest"], 1),
                               (self.topics["live"], 1), self.remote.subscription()])
        self.lists.resubscribe()
        self.sender.reset()  # paho's session is not the truth: resend all unacked
        self.activity.reset()
        self._write_status(connected=True, last_error=None, seen_at=datetime.now(UTC))
        self._heartbeat()

    def _disconnected(self, reason: str) -> None:
        if self.connected:
            log.warning("disconnected from %s: %s", self.broker.url, reason)
        self.connected = False
        self.sender.reset()
        self.activity.reset()
        self._write_status(connected=False, seen_at=datetime.now(UTC))

    def _error(self, message: Msg) -> None:
        if message != self.last_error:
            log.warning("%s (%s); retrying with backoff", message, self.broker.url)
        self.last_error = message
        self._write_status(connected=False, last_error=message, seen_at=datetime.now(UTC))

    # -- messages -------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            if topic == self.topics["acks"]:
                self._on_ack(payload)
            elif topic == self.topics["live"]:
                self._on_live(payload)
            elif topic == self.topics["manifest"]:
                self.lists.on_manifest(payload)
            elif self.lists.wants(topic):
                self.lists.on_step(topic, payload)
            elif self.remote.handles(topic):
                self.remote.on_request(payload)
        except protocol.ProtocolError as exc:
            self._reject("messages", topic, str(exc))

    def _reject(self, kind: str, where: str, why: str, count: int = 1) -> None:
        """Count a refused message or fan-out event; log the first ones, then every 100th."""
        before = self.refused_here
        self.refused_here += count  # since this start: the first ones are always logged
        self.rejected[kind] += count
        if before < 20 or before // 100 != self.refused_here // 100:
            log.warning("refused %s %s on %s (%d so far): %s",
                        count, "message(s)" if kind == "messages" else "fan-out event(s)",
                        where, self.rejected[kind], why)

    def _save_rejected(self) -> None:
        """Write the refusal counts to the status (once per message, not per event)."""
        if self.rejected != self.saved_rejected:
            try:
                syncstate.write_status(self.store, **{f"rejected_{k}": v for k, v in self.rejected.items()})
                self.saved_rejected = dict(self.rejected)
            except sqlite3.Error as exc:  # busy: the next refusal writes them
                log.warning("could not record the refusal counts: %s", exc)

    def _on_ack(self, payload: bytes) -> None:
        ids, conflicts, activity = protocol.decode_ack_full(payload)
        if activity is not None:
            self.activity.on_ack(activity)
            if not ids and not conflicts:
                return  # an ack of activity rows only
        removed = self.sender.on_ack(ids)
        for event_id in conflicts:
            log.warning("HQ flagged event %s as a conflict", event_id)
        fields = {"last_ack_at": self.sender.last_ack, "seen_at": datetime.now(UTC)}
        drained = self.ledger.outbox_depth() == 0
        if drained:
            fields["last_sync"] = self.sender.last_ack
        syncstate.write_status(self.store, **fields)
        log.debug("ack for %d event(s), %d removed from the outbox", len(ids), removed)
        if drained and removed:  # HQ's fleet page shows the emptied outbox now, not in 30 s
            self._heartbeat()

    def _on_live(self, payload: bytes) -> None:
        """Events HQ relayed from the store's devices (only HQ may publish here).

        Refused, counted and logged: events of another store, without a valid device
        name or time, and those beyond a sender's budget (a compromised kiosk cannot
        use up the store's codes faster than ``peer_budget_per_hour``)."""
        applied, now = 0, time.monotonic()
        for event in protocol.decode_events(payload):
            sender = event.get("device")
            if sender == self.cfg.device_id:
                continue  # our own events, relayed back to the whole store
            if (event.get("store") != self.cfg.store or not isinstance(sender, str)
                    or not ids.is_name(sender) or not event.get("at")):
                self._reject("fanout", "live", f"event {event['id']} names store "
                             f"{event.get('store')!r} and device {sender!r}")
                continue
            if self.ledger.knows(event["id"]):
                continue  # HQ relays resends again; only new events spend the budget
            if not self.peers.take(sender, now):
                self._reject("fanout", "live", f"device {sender} is over its budget of "
                             f"{self.peers.per_hour} events an hour")
                continue
            if event["kind"] == "void" and not self.ledger.remote_void_allowed(event):
                self._reject("fanout", "live", f"void {event['id']} from {sender} names a "
                             f"redemption {sender} did not make here: {event['voids']}")
                continue
            if self.ledger.apply_remote(event):
                applied += 1
        if applied:
            log.info("applied %d redemption event(s) from other kiosks in the store", applied)

    # -- publishing -------------------------------------------------------------------
    def _publish_batch(self, events: list[dict]) -> None:
        """Events go to HQ only; HQ relays them to the store's other kiosks."""
        self.client.publish(self.topics["redemptions"], protocol.encode_events(events), qos=1)

    def _redemptions_idle(self) -> bool:
        """Activity waits while any redemption is unsent or unacknowledged."""
        return not self.sender.inflight and self.ledger.outbox_depth() == 0

    def _publish_activity(self, rows: list[dict]) -> None:
        self.client.publish(self.topics["activity"], protocol.encode_activity(rows), qos=1)

    def _subscribe_chunks(self, topics: list[str]) -> None:
        if self.connected and topics:
            self.client.subscribe([(t, 1) for t in topics])

    def _unsubscribe(self, topics: list[str]) -> None:
        if self.connected and topics:
            self.client.unsubscribe(topics)

    def _list_report(self, event: ListEvent) -> None:
        self.list_state = event
        level = logging.WARNING if event.state == "rejected" else logging.INFO
        log.log(level, "code list %s: %s", event.state, event.message)
        fields = {"list_state": Msg(LIST_STATES.get(event.state, "{state}: {message}"),
                                    state=event.state, message=event.message)}
        if event.state == "rejected":
            fields["list_error"] = event.message
        elif event.state in ("installed", "current"):
            fields["list_error"] = None
            if self.ledger.outbox_depth() == 0:
                fields["last_sync"] = datetime.now(UTC)
        syncstate.write_status(self.store, **fields)
        self._heartbeat()

    # -- heartbeat ----------------------------------------------------------------------
    def heartbeat_body(self) -> dict:
        have = self.store.current_list()
        loading = importer.import_progress(self.store)
        device = syncstate.read_device_state(self.store)
        return {
            "state": "online", "software": __version__, "device": self.cfg.device_id,
            "store": self.cfg.store, "list_version": have.version if have else None,
            "outbox": self.ledger.outbox_depth(), "last_error": _english(self.last_error),
            "list_error": _english(self.list_state.message) if self.list_state and
            self.list_state.state == "rejected" else None,
            **device,
            "rejected": dict(self.rejected),
            "list_loading": loading.text() if loading else None,
            "at": timefmt.format(datetime.now(UTC)), **self.remote.heartbeat_fields(),
        }

    def _heartbeat(self) -> None:
        now = datetime.now(UTC)
        fields = {"seen_at": now, "connected": self.connected}
        if self.connected:
            body = self.heartbeat_body()
            self.client.publish(self.topics["status"], json.dumps(body).encode(), qos=1, retain=True)
            if body["outbox"] == 0:
                fields["last_sync"] = now
        syncstate.write_status(self.store, **fields)

    def _shutdown(self) -> None:
        self.remote.stop()
        if self.connected:
            info = self.client.publish(self.topics["status"], protocol.OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        now = datetime.now(UTC)
        self._write_status(connected=False, seen_at=now, stopped_at=now)
        self.store.close()

    def _write_status(self, **fields) -> None:
        """The status row for ``kiosk sync status`` and the UI: news, not a reason to stop
        (on a full disk the agent must start, keep running and send the outbox)."""
        try:
            syncstate.write_status(self.store, **fields)
        except (sqlite3.Error, KioskError, OSError) as exc:
            log.error("could not record the sync status: %s", exc)
        log.info("kiosk-sync stopped")


def _english(words: Msg | None) -> str | None:
    """What HQ receives: the English text (HQ's pages translate their own words)."""
    return None if words is None else str(words)


class PeerBudget:
    """A token bucket per fan-out sender: ``per_hour`` events at once, refilled over an
    hour. Kept in memory (a restart forgives); at most ``max_senders`` are tracked."""

    def __init__(self, per_hour: int, max_senders: int = 1000):
        self.per_hour, self.max_senders = per_hour, max_senders
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, sender: str, now: float) -> bool:
        tokens, then = self.buckets.get(sender, (float(self.per_hour), now))
        tokens = min(float(self.per_hour), tokens + (now - then) * self.per_hour / 3600.0)
        if sender not in self.buckets and len(self.buckets) >= self.max_senders:
            self.buckets.pop(next(iter(self.buckets)))
        ok = tokens >= 1.0
        self.buckets[sender] = (tokens - 1.0 if ok else tokens, now)
        return ok
