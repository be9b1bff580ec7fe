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
from sync import protocol

log = logging.getLogger("kiosk.sync.lists")
IMPORT_TIMEOUT_S = 900
RETRY_S = 15.0  # wait before retrying a list whose import failed for a passing reason
TRANSIENT = ("busy", "import_failed")


@dataclass(frozen=True)
class ListEvent:
    """What happened to a list: ``state`` is current, downloading, importing, installed
    or rejected."""

    state: str
    message: str
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
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- manifest ---------------------------------------------------------------
    def on_manifest(self, payload: bytes) -> None:
        if self.importing is not None:
            self.deferred = payload
            return
        self._abandon()
        self.last_payload, self.retry_at = payload, None
        if not payload:
            return  # HQ cleared the retained manifest: nothing to do
        try:
            raw, signature = protocol.decode_manifest(payload)
            manifest = bundle.verify_manifest(raw, signature, self.cfg.trusted_keys)
            if self._installed_sha() == manifest.sha256:
                self.report(ListEvent("current", f"version {manifest.version} is installed",
                                      version=manifest.version))
                return
            importer.check_applicable(manifest, importer.current(self.store), self.cfg.program,
                                      self.clock.read().now)
        except protocol.ProtocolError as exc:
            self._reject(BundleError("bad_message", str(exc)))
            return
        except BundleError as exc:
            self._reject(exc)
            return
        self._start_download(manifest, signature)

    def _installed_sha(self) -> str | None:
        row = self.store.conn.execute("SELECT manifest_sha256 FROM code_list WHERE id = 1").fetchone()
        return row[0] if row else None

    def _start_download(self, manifest: Manifest, signature: bytes) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / bundle.MANIFEST).write_bytes(manifest.raw)
        (self.work_dir / bundle.SIGNATURE).write_bytes(signature)
        self.manifest = manifest
        for chunk in manifest.chunks:
            self.pending.setdefault(chunk.sha256, []).append(chunk.name)
        self.report(ListEvent("downloading", f"version {manifest.version}: fetching "
                              f"{len(self.pending)} chunk(s)", version=manifest.version))
        self.resubscribe()

    def resubscribe(self) -> None:
        """(Re)subscribe to the chunks still missing, e.g. after a reconnect."""
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
            self._reject(BundleError("chunk_hash", f"chunk {names[0]}: received bytes do not "
                                     "match the sha256 in the manifest"))
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
        self.report(ListEvent("importing", f"version {manifest.version}: all chunks received, "
                              "importing", version=manifest.version))
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
            event = ListEvent(result["state"], result["message"], result["reason"],
                              result["version"] or manifest.version)
        except (OSError, ValueError, IndexError, KeyError, subprocess.TimeoutExpired) as exc:
            event = ListEvent("rejected", f"import process failed: {exc} {stderr}".strip(),
                              "import_failed", manifest.version)
        self.done(event)

    def import_finished(self, event: ListEvent) -> None:
        """Back on the agent's thread: report, clean up, handle a deferred manifest."""
        self.importing = None
        self.manifest = None
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.report(event)
        if self.deferred is not None:
            payload, self.deferred = self.deferred, None
            self.on_manifest(payload)
        elif event.state == "rejected" and event.reason in TRANSIENT:
            self.retry_at = time.monotonic() + RETRY_S

    def retry_due(self, now: float) -> None:
        """Try the retained manifest again after a transient import failure."""
        if self.retry_at is not None and now >= self.retry_at and self.last_payload:
            self.retry_at = None
            self.on_manifest(self.last_payload)

    # -- helpers ----------------------------------------------------------------
    def _reject(self, exc: BundleError) -> None:
        have = importer.current(self.store)
        keep = f"version {have.version} stays in use" if have else "no list is installed"
        self.report(ListEvent("rejected", f"{exc} [{exc.reason}]; {keep}", exc.reason))

    def _abandon(self) -> None:
        if self.pending:
            self.unsubscribe([protocol.chunk_topic(self.cfg.program, sha) for sha in self.pending])
        self.pending.clear()
        self.manifest = None
        shutil.rmtree(self.work_dir, ignore_errors=True)


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
