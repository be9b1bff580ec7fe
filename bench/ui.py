"""Benchmark of the touch UI. Prints figures; asserts nothing (DESIGN.md section 8).

    xvfb-run -a .venv/bin/python bench/ui.py [--scans 40] [--size 800x480]

* start to idle: from launching a fresh Python process to the first frame that shows
  the idle screen (imports, Kivy window, catalogs, SQLite, printer, all screens);
* payload event to verdict on screen: from the scanner thread handing a payload to
  the app (``KioskApp.deliver_scan``) to the buffer flip showing the verdict, over
  alternating ready/refused codes (median, p95, max);
* first receipt: after the scans, one ready code is confirmed (as the physical
  button does) and its receipt printed by the demo's ``preview://`` printer: the
  time from the confirm to the print outcome on screen, which includes loading
  the printer libraries (they load on the first receipt, not at start);
* memory: the kiosk's own share, i.e. the UI process's RSS minus the RSS of a bare
  Kivy window measured in the same run before any kiosk module is imported (Python,
  Kivy, SDL and the GL driver are the same on every Kivy app and differ wildly
  between Mesa's llvmpipe here and the Pi's V3D): at idle, at the peak (VmHWM)
  over the scans, and at the peak including the first receipt (the goal applies to
  this one: a counter prints); and the heavy libraries that were loaded at start
  (the printer's escpos, the QR decoder's zxing-cpp, paho-mqtt: each should load
  only when first used).

Goals: start to idle < 1.5 s, event to verdict p95 < 50 ms, kiosk's own memory
< 40 MB. The demo kiosk (key, bundle, config) is built before the clock starts; the
camera is not started, so decoding time (bench/scan.py) is not counted here. Under
Xvfb each buffer swap goes through llvmpipe (software GL), which is slow and
sensitive to other load on the machine: the bench prints the load average.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(config: Path, size: str, scans: int, started: float) -> None:
    payloads = json.loads((config.parent / "bench-payloads.json").read_text())
    from kiosk.ui.kivyconf import configure_kivy, post

    w, h = (int(v) for v in size.split("x"))
    configure_kivy(width=w, height=h, home=config.parent / "kivy")
    from kivy.clock import Clock
    from kivy.core.window import Window  # noqa: F401 - the bare window, measured next
    from kivy.graphics.opengl import GL_RENDERER, glGetString

    window_mb = rss_mb("VmRSS")
    renderer = glGetString(GL_RENDERER).decode(errors="replace")
    before = set(sys.modules)

    from kiosk import config as kconfig
    from kiosk.ui import parts as kparts
    from kiosk.ui.app import KioskApp

    parts = kparts.build(kconfig.load(config), post=post, with_camera=False)
    app = KioskApp(parts.controller)
    result = {"latencies": [], "window_rss_mb": window_mb, "renderer": renderer}

    def idle_drawn(_dt):
        result["start_to_idle_s"] = time.time() - started
        result["idle_rss_mb"] = rss_mb("VmRSS")
        result["heavy_at_start"] = sorted({m.split(".")[0] for m in set(sys.modules) - before} & HEAVY)
        Clock.schedule_once(lambda _dt: next_scan(0), 0.3)

    def next_scan(i):
        if i >= scans:
            result["peak_rss_mb"] = rss_mb("VmHWM")
            receipt()
            return
        app.last_verdict_latency_ms = None
        parts.controller.go_idle()
        app.deliver_scan(payloads[i % len(payloads)])
        wait(i, 0)

    def wait(i, tries):
        if app.last_verdict_latency_ms is not None:
            result["latencies"].append(app.last_verdict_latency_ms)
            Clock.schedule_once(lambda _dt: next_scan(i + 1), 0.05)
        elif tries < 500:
            Clock.schedule_once(lambda _dt: wait(i, tries + 1), 0)
        else:
            Clock.schedule_once(lambda _dt: next_scan(i + 1), 0)

    def receipt():
        """Confirm one ready code and wait for its receipt (bounded: 20 s)."""
        controller = parts.controller
        controller.go_idle()
        app.last_verdict_latency_ms = None
        app.deliver_scan(payloads[0])  # the demo's first card is ready
        started = [None]

        def step(tries):
            if started[0] is None and app.last_verdict_latency_ms is not None:
                controller.confirm(source="button")
                started[0] = time.perf_counter()
            elif started[0] is not None and controller.print_state not in ("", "printing"):
                result["first_print_s"] = time.perf_counter() - started[0]
                result["print_state"] = controller.print_state
            if "print_state" in result or tries >= 2000:
                result["print_peak_rss_mb"] = rss_mb("VmHWM")
                print(json.dumps(result), flush=True)
                app.stop()
                return
            Clock.schedule_once(lambda _dt: step(tries + 1), 0.01)
        step(0)

    app.on_start_hooks.append(lambda a: Clock.schedule_once(idle_drawn, 0))
    app.run()
    parts.stop()


HEAVY = {"escpos", "zxingcpp", "paho", "sqlite_utils", "cv2", "picamera2", "usb", "serial", "barcode"}


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=40)
    ap.add_argument("--size", default="800x480")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.size, args.scans, args.started)
        return 0
    from kiosk.ui import demo

    with tempfile.TemporaryDirectory() as tmp:
        built = demo.build(Path(tmp) / "demo", cards=False)
        # the child imports only what `kiosk ui` imports (not the demo's bundle writer)
        (built.config.parent / "bench-payloads.json").write_text(
            json.dumps([demo.payload_of(c) for c in demo.spec()["cards"]]))
        started = time.time()
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(built.config), "--started", str(started),
             "--size", args.size, "--scans", str(args.scans)],
            capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        print(out.stdout + out.stderr, file=sys.stderr)
        return 1
    r = json.loads(lines[-1])
    lat = sorted(r["latencies"])
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))] if lat else float("nan")
    own_idle = r["idle_rss_mb"] - r["window_rss_mb"]
    own_peak = r["peak_rss_mb"] - r["window_rss_mb"]
    own_print = r["print_peak_rss_mb"] - r["window_rss_mb"]
    print(f"UI benchmark ({args.size}, {len(lat)} scans, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs)")
    print(f"  process start to idle screen   {r['start_to_idle_s']:.2f} s    (goal < 1.5 s)")
    print(f"  payload event to verdict shown median {statistics.median(lat):.1f} ms, "
          f"p95 {p95:.1f} ms, max {lat[-1]:.1f} ms    (goal p95 < 50 ms)")
    if "first_print_s" in r:
        print(f"  confirm to first receipt       {r['first_print_s'] * 1000:.0f} ms ({r['print_state']}; "
              f"includes loading the printer libraries)")
    else:
        print("  confirm to first receipt       no print outcome within 20 s")
    print(f"  kiosk's own memory             {own_print:.1f} MB peak with a receipt printed    (goal < 40 MB)")
    print(f"                                 {own_peak:.1f} MB peak over the scans, {own_idle:.1f} MB at idle")
    print(f"    above a bare Kivy window     {r['window_rss_mb']:.0f} MB; process peak RSS "
          f"{r['print_peak_rss_mb']:.0f} MB (GL renderer: {r['renderer']})")
    print("    heavy libraries loaded at start: " + (", ".join(r["heavy_at_start"]) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
