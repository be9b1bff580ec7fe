"""kiosk-sync talks to systemd: READY without a network, WATCHDOG from its loop, STOPPING.

kiosk-sync.service is Type=notify with WatchdogSec; an agent that never said READY
would be killed at every boot, and one that stopped pinging is restarted.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from kiosk.core import syncstate
from kiosk.core.store import Store
from sync.testing import free_port


def _config(tmp_path):
    password = tmp_path / "password"
    password.write_text("secret\n")
    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[device]\nid = "k1"\nstore = "s1"\nprogram = "p1"\n'
        f'data_dir = "{tmp_path / "data"}"\n[trust.keys]\n'
        # nothing listens on this port: the agent must come up without a network
        f'[mqtt]\nbroker = "mqtt://127.0.0.1:{free_port()}"\nusername = "k1"\n'
        f'password_file = "{password}"\nreconnect_max_seconds = 1\npoll_seconds = 0.1\n')
    return path


def _messages(sock, until, deadline_s=20.0):
    seen = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and not until(seen):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return seen


def test_agent_notifies_ready_pings_and_stopping_without_a_broker(tmp_path):
    """Also: sync-status sees the agent running, and stopped at once after SIGTERM."""
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        env = {**os.environ, "KIOSK_CONFIG": str(_config(tmp_path)), "NOTIFY_SOCKET": address,
               "WATCHDOG_USEC": "400000"}  # systemd asks for a ping every 0.2 s
        proc = subprocess.Popen([sys.executable, "-m", "sync.agent_cli"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seen = _messages(sock, lambda s: sum("WATCHDOG=1" in m for m in s) >= 3)
            assert seen and seen[0].startswith("READY=1"), seen
            assert sum("WATCHDOG=1" in m for m in seen) >= 3, seen
            store = Store.in_dir(tmp_path / "data")
            assert syncstate.read_status(store)["agent_running"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
            rest = _messages(sock, lambda s: any("STOPPING=1" in m for m in s), 5)
            assert any("STOPPING=1" in m for m in rest), rest
            # A clean stop is visible at once (a killed agent only once seen_at is stale).
            after = syncstate.read_status(store)
            assert not after["agent_running"] and after["agent_stopped_at"]
        finally:
            if proc.poll() is None:
                proc.kill()
