"""Receiving signed code lists over MQTT and importing them.

The retained manifest message names chunks by sha256; each chunk is a retained
message of its own. The receiver checks the manifest's signature and applicability
first (so a forged or stale list costs no download), writes the chunks into a work
folder as they arrive, and then imports that folder with exactly the code
``kiosk codes import`` uses (:func:`kiosk.core.importer.import_bundle` over a
:class:`kiosk.core.bundle.DirSource`), run in a short-lived child process
(:mod:`sync.list_import`) watched by a thread, so acks and fan-out keep flowing
meanwhile and the agent's memory stays small; the switch to the new list is atomic
inside ``import_bundle``; a rejection leaves the current list.

When the head manifest is a delta on a version this device does not have, the
receiver plans a path over the retained chain (``codes/snapshot`` and
``codes/delta/{base}``, see :mod:`sync.protocol`): the fewest bytes from the version
it has, either deltas only or the snapshot and the deltas after it, fetched and
imported one step at a time; a step that is missing or refused falls back to the
snapshot.
"""

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiosk.config import Config
from kiosk.core import bundle, importer
from kiosk.core.bundle import Manifest
from kiosk.core.clock import Clock
from kiosk.core.store import Store
from kiosk.errors import BundleError
from kiosk.i18n import Msg
from sync import protocol

log = logging.getLogger("kiosk.sync.lists")
IMPORT_TIMEOUT_S = 900
RETRY_S = 15.0  # wait before retrying a list whose import failed for a passing reason
STEP_WAIT_S = 30.0  # a chain step's retained manifest must arrive within this
TRANSIENT = ("busy", "import_failed", "salt_wait")  # salt_wait: until HQ acks


@dataclass(frozen=True)
class ListEvent:
    """What happened to a list: ``state`` is current, downloading, importing, installed
    or rejected; ``message`` a :class:`kiosk.i18n.Msg` (the English text, shown in the
    technician's language by ``kiosk sync-status`` and the doctor)."""

    state: str
    message: Msg
    reason: str | None = None
    version: int | None = None


class ListReceiver:
    """Called from the agent's main thread; ``report`` receives :class:`ListEvent`s.

    ``subscribe(topics)`` / ``unsubscribe(topics)`` manage chunk subscriptions;
    ``done(event)`` is called from the import thread when an import ends (the agent
    passes it back through its queue).
    """

    def __init__(self, cfg: Config, store: Store, clock: Clock, work_dir: Path, *,
                 subscribe: Callable[[list[str]], None], unsubscribe: Callable[[list[str]], None],
                 report: Callable[[ListEvent], None], done: Callable[[ListEvent], None]):
        self.cfg, self.store, self.clock = cfg, store, clock
        self.work_dir = Path(work_dir)
        self.subscribe, self.unsubscribe = subscribe, unsubscribe
        self.report, self.done = report, done
        self.manifest: Manifest | None = None
        self.pending: dict[str, list[str]] = {}  # chunk sha256 -> file names still missing
        self.importing: threading.Thread | None = None
        self.deferred: bytes | None = None  # a manifest that arrived during an import
        self.last_payload: bytes | None = None  # the retained manifest, for retries
        self.retry_at: float | None = None
        self.chain: list[dict] = []  # the head's chain index, for planning and fallback
        self.target: int | None = None  # the head's version while walking the chain
        self.plan: list[dict] = []  # chain steps still to fetch after the current one
        self.step: tuple[str, dict] | None = None  # (topic, entry) whose manifest we await
        self.step_deadline: float | None = None
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- manifest ---------------------------------------------------------------
    def on_manifest(self, payload: bytes) -> None:
        if self.importing is not None:
            self.deferred = payload
            return
        self._abandon()
        self.chain, self.target = [], None
        self.last_payload, self.retry_at = payload, None
        if not payload:
            return  # HQ cleared the retained manifest: nothing to do
        try:
            raw, signature = protocol.decode_manifest(payload)
            manifest = bundle.verify_manifest(raw, signature, self.cfg.trusted_keys)
            if self._installed_sha() == manifest.sha256:
                self.report(ListEvent("current", Msg("version {version} is installed",
                                                     version=manifest.version),
                                      version=manifest.version))
                return
            have = self.store.current_list()
            try:
                importer.check_applicable(manifest, have, self.cfg.program, self.clock.read().now)
            except BundleError as exc:
                if exc.reason != "wrong_base" or not self._plan(payload, have, manifest):
                    raise
                return
            importer.salt_gate(self.store, self.store.conn, manifest, have)  # before downloading
        except protocol.ProtocolError as exc:
            self._reject(BundleError("bad_message", exc.msg or str(exc)))
            return
        except BundleError as exc:
            self._reject(exc)
            if exc.reason in TRANSIENT:
                self.retry_at = time.monotonic() + RETRY_S
            return
        self._start_download(manifest, signature)

    # -- chain ------------------------------------------------------------------
    def _plan(self, payload: bytes, have, head: Manifest) -> bool:
        """Walk the retained chain to ``head`` (True), if the head's index shows a path."""
        self.chain, self.target = protocol.decode_chain(payload), head.version
        steps = plan_path(self.chain, have.version if have else None, head.version)
        if not steps:
            return False
        self.plan = steps
        self._next_step()
        return True

    def _next_step(self) -> None:
        entry = self.plan.pop(0)
        base = entry["base_version"]
        topic = (protocol.snapshot_topic(self.cfg.program) if base is None
                 else protocol.delta_topic(self.cfg.program, base))
        self.step, self.step_deadline = (topic, entry), time.monotonic() + STEP_WAIT_S
        what = Msg("full snapshot") if base is None else Msg("delta on {version}", version=base)
        self.report(ListEvent("downloading", Msg("version {target}: fetching version {version} "
                                                 "({what}), {steps} step(s) after it",
                                                 target=self.target, version=entry["version"],
                                                 what=what, steps=len(self.plan)),
                              version=entry["version"]))
        self.subscribe([topic])

    def wants(self, topic: str) -> bool:
        """A chain topic (snapshot or delta manifest) this receiver handles."""
        root = protocol.snapshot_topic(self.cfg.program)
        return topic == root or topic.startswith(protocol.delta_topic(self.cfg.program, 0)[:-1])

    def on_step(self, topic: str, payload: bytes) -> None:
        """A retained chain manifest arrived: fetch it if it is the step we wait for."""
        if self.step is None or topic != self.step[0] or not payload:
            return
        entry = self.step[1]
        self.step, self.step_deadline = None, None
        self.unsubscribe([topic])
        try:
            raw, signature = protocol.decode_manifest(payload)
            manifest = bundle.verify_manifest(raw, signature, self.cfg.trusted_keys)
            if (manifest.version, manifest.base_version) != (entry["version"], entry["base_version"]):
                raise BundleError("wrong_base", Msg("{topic} holds version {have}, the chain "
                                                    "index says {want}", topic=topic,
                                                    have=manifest.version, want=entry["version"]))
            have = self.store.current_list()
            importer.check_applicable(manifest, have, self.cfg.program, self.clock.read().now)
            importer.salt_gate(self.store, self.store.conn, manifest, have)
        except BundleError as exc:
            if exc.reason in TRANSIENT:  # e.g. salt_wait: try the whole plan again later
                self.plan, self.chain = [], []
                self._reject(exc)
                self.retry_at = time.monotonic() + RETRY_S
            else:
                self._fallback(exc)
            return
        except protocol.ProtocolError as exc:
            self._fallback(BundleError("bad_message", exc.msg or str(exc)))
            return
        self._start_download(manifest, signature)

    def _fallback(self, exc: BundleError) -> None:
        """A chain step failed: take the snapshot path (once), else report the failure."""
        have = self.store.current_list()
        steps = plan_path(self.chain, have.version if have else None, self.target or 0,
                          deltas_from_have=False) if self.chain else None
        self.chain, self.plan, self.step = [], [], None
        if steps:
            log.warning("chain step failed (%s); falling back to the full snapshot", exc)
            self.plan = steps
            self._next_step()
        else:
            self._reject(exc)

    def _step_overdue(self, now: float) -> None:
        if self.step is not None and self.step_deadline is not None and now >= self.step_deadline:
            topic = self.step[0]
            self.unsubscribe([topic])
            self._fallback(BundleError("missing_file", Msg("no retained manifest on {topic}",
                                                           topic=topic)))

    def _installed_sha(self) -> str | None:
        have = self.store.current_list()
        return have.manifest_sha256 if have is not None else None

    def _start_download(self, manifest: Manifest, signature: bytes) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / bundle.MANIFEST).write_bytes(manifest.raw)
        (self.work_dir / bundle.SIGNATURE).write_bytes(signature)
        self.manifest = manifest
        for chunk in manifest.chunks:
            self.pending.setdefault(chunk.sha256, []).append(chunk.name)
        self.report(ListEvent("downloading", Msg("version {version}: fetching {count} chunk(s)",
                                                 version=manifest.version, count=len(self.pending)),
                              version=manifest.version))
        self.resubscribe()

    def resubscribe(self) -> None:
        """(Re)subscribe to the chunks still missing, e.g. after a reconnect."""
        if self.step is not None:  # the wait for its manifest starts again now
            self.step_deadline = time.monotonic() + STEP_WAIT_S
            self.subscribe([self.step[0]])
        if self.manifest is not None and self.pending:
            self.subscribe([protocol.chunk_topic(self.cfg.program, sha) for sha in self.pending])
        elif self.manifest is not None and self.importing is None:
            self._start_import()  # a list without chunks (an empty delta)

    # -- chunks -----------------------------------------------------------------
    def on_chunk(self, sha256: str, path: Path) -> None:
        """A chunk the network thread spooled to ``path`` (so it never waits in memory)."""
        names = self.pending.get(sha256)
        if names is None or self.manifest is None:
            path.unlink(missing_ok=True)
            return  # a duplicate or a chunk of a list we are not fetching
        if _file_sha256(path) != sha256:
            path.unlink(missing_ok=True)
            self._reject(BundleError("chunk_hash", Msg("chunk {name}: received bytes do not match "
                                                       "the sha256 in the manifest", name=names[0])))
            self._abandon()
            return
        for name in names[1:]:
            shutil.copyfile(path, self.work_dir / name)
        path.replace(self.work_dir / names[0])
        del self.pending[sha256]
        self.unsubscribe([protocol.chunk_topic(self.cfg.program, sha256)])
        if not self.pending:
            self._start_import()

    # -- import -----------------------------------------------------------------
    def _start_import(self) -> None:
        manifest = self.manifest
        self.report(ListEvent("importing", Msg("version {version}: all chunks received, importing",
                                               version=manifest.version),
                              version=manifest.version))
        self.importing = threading.Thread(target=self._import, args=(manifest,),
                                          name="list-import", daemon=True)
        self.importing.start()

    def _import(self, manifest: Manifest) -> None:
        """Runs in the import thread: the import itself runs in a child process."""
        cmd = [sys.executable, "-m", "sync.list_import", str(self.cfg.path), str(self.work_dir)]
        stderr = ""
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S)
            stderr = proc.stderr[-500:]
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            words = Msg.from_json(result["msg"]) if "msg" in result else Msg.from_json(result["message"])
            event = ListEvent(result["state"], words, result["reason"],
                              result["version"] or manifest.version)
        except (OSError, ValueError, IndexError, KeyError, subprocess.TimeoutExpired) as exc:
            detail = f"{exc} {stderr}".strip()
            event = ListEvent("rejected", Msg("import process failed: {error}", error=detail),
                              "import_failed", manifest.version)
        self.done(event)

    def import_finished(self, event: ListEvent) -> None:
        """Back on the agent's thread: report, clean up, handle a deferred manifest."""
        self.importing = None
        self.manifest = None
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.report(event)
        if self.deferred is not None:
            self.plan = []
            payload, self.deferred = self.deferred, None
            self.on_manifest(payload)
        elif event.state == "installed" and self.plan:
            self._next_step()
        elif event.state == "rejected" and self.chain and event.reason not in TRANSIENT:
            self._fallback(BundleError(event.reason or "import_failed", event.message))
        elif event.state == "rejected" and event.reason in TRANSIENT:
            self.retry_at = time.monotonic() + RETRY_S

    def retry_due(self, now: float) -> None:
        """Try the retained manifest again after a transient import failure; give up on
        a chain step whose manifest never came."""
        self._step_overdue(now)
        if self.retry_at is not None and now >= self.retry_at and self.last_payload:
            self.retry_at = None
            self.on_manifest(self.last_payload)

    # -- helpers ----------------------------------------------------------------
    def _reject(self, exc: BundleError) -> None:
        have = self.store.current_list()
        words = (Msg("{error} [{reason}]; version {version} stays in use", error=exc,
                     reason=exc.reason, version=have.version) if have else
                 Msg("{error} [{reason}]; no list is installed", error=exc, reason=exc.reason))
        self.report(ListEvent("rejected", words, exc.reason))

    def _abandon(self) -> None:
        if self.step is not None:
            self.unsubscribe([self.step[0]])
        self.step, self.step_deadline, self.plan = None, None, []
        if self.pending:
            self.unsubscribe([protocol.chunk_topic(self.cfg.program, sha) for sha in self.pending])
        self.pending.clear()
        self.manifest = None
        shutil.rmtree(self.work_dir, ignore_errors=True)


def plan_path(chain: list[dict], have: int | None, target: int, *,
              deltas_from_have: bool = True) -> list[dict] | None:
    """The chain entries to apply, in order, to go from version ``have`` to ``target``
    with the fewest bytes: deltas from ``have``, or a full snapshot newer than ``have``
    and the deltas after it. None when the chain offers no path."""
    deltas = {e["base_version"]: e for e in chain if e["base_version"] is not None}

    def walk(version: int) -> list[dict] | None:
        steps = []
        while version != target:
            entry = deltas.get(version)
            if entry is None or len(steps) > len(chain):
                return None
            steps.append(entry)
            version = entry["version"]
        return steps

    options = []
    if have is not None and deltas_from_have:
        path = walk(have)
        if path:
            options.append(path)
    for snap in (e for e in chain if e["base_version"] is None):
        if have is None or snap["version"] > have:
            path = walk(snap["version"])
            if path is not None:
                options.append([snap, *path])
    if not options:
        return None
    return min(options, key=lambda p: (sum(e["bytes"] for e in p), len(p)))


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def spool(folder: Path, sha256: str, payload: bytes) -> Path:
    """Write a received chunk to ``folder`` (called on paho's network thread)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha256}.{threading.get_ident()}.{time.monotonic_ns()}"
    path.write_bytes(payload)
    return path
