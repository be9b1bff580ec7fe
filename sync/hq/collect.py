"""``kiosk-hq collect --broker URL --db hq.sqlite``: store device events, ack them.

Subscribes with an MQTT v5 shared subscription
(``$share/GROUP/kiosk/v1/PROGRAM/stores/+/devices/+/redemptions``), so several
collectors in one group split the load. GROUP is a random name kept in the HQ
database: mosquitto 2.0 does not check SUBSCRIBE against its ACL, so a device that
knew the group could join it and have the broker hand it (and drop) other stores'
events. paho's network thread only queues each message; a store thread takes whatever
queued up while it was busy and stores it in one transaction (group commit:
:meth:`sync.hq.db.HqDb.store_batches`), then publishes each batch's ack and only then
acknowledges the messages to the broker (manual PUBACK): a crash at any point means a
resend, never a loss, and the unique event id makes the resend harmless (a device's
batch counts as delivered only when its ack arrives). Acks thus leave a few
milliseconds after their own commit, while later batches still arrive. The batch's
events are then relayed to the store's fan-out topic, which only HQ may publish on
(resends too, in case the first relay died with a collector; kiosks apply each event
once). The same shared subscription group also takes the devices' low-priority
``.../activity`` (audit rows, :mod:`sync.hq.activity`), stored once and acked with the
ack field ``activity``.
"""

import logging
import queue
import signal
import sys
import threading
import time
import uuid

from sync import protocol
from sync.hq.common import (
    HqError,
    add_broker_args,
    close,
    connect,
    loop_running,
    settings_from_args,
)
from sync.hq.db import Batch, HqDb
from sync.hq.engine import db_errors

log = logging.getLogger("kiosk.hq.collect")
GROUP_BYTES = 1_000_000  # what one transaction stores at most (about 2,500 events)


def register(sub) -> None:
    p = sub.add_parser("collect", help="store device redemptions in an HQ database and ack them")
    add_broker_args(p)
    p.add_argument("--db", required=True,
                   help="HQ database: a SQLite path (created if missing) or postgresql://...")
    p.add_argument("--program", default="+", help="only this program (default: all)")
    p.add_argument("--group", help="shared-subscription group name; keep it secret (default: "
                   "a random name kept in --db, shared by the collectors of that database)")
    p.add_argument("--bundle", action="append", default=[],
                   help="learn codes' max_uses from this signed bundle first (repeatable)")
    p.add_argument("--once", action="store_true",
                   help="exit after --idle seconds without messages instead of running for ever")
    p.add_argument("--idle", type=float, default=3.0, help="seconds of quiet that end --once")
    p.set_defaults(handler=cmd_collect)


class Collector:
    """``fleet=True`` (``kiosk-hq serve``) also keeps every device's heartbeat
    (:mod:`sync.hq.fleet`); heartbeats are retained, so each collector reads them all."""

    def __init__(self, db: HqDb, program: str = "+", group: str | None = None, *,
                 fleet: bool = False):
        self.db, self.program, self.fleet = db, program, fleet
        self.group = group or db.collector_group()
        self.client = None
        self.last_message = time.monotonic()
        self.stored = self.duplicates = self.flagged = self.rejected = self.relayed = 0
        self.activity_rows = 0
        self.lock = threading.Lock()
        self._queue: queue.Queue | None = None  # set while run() runs: the store thread's
        self._manual_ack = False

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{protocol.redemptions_filter(self.program)}"

    @property
    def activity_subscription(self) -> str:
        return f"$share/{self.group}/{protocol.activity_filter(self.program)}"

    def on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self._subscribe(client)  # again after every reconnect

    def _subscribe(self, client) -> None:
        client.subscribe(self.subscription, qos=1)
        client.subscribe(self.activity_subscription, qos=1)
        if self.fleet:
            client.subscribe(protocol.status_filter(self.program), qos=1)

    def on_message(self, client, userdata, msg) -> None:
        """paho's network thread runs this: nothing a device sends may escape from it
        (an exception here would end the thread and silently stop all collection).
        While :meth:`run` runs, the message only goes on the store thread's queue, so
        that the network thread keeps reading and sending acks while a batch commits."""
        self.last_message = time.monotonic()
        if self._queue is not None:
            self._queue.put(msg)
            return
        self._handle(client, [msg])

    def _handle(self, client, messages: list) -> None:
        """Handle messages in order; runs of redemption messages are stored together."""
        run: list = []
        for msg in [*messages, None]:
            if msg is not None and not msg.topic.endswith(("/status", "/activity")):
                run.append(msg)
                continue
            if run:
                self._guarded(client, run, self._store_and_ack)
                run = []
            if msg is not None:
                self._guarded(client, [msg], self._handle_one)

    def _guarded(self, client, messages: list, handler) -> None:
        try:
            handler(client, messages)
        except Exception as exc:  # a message nobody foresaw: refuse it, keep collecting
            for msg in messages:
                self._reject(msg.topic, f"{type(exc).__name__}: {str(exc)[:200]}")
        if self._manual_ack:  # PUBACK to the broker only now, after the commit
            for msg in messages:
                client.ack(msg.mid, msg.qos)

    def _handle_one(self, client, messages: list) -> None:
        msg = messages[0]
        if self.fleet and msg.topic.endswith("/status"):
            self._status(msg.topic, msg.payload)
        elif msg.topic.endswith("/activity"):
            self._store_activity(client, msg.topic, msg.payload)

    def _reject(self, topic: str, why: str) -> None:
        self.rejected += 1
        if self.rejected <= 20 or self.rejected % 100 == 0:
            log.warning("refused a message on %s (%d so far): %s", topic, self.rejected, why)

    def _store_and_ack(self, client, messages: list) -> None:
        """Store the batches of ``messages`` in one transaction (each alone if that
        fails), then ack each to its device and relay it to its store."""
        batches: list[Batch] = []
        for msg in messages:
            try:
                where = protocol.parse_device_topic(msg.topic)
                if where.leaf != "redemptions":
                    raise protocol.ProtocolError(f"not a redemptions topic: {msg.topic!r}")
                batches.append(Batch(where.program, where.store, where.device,
                                     protocol.decode_events(msg.payload)))
            except protocol.ProtocolError as exc:
                self._reject(msg.topic, str(exc))
        if not batches:
            return
        try:
            with self.lock:
                results = list(zip(batches, self.db.store_batches(batches), strict=True))
        except db_errors() as exc:
            if len(batches) == 1:  # not acked: the device sends the batch again
                log.error("could not store a batch from %s/%s: %s", batches[0].store,
                          batches[0].device, exc)
                return
            results = []  # one bad batch must not hold back the others
            for one in batches:
                try:
                    with self.lock:
                        results += [(one, self.db.store_batches([one])[0])]
                except db_errors() as exc:
                    log.error("could not store a batch from %s/%s: %s", one.store, one.device, exc)
        for batch, result in results:
            self._ack(client, batch, result)

    def _ack(self, client, batch: "Batch", result) -> None:
        self.stored += result.new
        self.duplicates += len(batch.events) - result.new
        self.flagged += len(result.conflicts)
        for event_id in result.conflicts:
            log.warning("conflict: event %s from %s/%s", event_id, batch.store, batch.device)
        ack_topic = protocol.device_topic(batch.program, batch.store, batch.device, "acks")
        client.publish(ack_topic, protocol.encode_ack(result.ids, result.conflicts), qos=1)
        if result.relay:  # the store's other kiosks learn of it (only HQ may publish there)
            # (resends are relayed again: the first relay may have died with a collector)
            client.publish(protocol.live_topic(batch.program, batch.store),
                           protocol.encode_events(result.relay), qos=1,
                           properties=protocol.relay_properties(batch.device))
            self.relayed += len(result.relay)

    def _store_loop(self, client, stop: threading.Event) -> None:
        """The store thread: takes what queued up while it was busy (up to
        :data:`GROUP_BYTES` of messages) and stores it in one go."""
        while not stop.is_set():
            try:
                messages = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            size = len(messages[0].payload)
            while size < GROUP_BYTES:
                try:
                    messages.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(messages[-1].payload)
            self._handle(client, messages)

    def _store_activity(self, client, topic: str, payload: bytes) -> None:
        """A device's audit rows (:mod:`sync.hq.activity`): stored, then acked."""
        from sync.hq import activity

        try:
            where = protocol.parse_device_topic(topic)
            rows = protocol.decode_activity(payload)
        except protocol.ProtocolError as exc:
            self._reject(topic, str(exc))
            return
        if not rows:
            return
        try:
            with self.lock:
                top = activity.store_rows(self.db.conn, where.program, where.store, where.device, rows)
        except db_errors() as exc:  # not acked: the device sends the rows again
            log.error("could not store activity from %s/%s: %s", where.store, where.device, exc)
            return
        self.activity_rows += len(rows)
        client.publish(protocol.device_topic(where.program, where.store, where.device, "acks"),
                       protocol.encode_ack([], activity=top), qos=1)

    def _status(self, topic: str, payload: bytes) -> None:
        from sync.hq import fleet

        try:
            where = protocol.parse_device_topic(topic)
            with self.lock:
                fleet.record_status(self.db.conn, where.program, where.store, where.device, payload)
        except (protocol.ProtocolError, fleet.StatusError, *db_errors()) as exc:
            log.warning("refused a status on %s: %s", topic, exc)

    def run(self, settings, *, once: bool = False, idle: float = 3.0,
            stop: threading.Event | None = None) -> None:
        """Collect until ``stop`` (or ``once`` and idle). Raises :class:`HqError` if
        paho's network thread dies, so that ``kiosk-hq collect`` exits non-zero and its
        supervisor restarts it instead of a live process that collects nothing."""
        from kiosk import connection

        stop = stop or threading.Event()
        client = connection.make_client(settings, f"hq-collect-{uuid.uuid4().hex[:8]}")
        client.on_message = self.on_message
        client.reconnect_delay_set(1, 30)
        client.manual_ack_set(True)  # PUBACK after the commit (:meth:`_guarded`)
        client.max_inflight_messages_set(1000)  # acks and relays of whole groups
        self._manual_ack, self._queue = True, queue.Queue()
        done = threading.Event()
        store = threading.Thread(target=self._store_loop, args=(client, done),
                                 name="hq-store", daemon=True)
        store.start()
        try:
            self.client = connect(settings, "", client=client)
            client.on_connect = self.on_connect
            self._subscribe(client)
            self.last_message = time.monotonic()
            while not stop.wait(0.2):
                if not loop_running(client):
                    raise HqError("the MQTT network thread stopped; exiting so that the "
                                  "collector is restarted")
                if not store.is_alive():
                    raise HqError("the collector's store thread stopped; exiting so that the "
                                  "collector is restarted")
                if once and time.monotonic() - self.last_message >= idle and self._queue.empty():
                    break
        finally:
            done.set()
            store.join(30)
            if self.client is not None:
                close(client)
            self._manual_ack, self._queue = False, None


def cmd_collect(args) -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paho").setLevel(logging.WARNING)
    try:
        db = HqDb(args.db)
    except db_errors() as exc:
        print(f"kiosk-hq: collect: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        for path in args.bundle:
            program, count = db.load_bundle(path)
            print(f"learned max_uses of {count:,} code(s) of {program} from {path}")
        collector = Collector(db, args.program, args.group)
        collector.run(settings_from_args(args), once=args.once, idle=args.idle, stop=stop)
    except (HqError, ValueError, OSError) as exc:
        print(f"kiosk-hq: collect: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    print(f"collected {collector.stored} new event(s), {collector.duplicates} duplicate(s), "
          f"{collector.flagged} conflict(s) flagged, {collector.rejected} message(s) refused")
    return 0
