"""``kiosk-hq demo`` (``make demo-hq``) as a newcomer runs it: one command prints a URL
and an owner login, and the dashboard behind it shows a live shop (real broker,
``kiosk-hq serve``, three kiosk agents); Ctrl-C ends it and leaves nothing behind."""

import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from test_hq_serve import Http

from sync.testing import wait_until


def test_one_command_shows_the_dashboard_with_demo_data():
    proc = subprocess.Popen([sys.executable, "-m", "sync.hq_cli", "demo", "--exit-after", "600"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("sign in as owner" in x for x in lines) or proc.poll() is not None,
                   180, interval=0.2, what="the demo printing its login")
        text = "".join(lines)
        found = re.search(r"Open (http://127\.0\.0\.1:\d+)/ and sign in as owner, password (\S+)", text)
        assert found, text
        folder = Path(re.search(r"\(folder (\S+)\)", text).group(1))
        http = Http(found.group(1))
        page = http.request("GET", "/login")[2]
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        assert http.request("POST", "/login", data={"user": "owner", "password": found.group(2),
                                                    "csrf": csrf})[0] == 303
        home = http.request("GET", "/")[2]
        assert re.search(r"<strong>14</strong> redeemed", home), home[:2000]
        fleet = http.request("GET", "/fleet")[2]
        assert all(f"<td>{k}</td>" in fleet for k in ("k1", "k2", "k3"))
        assert re.search(r"<td>k3</td><td>offline</td>", fleet)
        assert "used more often than allowed" in http.request("GET", "/conflicts")[2]
        lists = http.request("GET", "/lists")[2]
        assert "2: k1, k2" in lists and "1: k3" in lists
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, "".join(lines)
    assert not folder.exists()
