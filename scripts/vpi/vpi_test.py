"""The virtual Raspberry Pi acceptance run (``make vpi-test``, issue 12).

Builds or reuses the arm64 kiosk image (scripts/vpi/build.sh), boots it under
``qemu-system-aarch64 -M virt`` (TCG) with systemd as PID 1 and plays a technician and
a customer against real host services: mosquitto with TLS and ``kiosk-hq collect``
(HQ), and a TCP receipt printer. The guest reaches only those, through explicit
``guestfwd`` rules of a ``restrict=on`` user network. Prints ``PASS step`` or
``FAIL step [evidence]`` per step and last ``virtual pi: P/N steps passed``; exits 1
on any FAIL. Screenshots and logs go to build/vpi/.
"""

import argparse
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import traceback
from pathlib import Path

import tomli_w

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from qmp import QMP, Agent  # noqa: E402

from sync import testing  # noqa: E402

OUT = Path(os.environ.get("VPI_OUT", REPO / "build" / "vpi"))  # screenshots, logs, disks
BIN = Path(sys.executable).parent
HOST_IP = "10.0.2.100"       # the guest's name for this machine's services (guestfwd)
MQTT_PORT, PRINTER_PORT = 8883, 9100
BOOT_OFFSET = 8192 * 512     # partition 1 (FAT) of the image, as build.sh lays it out
WIDTH, HEIGHT = 800, 480
CONFIRM_XY = (533, 418)      # the Confirm button of the ready screen at 800x480
PROGRAM, STORE, DEVICE = "cafe", "vpi-store", "vpi-1"
CODES = [f"VPI-{i:04d}" for i in range(1, 41)]
KIOSK = "/opt/kiosk/venv/bin/kiosk"
SCANNER_GAP_MS = 1000        # [ui] scanner_key_gap_ms: its upper bound
BOOT_TIMEOUT = 480           # s from QEMU's start to the agent: ~2-3 min on a loaded machine
RESET_TIMEOUT = 300          # s from a reboot's cause to QEMU's exit: units stop (90 s at most
                             # each by default), then RebootWatchdogSec=2min bounds the rest


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- results ----------------------------------------------------------------------------
class Results:
    def __init__(self):
        self.items: list[tuple[str, bool, str]] = []
        self.last = time.monotonic()

    def record(self, name: str, ok: bool, evidence: str = "") -> bool:
        """Prints the verdict with the time the step took (since the previous one)."""
        self.items.append((name, ok, evidence))
        took, self.last = time.monotonic() - self.last, time.monotonic()
        line = (f"PASS {name} ({took:.0f} s)" + (f": {evidence.strip()[:300]}" if evidence else "")
                if ok
                else f"FAIL {name} ({took:.0f} s) [{evidence.strip()[-1500:]}]")
        print(line, flush=True)
        return ok

    def summary(self) -> int:
        passed = sum(1 for _, ok, _ in self.items if ok)
        print(f"virtual pi: {passed}/{len(self.items)} steps passed", flush=True)
        return 0 if passed == len(self.items) and self.items else 1


class StepFailed(Exception):
    pass


def step(name: str):
    """A step of the run. The function raises StepFailed with the evidence of a failure
    (``check``) or returns the evidence of a pass (or None); called as ``fn(results,
    *args)``, it records PASS or FAIL under ``name`` and returns whether it passed."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(r: Results, *args) -> bool:
            try:
                return r.record(name, True, fn(*args) or "")
            except StepFailed as exc:
                return r.record(name, False, str(exc))
        return run
    return wrap


def check(cond, evidence: str) -> None:
    if not cond:
        raise StepFailed(evidence)


def wait_for(fn, timeout: float, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


# -- host services ------------------------------------------------------------------------
class Printer:
    """A TCP receipt printer on 127.0.0.1: records what it receives, answers DLE EOT."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.jobs: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._job, args=(conn,), daemon=True).start()

    def _job(self, conn: socket.socket) -> None:
        data = b""
        conn.settimeout(30)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                for _ in range(chunk.count(b"\x10\x04")):
                    conn.sendall(b"\x12")  # Epson status: online, paper, cover closed
        except OSError:
            pass
        conn.close()
        with self.lock:
            self.jobs.append(data)

    def receipts(self) -> list[bytes]:
        with self.lock:
            return [j for j in self.jobs if b"\x1dV" in j]


def make_pki(folder: Path) -> dict[str, Path]:
    """CA + a broker certificate for the guest's address of this machine."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_key = testing._key()
    ca = testing._cert("vpi-test-ca", ca_key, None, ca_key, ca=True)
    key = testing._key()
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(HOST_IP))]
    cert = testing._cert("server", key, ca.subject, ca_key, ca=False, sans=sans)
    paths = {"ca": folder / "ca.pem", "server": folder / "server.pem",
             "server.key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    testing._write_key(key, paths["server.key"])
    return paths


class Hq:
    """HQ on this machine: a TLS mosquitto, a signing key, a published code list and
    ``kiosk-hq collect`` storing redemptions in an SQLite database."""

    def __init__(self, work: Path):
        self.work = work
        self.broker = testing.Broker(work / "broker")
        self.broker.pki.update(make_pki(self.broker.folder / "pki"))  # same paths, new SAN
        self.broker.start()
        self.hq_password = self.broker.add_user("hq")
        self.db = work / "hq.sqlite"
        self.collector: subprocess.Popen | None = None
        self.run(["keygen", "--out", str(work / "hq")])
        (work / "codes.csv").write_text("code,reward_id,valid_from,valid_until,max_uses,stores\n"
                                        + "".join(f"{c},coffee,,,1,\n" for c in CODES))
        (work / "rewards.json").write_text(json.dumps({"coffee": {
            "type": "item", "value": "coffee", "title": {"en": "Free coffee"}}}))
        self.run(["sign", str(work / "codes.csv"), "--key", str(work / "hq/signing-key.pem"),
                  "--key-id", "hq1", "--program", PROGRAM, "--version", "1",
                  "--rewards", str(work / "rewards.json"), "--expires-days", "30",
                  "--out", str(work / "bundle-v1")])
        self.run(["publish", str(work / "bundle-v1"), *self.opts(), "--db", str(self.db)])

    def opts(self) -> list[str]:
        return ["--broker", self.broker.url, "--ca", str(self.broker.pki["ca"]),
                "--username", "hq", "--password-file", str(self.hq_password)]

    def run(self, args: list[str]) -> str:
        p = subprocess.run([str(BIN / "kiosk-hq"), *args], capture_output=True, text=True,
                           timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"kiosk-hq {args[0]}: {p.stdout}{p.stderr}")
        return p.stdout

    def enroll(self, out: Path) -> Path:
        self.run(["enroll", "--device", DEVICE, "--store", STORE, "--program", PROGRAM,
                  "--broker", f"mqtts://{HOST_IP}:{MQTT_PORT}", "--ca", str(self.broker.pki["ca"]),
                  "--trust", f"hq1={self.work / 'hq/signing-key.pub.pem'}", "--out", str(out),
                  "--passwd-file", str(self.broker.folder / "passwd"),
                  "--acl-file", str(self.broker.folder / "acl")])
        self.broker.reload()
        return out

    def start_collector(self) -> None:
        log_file = open(self.work / "collect.log", "ab")
        self.collector = subprocess.Popen([str(BIN / "kiosk-hq"), "collect", *self.opts(),
                                           "--db", str(self.db), "--program", PROGRAM],
                                          stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()

    def events(self) -> list[tuple]:
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as db:
            try:
                return db.execute("SELECT id, device, kind, code_hash FROM events").fetchall()
            except sqlite3.OperationalError:
                return []

    def stop(self) -> None:
        if self.collector and self.collector.poll() is None:
            self.collector.terminate()
            self.collector.wait(10)
        self.broker.stop()


# -- the virtual Pi --------------------------------------------------------------------------
def mtools(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})


class Pi:
    """One disk image and the QEMU that boots it."""

    def __init__(self, name: str, image_dir: Path, hq_port: int, printer_port: int):
        self.name, self.image_dir = name, image_dir
        self.disk = OUT / f"{name}.img"
        self.hq_port, self.printer_port = hq_port, printer_port
        self.ssh_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.qmp: QMP | None = None
        # QEMU's Unix sockets live in a private folder in /tmp: short paths (108 bytes at
        # most) on a file system that has sockets, wherever the checkout is mounted
        self.sockets = Path(tempfile.mkdtemp(prefix=f"vpi-{name}-"))
        self.agent = Agent(str(self.sockets / "agent.sock"))
        self.shots = 0
        self.resets = 0
        self.past_events: list[dict] = []
        subprocess.run(["cp", "--sparse=always", str(image_dir / "kiosk.img"), str(self.disk)],
                       check=True, timeout=300)

    @property
    def fat(self) -> str:
        return f"{self.disk}@@{BOOT_OFFSET}"

    def put_boot_files(self, folder: Path, names: list[str]) -> None:
        """Copies files (and folders) to the root of the FAT boot partition."""
        for n in names:
            p = mtools("mcopy", "-s", "-o", "-i", self.fat, str(folder / n), "::/")
            if p.returncode != 0:
                raise RuntimeError(f"mcopy {n}: {p.stderr}")

    def boot_files(self) -> list[str]:
        p = mtools("mdir", "-b", "-i", self.fat, "::/")
        return [line.strip().removeprefix("::/") for line in p.stdout.splitlines() if line.strip()]

    def read_boot_file(self, name: str) -> str:
        return mtools("mtype", "-i", self.fat, f"::/{name}").stdout

    def cmdline(self) -> str:
        """The boot partition's cmdline.txt, as the Pi firmware would pass it, with the
        Pi's serial console named as on QEMU's virt machine."""
        tokens = self.read_boot_file("cmdline.txt").split()
        tokens = [("console=ttyAMA0,115200" if t.startswith("console=serial0") else t)
                  for t in tokens]
        return " ".join(tokens)

    def qemu_cmd(self) -> list[str]:
        fwd = (f"guestfwd=tcp:{HOST_IP}:{MQTT_PORT}-cmd:socat - TCP:127.0.0.1:{self.hq_port},"
               f"guestfwd=tcp:{HOST_IP}:{PRINTER_PORT}-cmd:socat - TCP:127.0.0.1:{self.printer_port},"
               f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22")
        return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1536",
               "-kernel", str(self.image_dir / "vmlinuz"),
               "-initrd", str(self.image_dir / "initrd.img"), "-append", self.cmdline(),
               "-drive", f"file={self.disk},format=raw,if=none,id=disk0,cache=writeback",
               "-device", "virtio-blk-pci,drive=disk0",
               "-netdev", f"user,id=net0,restrict=on,{fwd}", "-device", "virtio-net-pci,netdev=net0,romfile=",
               "-device", f"virtio-gpu-pci,xres={WIDTH},yres={HEIGHT}",
               "-device", "virtio-tablet-pci", "-device", "qemu-xhci", "-device", "usb-kbd",
               "-device", "i6300esb", "-action", "watchdog=reset",
               "-device", "virtio-serial-pci",
               "-chardev", f"socket,id=agent,path={self.sockets / 'agent.sock'},server=on,wait=off",
               "-device", "virtserialport,chardev=agent,name=org.kiosk.agent",
               "-qmp", f"unix:{self.sockets / 'qmp.sock'},server=on,wait=off",
               "-serial", f"file:{OUT / (self.name + '-console.log')}",
               "-display", "none", "-rtc", "base=utc", "-no-reboot"]

    def start(self) -> None:
        self.console_log = OUT / f"{self.name}-console.log"
        if self.console_log.exists():  # QEMU truncates it: keep what earlier boots printed
            with open(OUT / f"{self.name}-console.old", "ab") as old:
                old.write(self.console_log.read_bytes())
        qemu_log = OUT / f"{self.name}-qemu.log"
        for attempt in range(3):
            for sock in ("qmp", "agent"):
                (self.sockets / f"{sock}.sock").unlink(missing_ok=True)
            seen = qemu_log.stat().st_size if qemu_log.exists() else 0
            with open(qemu_log, "ab") as qlog:
                self.proc = subprocess.Popen(self.qemu_cmd(), stdout=qlog, stderr=subprocess.STDOUT)
            try:  # QEMU listens within a second; on a loaded machine (cold caches) later
                self.qmp = QMP(str(self.sockets / "qmp.sock"), timeout=120,
                               alive=lambda: self.proc.poll() is None)
                break
            except (OSError, ConnectionError) as exc:
                self.power_cut()
                with open(qemu_log, "rb") as f:
                    f.seek(seen)
                    said = f.read().decode(errors="replace").strip()[-1500:] or "nothing"
                if "host forwarding" in said and attempt < 2:
                    # the SSH port free_port() found was taken since (the suite beside
                    # this run opens connections all the time): take another
                    log(f"{self.name}: port {self.ssh_port} taken meanwhile; another one")
                    self.ssh_port = free_port()
                    continue
                raise RuntimeError(f"QEMU did not start ({exc}; exit code {self.proc.returncode}); "
                                   f"it said: {said}") from None
        self.agent.close()

    def wait_agent(self, timeout: float = 480) -> bool:
        """Wait for the guest's agent. QEMU runs with -no-reboot: a guest reset (reboot,
        watchdog) ends QEMU, and it is started again with the boot partition's
        cmdline.txt read afresh, as the Pi firmware reads it at every boot (the first
        boot changes the PARTUUIDs in it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.agent.connect(deadline - time.monotonic(),
                                  alive=lambda: self.proc.poll() is None):
                return True
            if self.proc.poll() is not None:
                with contextlib.suppress(Exception):
                    self.past_events += self.qmp.poll_events(0.2)
                self.resets += 1
                log(f"{self.name}: guest reset (QEMU exited {self.proc.returncode}); "
                    "starting it again with the boot partition's cmdline.txt")
                self.start()
        return False

    def wait_reset(self, timeout: float) -> bool:
        """Wait until the guest resets (reboot, watchdog): with -no-reboot QEMU then
        exits. Until it does, an agent that answers is the old boot shutting down, which
        under TCG on a loaded machine can take a minute: never count it as the new one."""
        reset = bool(wait_for(lambda: self.proc.poll() is not None, timeout, 1))
        self.agent.close()
        return reset

    def sh(self, cmd: str, timeout: float = 60) -> tuple[int, str]:
        return self.agent.run(cmd, timeout=timeout)

    def power_cut(self) -> None:
        """Pull the plug: SIGKILL QEMU, nothing is flushed by the guest."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.agent.close()
        self.qmp = None

    def stop(self) -> None:
        self.power_cut()

    def screenshot(self, label: str) -> tuple[Path, dict]:
        """A PNG of the virtual display in build/vpi/ and what it shows."""
        from PIL import Image

        self.shots += 1
        ppm = OUT / f"{self.name}-{self.shots:02d}-{label}.ppm"
        png = ppm.with_suffix(".png")
        self.qmp.cmd("screendump", filename=str(ppm))
        img = Image.open(ppm).convert("RGB")
        img.save(png)
        ppm.unlink()
        px = list(img.getdata())
        n = len(px)
        stats = {
            "size": img.size,
            "black": sum(1 for r, g, b in px if r + g + b < 30) / n,
            "green": sum(1 for r, g, b in px if g > 100 and g > r + 50 and g > b + 30) / n,
            "colors": len(set(px[:: max(1, n // 5000)])),
        }
        return png, stats


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh(pi: Pi, user: str, cmd: str, *opts: str) -> tuple[int, str]:
    """``ssh user@guest cmd`` through the hostfwd port, with the image's maintenance key."""
    key = OUT / "maint-key"
    if not key.exists() and (pi.image_dir / "maint-key").exists():
        shutil.copy(pi.image_dir / "maint-key", key)
        key.chmod(0o600)
    p = subprocess.run(["ssh", "-p", str(pi.ssh_port), "-i", str(key), "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "ConnectTimeout=60", "-o", "LogLevel=ERROR", *opts,
                        f"{user}@127.0.0.1", cmd], capture_output=True, text=True, timeout=180)
    return p.returncode, p.stdout + p.stderr


def boot_id(pi: Pi) -> str:
    """The running boot's id; "" when the agent did not answer (never its error text)."""
    rc, out = pi.sh("cat /proc/sys/kernel/random/boot_id")
    return out.strip() if rc == 0 else ""


def unit_state(pi: Pi, unit: str) -> dict:
    rc, out = pi.sh(f"systemctl show -p ActiveState,SubState,NRestarts,MainPID {unit}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def journal(pi: Pi, unit: str, lines: int = 15) -> str:
    return pi.sh(f"journalctl -b -u {unit} --no-pager -n {lines} -o cat")[1]


def wait_ui_ready(pi: Pi, timeout: float = 180) -> bool:
    return bool(wait_for(lambda: unit_state(pi, "kiosk").get("ActiveState") == "active",
                         timeout, 3))


# -- the steps ------------------------------------------------------------------------------
@step("1 provisioning from the boot partition; kiosk and kiosk-sync active, no restarts")
def step_provisioning(pi: Pi, enrolled: Path) -> str | None:
    check(pi.wait_agent(BOOT_TIMEOUT), f"guest did not boot; console: {tail(pi.console_log)}")
    rc, state = pi.sh("systemctl is-system-running --wait", timeout=300)
    rc, out = pi.sh("ls -l /etc/kiosk /etc/kiosk/keys; journalctl -b -u kiosk-firstboot "
                    "-u kiosk-partuuid -o cat --no-pager")
    log(f"system {state.strip()}; {out}")
    check(wait_ui_ready(pi), f"kiosk.service not active: {unit_state(pi, 'kiosk')} "
                             f"{journal(pi, 'kiosk')} {out}")
    time.sleep(20)  # long enough for a crash loop to show (RestartSec=2/5)
    states = {u: unit_state(pi, u) for u in ("kiosk", "kiosk-sync")}
    bad = {u: s for u, s in states.items()
           if s.get("ActiveState") != "active" or s.get("NRestarts") != "0"}
    check(not bad, f"{bad} kiosk: {journal(pi, 'kiosk')} sync: {journal(pi, 'kiosk-sync')}")
    pi.sh("sync")  # the guest's FAT writes reach the disk image before mtools reads it
    left = [f for f in pi.boot_files() if f in ("kiosk.toml", "mqtt-password", "keys")]
    check(not left, f"provisioning files still on the boot partition: {left}; {out}")
    rc, _ = pi.sh(f"test -s /etc/kiosk/kiosk.toml && runuser -u kiosk -- {KIOSK} sync-status")
    check(rc == 0, f"kiosk user cannot use the config: {out}")
    # the data partition is mounted, and the UI does not depend on it (defect 6: a
    # plain WorkingDirectory= would imply RequiresMountsFor=/var/lib/kiosk)
    # (data=journal is the file system's default mount option: findmnt omits it)
    rc, mounts = pi.sh("findmnt -n -o SOURCE /var/lib/kiosk; "
                       "systemctl show -p RequiresMountsFor kiosk")
    check(mounts.startswith("/dev/vda3"), f"/var/lib/kiosk is not the data partition: {mounts}")
    check("/var/lib/kiosk" not in mounts.split("RequiresMountsFor=")[-1],
          f"kiosk.service requires the data partition's mount: {mounts}")
    return None


@step("2 idle screen on KMS/DRM, 800x480, not black")
def step_idle_screen(pi: Pi) -> str | None:
    shot = wait_for(lambda: (lambda s: s if s[1]["black"] < 0.9 else None)(
        pi.screenshot("idle")), 90, 5)
    if not shot:
        png, stats = pi.screenshot("idle-black")
        raise StepFailed(f"{png.name}: {stats}; kiosk: {journal(pi, 'kiosk')}")
    png, stats = shot
    check(stats["size"] == (WIDTH, HEIGHT), f"{png.name}: size {stats['size']}")
    check(stats["colors"] > 3, f"{png.name}: a flat picture {stats}")
    return str(stats)


def ledger_count(pi: Pi) -> int:
    rc, out = pi.sh(f"runuser -u kiosk -- {KIOSK} history --json --limit 1000")
    try:
        return len([e for e in json.loads(out) if e.get("kind", "redeem") == "redeem"])
    except ValueError:
        return -1


@step("3 scanner code -> ready; touch Confirm redeems once; receipt on the TCP printer")
def step_scan_touch_print(pi: Pi, printer: Printer, hq: Hq) -> str | None:
    ok = wait_for(lambda: '"version": 1' in pi.sh(
        f"runuser -u kiosk -- {KIOSK} codes status --json")[1], 180, 5)
    check(ok, "code list never arrived: " + pi.sh(f"runuser -u kiosk -- {KIOSK} codes status")[1]
          + journal(pi, "kiosk-sync"))
    before, receipts = ledger_count(pi), len(printer.receipts())
    # what the guest's kernel gets from the USB keyboard (evidence if no verdict)
    pi.agent.fire(KEY_LOG)
    # One Enter first, then a pause: under emulation the UI stalls for more than
    # the wedge's gap after the first key since start (seen: the scan arrived
    # without its first letters, verdict "unknown ...0001"); an Enter alone is no scan.
    pi.qmp.type_text("")
    time.sleep(8)
    pi.qmp.type_text(CODES[0])
    ready = wait_for(lambda: (lambda s: s if s[1]["green"] > 0.4 else None)(
        pi.screenshot("ready")), 30, 1)
    check(ready, f"no ready (green) screen after typing {CODES[0]}; key events "
                 f"(code:value): {pi.sh('cat /run/keys.log')[1]} {journal(pi, 'kiosk')}")
    pi.qmp.tap(*CONFIRM_XY)
    got = wait_for(lambda: ledger_count(pi) >= before + 1, 30, 2)
    time.sleep(3)
    after = ledger_count(pi)
    check(got and after == before + 1, f"ledger {before} -> {after} after one tap")
    pi.screenshot("done")
    printed = wait_for(lambda: len(printer.receipts()) > receipts, 60, 2)
    check(printed, f"no receipt at the TCP printer ({len(printer.jobs)} connections); "
                   f"{journal(pi, 'kiosk')}")
    check(len(printer.receipts()) == receipts + 1, f"{len(printer.receipts()) - receipts} receipts")
    return None


# Records the USB keyboard's key events (time, evdev code:value, 1 down, 0 up) for 40 s.
KEY_LOG = ("timeout 40 python3 -c \"import glob, struct; "
           "f = open(glob.glob('/dev/input/by-id/*-event-kbd')[0], 'rb'); "
           "out = open('/run/keys.log', 'w', buffering=1)\n"
           "while True:\n"
           "    t1, t2, kind, code, value = struct.unpack('llHHi', f.read(24))\n"
           "    kind == 1 and value < 2 and out.write(f'{t1 % 100}.{t2:06d} {code}:{value}\\n')\" "
           ">/dev/null 2>&1 &")


@step("3b no NTP, but the PL031 RTC kept time: the redemption records clock rtc")
def step_rtc(pi: Pi) -> str | None:
    """Issue 12, defect 8: no NTP here (restricted network), but QEMU's PL031 kept time."""
    rc, hist = pi.sh(f"runuser -u kiosk -- {KIOSK} history --json --limit 1; "
                     "cat /sys/class/rtc/rtc0/since_epoch; date +%s; "
                     "ls /run/systemd/timesync/synchronized 2>&1")
    check('"clock": "rtc"' in hist, hist)
    return hist


@step("3c each tap on a multitouch screen reaches Kivy exactly once")
def step_one_touch_path(pi: Pi) -> str | None:
    """Issue 12, defect 4: a Pi-style multitouch screen (uinput, type B slots:
    scripts/vpi/guest_touch.py) that exists before the window, as a real one does, and
    Kivy set up as `kiosk ui` does it (scripts/vpi/guest_tap_count.py: configure_kivy and
    one_touch_path, SDL2 on KMS/DRM, the kiosk unit's environment, the kiosk user, with
    kiosk.service stopped) counting the touch-downs: each tap exactly once, where tapped.
    (Kivy's SDL window alone gave 0 of 4: SDL makes no mouse events of evdev touches.)"""
    import base64

    probe = base64.b64encode((HERE / "guest_tap_count.py").read_bytes()).decode()
    touch = base64.b64encode((HERE / "guest_touch.py").read_bytes()).decode()
    rc, env = pi.sh("systemctl show -p Environment --value kiosk")
    env = " ".join(v for v in env.split() if not v.startswith("KIVY_HOME="))
    taps = [(200, 120), (400, 240), (600, 360), (600, 360)]
    pairs = " ".join(f"{x},{y}" for x, y in taps)
    rc, out = pi.sh(f"echo {probe} | base64 -d > /run/guest_tap_count.py && "
                    f"echo {touch} | base64 -d > /run/guest_touch.py && "
                    "chmod 644 /run/guest_tap_count.py && modprobe uinput && "
                    "systemctl stop kiosk && rm -f /run/taps.log && "
                    f"(setsid python3 /run/guest_touch.py --when-ready /run/taps.log {pairs} "
                    ">/run/touch-taps.log 2>&1 &) && sleep 3 && "
                    "grep -l vpi-touch /sys/class/input/event*/device/name && "
                    f"(setsid runuser -u kiosk -- env {env} {Path(KIOSK).parent}/python "
                    "/run/guest_tap_count.py 200 >/run/taps.log 2>&1 &)")
    try:
        check(rc == 0, f"no simulated touch screen or probe: {out}")
        done = wait_for(lambda: pi.sh("cat /run/taps.log")[1].count("DOWN") >= len(taps)
                        or None, 200, 5)
        time.sleep(5)  # a doubled touch would come right behind the last one
        rc, out = pi.sh("cat /run/taps.log /run/touch-taps.log")
    finally:
        # ([g]: a plain pattern would match, and kill, this very shell command first)
        pi.sh("pkill -f '[g]uest_tap_count.py'; pkill -f '[g]uest_touch.py'; sleep 2; "
              "systemctl start kiosk")
    check("READY" in out, f"the Kivy probe never drew its window: {out[-1500:]}")
    downs = [line.split() for line in out.splitlines() if line.startswith("DOWN ")]
    got = [(int(d[1]), HEIGHT - int(d[2])) for d in downs]  # Kivy's y grows upwards
    check(done and len(got) == len(taps), f"{len(taps)} taps, {len(got)} touch-downs: {out[-1500:]}")
    check(all(abs(gx - x) <= 8 and abs(gy - y) <= 8 for (gx, gy), (x, y) in zip(got, taps, strict=True)),
          f"taps at {taps}, touches at {got}")
    check(wait_ui_ready(pi, 180), f"kiosk not back after the tap count: {journal(pi, 'kiosk')}")
    return f"{len(taps)} taps, {len(got)} touch-downs at {got} via {downs[0][3]}"


@step("4 redemption reaches kiosk-hq collect through TLS mosquitto and is acked")
def step_hq(pi: Pi, hq: Hq) -> str | None:
    got = wait_for(lambda: len([e for e in hq.events() if e[1] == DEVICE]) >= 1, 120, 3)
    check(got, f"HQ has {hq.events()}; sync: {journal(pi, 'kiosk-sync')}")
    acked = wait_for(lambda: '"pending": 0' in pi.sh(
        f"runuser -u kiosk -- {KIOSK} sync-status --json")[1].replace(" ", " "), 90, 3)
    check(acked, "outbox not acked: " + pi.sh(f"runuser -u kiosk -- {KIOSK} sync-status")[1])
    return None


@step("5 SIGSTOP of the UI: systemd's watchdog restarts it within 60 s; serves again")
def step_frozen_ui(pi: Pi) -> str | None:
    before = unit_state(pi, "kiosk")
    pid = before.get("MainPID")
    check(pid and pid != "0", f"no main pid: {before}")
    pi.sh(f"kill -STOP {pid}")
    t0 = time.monotonic()
    # Restarted = a new main process (systemd killed the frozen one); serving again
    # = active after READY=1, which a UI start under TCG takes ~30 s more to reach.
    restarted = wait_for(lambda: unit_state(pi, "kiosk").get("MainPID") not in (pid, "0"),
                         120, 1)
    took = time.monotonic() - t0
    check(restarted and took <= 60, f"no new main process after {took:.0f} s: "
                                    f"{unit_state(pi, 'kiosk')} {journal(pi, 'kiosk')}")
    serving = wait_for(lambda: unit_state(pi, "kiosk").get("ActiveState") == "active", 120, 2)
    check(serving, f"not serving again: {unit_state(pi, 'kiosk')} {journal(pi, 'kiosk')}")
    took = f"{took:.0f} s to restart, {time.monotonic() - t0:.0f} s to serve again"
    # READY=1 comes with the first buffer swap; on KMS the page flip that shows it
    # completes after that, and until then the display shows the text console
    shot = wait_for(lambda: (lambda s: s if s[1]["black"] < 0.9 else None)(
        pi.screenshot("after-watchdog")), 60, 3)
    check(shot, "the screen stayed black (console) for 60 s after the restart")
    took += f", drawn {time.monotonic() - t0:.0f} s after SIGSTOP"
    return took


@step("5b a UI that fails again and again escalates to a reboot")
def step_escalation(pi: Pi) -> str | None:
    """Issue 12, defect 11: a UI that keeps failing makes systemd reboot the kiosk
    (StartLimitBurst=5 in 10 min, StartLimitAction=reboot)."""
    first = boot_id(pi)
    kills = 0
    t0 = time.monotonic()
    for _ in range(10):
        system = pi.sh("systemctl is-system-running")[1]
        state = unit_state(pi, "kiosk")
        if not state or system.strip() == "stopping":  # the guest is rebooting
            break
        pid = state.get("MainPID", "0")
        if pid != "0":
            pi.sh(f"kill -KILL {pid}")
            kills += 1
        time.sleep(4)
    check(pi.wait_reset(RESET_TIMEOUT), f"no reboot {RESET_TIMEOUT} s after {kills} kills: "
                                        f"{tail(pi.console_log)}")
    check(pi.wait_agent(BOOT_TIMEOUT), f"guest not back after {kills} kills: {tail(pi.console_log)}")
    second = boot_id(pi)
    check(second and second != first, f"no reboot after {kills} kills; "
                                      f"{unit_state(pi, 'kiosk')} {journal(pi, 'kiosk')}")
    rc, why = pi.sh("journalctl -b -1 -o cat --no-pager | grep -i -m3 'start request repeated"
                    "\\|rebooting\\|start-limit' || true")
    check(wait_ui_ready(pi), f"kiosk not active after the reboot: {journal(pi, 'kiosk')}")
    return (f"rebooted after {kills} kills, "
            f"back in {time.monotonic() - t0:.0f} s {why.strip()}")


@step("9 kiosk doctor --json: all green except camera and printer hardware")
def step_doctor(pi: Pi) -> str | None:
    rc, out = pi.sh(f"runuser -u kiosk -- {KIOSK} doctor --json", timeout=120)
    try:
        report = json.loads(out[out.index("{"):])
    except ValueError:
        raise StepFailed(f"not JSON (rc {rc}): {out}") from None
    allowed = {"camera", "decode", "printer"}
    bad = [c for c in report["checks"] if c["status"] != "OK" and c["name"] not in allowed]
    (OUT / "doctor.json").write_text(json.dumps(report, indent=2))
    check(not bad, "; ".join(f"{c['name']} {c['status']}: {c['message']}" for c in bad))
    return None


@step("9b maintenance SSH login by key only (sudo); the journal keeps earlier boots")
def step_maintenance(pi: Pi) -> str | None:
    """The maintenance login (image-build KIOSK_SSH_KEY) and the persistent journal on the
    data partition, which by now holds the boots before steps 6 and 7 reset the guest."""
    check((pi.image_dir / "maint-key").exists(), "the image has no maint-key (build.sh)")
    rc, tail_ = ssh(pi, "maint", "journalctl -b -1 -n 6 -o short-iso --no-pager; "
                    f"sudo -u kiosk {KIOSK} doctor --json --skip camera --skip printer "
                    "--skip broker | grep -A3 last_boot")
    log(f"the previous boot's last lines and last_boot: {tail_}")
    rc, out = ssh(pi, "maint", "sudo -n true && echo SUDO-OK; findmnt -n -o SOURCE "
                  "/var/log/journal; echo BOOTS=$(journalctl --list-boots --no-pager | wc -l)")
    check(rc == 0 and "SUDO-OK" in out, f"ssh maint (rc {rc}): {out}")
    # as on Raspberry Pi OS, /etc/hosts names the host (else sudo warns on every command)
    check("unable to resolve host" not in out, f"sudo: {out}")
    check("[/journal]" in out, f"/var/log/journal is not the data partition's: {out}")
    boots = int(out.split("BOOTS=")[1].split()[0])
    check(boots >= 2, f"the journal lists {boots} boot(s): {out}")
    rc, pw = ssh(pi, "maint", "true", "-o", "PreferredAuthentications=password,"
                 "keyboard-interactive", "-o", "PubkeyAuthentication=no")
    check(rc != 0 and "publickey" in pw, f"a password login was offered (rc {rc}): {pw}")
    rc, root = ssh(pi, "root", "true")
    check(rc != 0, f"root logs in with the maintenance key: {root}")
    return f"{boots} boots in the journal"


@step("6 power cut during confirms: database intact, every confirmed redemption kept and at HQ once")
def step_power_cut(pi: Pi, hq: Hq) -> str | None:
    codes = CODES[10:30]
    loop = "; ".join(
        f"{KIOSK} redeem --confirm --json {c} >/dev/null 2>&1 && echo VPI-CONFIRMED {c} > /dev/ttyAMA0"
        for c in codes)
    pi.agent.fire(f"runuser -u kiosk -- bash -c '{loop}' &")
    seen = wait_for(lambda: len(confirmed(pi)) >= 4, 240, 0.5)
    check(seen, f"no confirms reported: {tail(pi.console_log)}")
    pi.power_cut()
    done = confirmed(pi)
    log(f"power cut after {len(done)} confirmed: {done}")
    pi.start()
    check(pi.wait_agent(BOOT_TIMEOUT), f"no boot after the power cut: {tail(pi.console_log)}")
    # the agent answers before the data partition is mounted (journal recovery,
    # fsck, the device wait of a slow boot): the database is there once it is
    mounted = wait_for(lambda: pi.sh("mountpoint -q /var/lib/kiosk")[0] == 0, 240, 3)
    check(mounted, "the data partition was not mounted 240 s after the agent answered: "
                   + pi.sh("systemctl status var-lib-kiosk.mount --no-pager")[1])
    rc, out = pi.sh("python3 -c \"import sqlite3; print(sqlite3.connect("
                    "'file:/var/lib/kiosk/kiosk.sqlite?mode=ro', uri=True)"
                    ".execute('PRAGMA integrity_check').fetchone()[0])\"")
    check(out.strip() == "ok", f"integrity_check: {out}")
    rc, hist = pi.sh(f"runuser -u kiosk -- {KIOSK} history --json --limit 1000")
    check(rc == 0, hist)
    kept = [e for e in json.loads(hist) if e["origin"] == "local" and e["kind"] == "redeem"]
    masked = [e["masked_code"] or "" for e in kept]
    lost = [c for c in done if not any(m.endswith(c[-4:]) for m in masked)]
    check(not lost, f"confirmed before the cut but missing after it: {lost}; kept {masked}")
    ids = {e["id"] for e in kept}
    at_hq = wait_for(lambda: ids <= {e[0] for e in hq.events()}, 180, 3)
    events = [e for e in hq.events() if e[1] == DEVICE and e[2] == "redeem"]
    check(at_hq, f"HQ misses {ids - {e[0] for e in events}}")
    hashes = [e[3] for e in events]
    check(len(hashes) == len(set(hashes)) == len(ids),
          f"HQ has {len(hashes)} redeem events ({len(set(hashes))} codes) for {len(ids)} on the device")
    return (f"{len(done)} confirmed before the cut, {len(ids)} kept, "
            f"{len(events)} at HQ")


def confirmed(pi: Pi) -> list[str]:
    text = pi.console_log.read_text(errors="replace") if pi.console_log.exists() else ""
    return [line.split()[1] for line in text.splitlines() if line.startswith("VPI-CONFIRMED ")]


@step("7 hung kernel (sysrq crash, panic=0): the hardware watchdog resets the guest")
def step_hung_kernel(pi: Pi) -> str | None:
    first = boot_id(pi)
    rc, wd = pi.sh("cat /sys/class/watchdog/watchdog0/identity /sys/class/watchdog/watchdog0/state")
    check(rc == 0 and "active" in wd, f"no armed watchdog: {wd}")
    pi.sh("sysctl -w kernel.panic=0")
    t0 = time.monotonic()
    pi.agent.fire("echo c > /proc/sysrq-trigger")
    back = pi.wait_reset(RESET_TIMEOUT) and pi.wait_agent(BOOT_TIMEOUT)
    took = time.monotonic() - t0
    events = [e["event"] for e in pi.past_events]
    check(back, f"guest did not come back in {took:.0f} s; events {events}")
    second = boot_id(pi)
    check(second and second != first, f"same boot id {first}")
    check("WATCHDOG" in events, f"rebooted but no WATCHDOG event from QEMU: {events}")
    rc, tail_ = pi.sh("journalctl -b -1 -n 4 -o short-iso --no-pager; "
                      f"{KIOSK} doctor --json --skip camera --skip printer --skip broker "
                      "| grep -A3 last_boot", timeout=180)
    log(f"after the watchdog reset, the previous boot's last lines and last_boot: {tail_}")
    return f"back after {took:.0f} s"


@step("8 unprovisioned boot: not-provisioned screen, kiosk-sync does not crash-loop")
def step_unprovisioned(pi: Pi) -> str | None:
    check(pi.wait_agent(BOOT_TIMEOUT), f"guest did not boot; console: {tail(pi.console_log)}")
    check(wait_ui_ready(pi), f"kiosk.service not active: {journal(pi, 'kiosk')}")
    time.sleep(30)
    sync = unit_state(pi, "kiosk-sync")
    ui = unit_state(pi, "kiosk")
    png, stats = pi.screenshot("not-provisioned")
    check(stats["black"] < 0.9 and stats["colors"] > 3, f"{png.name}: {stats}")
    check(ui.get("NRestarts") == "0", f"kiosk restarts: {ui} {journal(pi, 'kiosk')}")
    check(int(sync.get("NRestarts", "99")) <= 1,
          f"kiosk-sync restarting: {sync} {journal(pi, 'kiosk-sync')}")
    return str(sync)


def tail(path: Path, n: int = 2000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


# -- main -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: clean-up
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-dir", help="use this built image folder instead of build.sh")
    ap.add_argument("--only", help="comma-separated step numbers to run (default: all)")
    args = ap.parse_args(argv)
    if shutil.which("qemu-system-aarch64") is None:
        print("vpi: qemu-system-aarch64 missing (scripts/system-deps.sh installs it)")
        return 1
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    t0 = time.monotonic()
    if args.image_dir:
        image_dir = Path(args.image_dir)
    else:
        p = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True)
        if p.returncode != 0:
            print("FAIL build [scripts/vpi/build.sh failed; its log is above]")
            print("virtual pi: 0/1 steps passed")
            return 1
        image_dir = Path(p.stdout.strip().splitlines()[-1])
    log(f"image {image_dir} ready after {time.monotonic() - t0:.0f} s")
    only = set(args.only.split(",")) if args.only else None

    def want(n: str) -> bool:
        return only is None or n in only
    r = Results()
    work = OUT / "host"
    work.mkdir()
    hq = Hq(work)
    printer = Printer()
    pis: list[Pi] = []
    try:
        hq.start_collector()
        if any(want(n) for n in ("1", "2", "3", "3b", "3c", "4", "5", "5b", "6", "7", "9", "9b")):
            pi = Pi("provisioned", image_dir, hq.broker.port, printer.port)
            pis.append(pi)
            enrolled = hq.enroll(work / "counter")
            toml = enrolled / "kiosk.toml"  # the printer, as docs/technician.md step 3 says
            cfg = tomllib.loads(toml.read_text())
            cfg.setdefault("printer", {})["url"] = f"tcp://{HOST_IP}:{PRINTER_PORT}"
            # docs/ui.md: where UI frames are slow (TCG here) a scan's keystrokes reach
            # the wedge up to a frame apart; a real scanner types ~10 ms apart
            cfg.setdefault("ui", {})["scanner_key_gap_ms"] = SCANNER_GAP_MS
            toml.write_text(tomli_w.dumps(cfg))
            names = [n for n in ("kiosk.toml", "mqtt-password", "mqtt-ca.pem", "keys")
                     if (enrolled / n).exists()]
            pi.put_boot_files(enrolled, names)
            pi.start()
            log(f"booting {pi.name}: {pi.cmdline()}")
            if step_provisioning(r, pi, enrolled) or True:
                for n, fn in (("2", lambda: step_idle_screen(r, pi)),
                              ("3", lambda: step_scan_touch_print(r, pi, printer, hq)),
                              ("3b", lambda: step_rtc(r, pi)),
                              ("3c", lambda: step_one_touch_path(r, pi)),
                              ("4", lambda: step_hq(r, pi, hq)),
                              ("5", lambda: step_frozen_ui(r, pi)),
                              ("5b", lambda: step_escalation(r, pi)),
                              ("9", lambda: step_doctor(r, pi)),
                              ("6", lambda: step_power_cut(r, pi, hq)),
                              ("7", lambda: step_hung_kernel(r, pi)),
                              ("9b", lambda: step_maintenance(r, pi))):
                    if want(n):
                        fn()
            pi.stop()
        if want("8"):
            bare = Pi("unprovisioned", image_dir, hq.broker.port, printer.port)
            pis.append(bare)
            bare.start()
            step_unprovisioned(r, bare)
            bare.stop()
    except Exception as exc:  # the run itself broke: say so as a failed step, with why
        traceback.print_exc()
        r.record("run", False, f"{type(exc).__name__}: {exc}")
    finally:
        for pi in pis:
            pi.stop()
            pi.disk.unlink(missing_ok=True)
            shutil.rmtree(pi.sockets, ignore_errors=True)
        hq.stop()
    log(f"total {time.monotonic() - t0:.0f} s ({dt.datetime.now():%H:%M})")
    return r.summary()


if __name__ == "__main__":
    sys.exit(main())
