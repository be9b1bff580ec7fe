"""``kiosk screenshots``: every screen in every language at the given window sizes.

Each size runs in its own process (Kivy's window size is fixed once it exists),
under a virtual X server started with ``xvfb-run`` when there is no display. The
screens are driven through the real controller on a demo kiosk, exactly as a
customer and staff would reach them.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCENES = ("idle", "verdict-ready", "verdict-amount", "verdict-used", "verdict-expired",
          "verdict-not-a-code", "verdict-not-yet", "verdict-recording", "verdict-waiting",
          "verdict-warning", "done", "done-queued", "done-again", "pin", "staff", "keypad",
          "undo", "undo-ask", "history", "sync", "diagnostics", "not-provisioned")


def render_all(out: Path, sizes: list[tuple[int, int]], langs: list[str], *,
               check: bool = False) -> list[Path]:
    """Render every scene; returns the PNGs written (one child process per size).

    With ``check`` nothing is drawn to files: each size writes the texts that
    overflow or lack contrast (:mod:`kiosk.ui.legibility`) to ``check-WxH.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.png"))
    for w, h in sizes:
        cmd = [sys.executable, "-m", "kiosk.ui.screenshots", "--out", str(out),
               "--size", f"{w}x{h}", "--langs", ",".join(langs)] + (["--check"] if check else [])
        if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
            side = max(w, h, 1280)
            cmd = ["xvfb-run", "-a", "-s", f"-screen 0 {side}x{side}x24 -nolisten tcp"] + cmd
        subprocess.run(cmd, check=True)
    return sorted(set(out.glob("*.png")) - before) or sorted(out.glob("*.png"))


def _scene(c, scene: str, demo) -> None:
    """Bring the controller to ``scene`` (through its public methods)."""
    if scene == "done-queued":  # the Done screen just shown, then the printer fails
        c.receipts.printed(c.redeemed.redemption_id, None, OSError("printer offline"))
        return
    c.go_idle()
    p = demo.payloads
    scans = {"verdict-ready": "ready-coffee", "verdict-amount": "ready-voucher",
             "verdict-used": "already-used", "verdict-expired": "expired",
             "verdict-not-a-code": "not-a-code", "verdict-not-yet": "not-yet-valid"}
    if scene in scans:
        c.scan(p[scans[scene]])
    elif scene == "verdict-waiting":  # the next customer's card while coffee waits
        c.scan(p["ready-coffee"])
        c.scan(p["ready-voucher"])
    elif scene == "verdict-warning":  # a ready verdict 5 s before its timeout
        c.scan(p["ready-coffee"])
        c.deadline = c.now() + 4.5
        c.tick()
    elif scene == "verdict-recording":  # the Confirm button while the write runs
        c.scan(p["ready-ten-percent"])
        c.confirming = True
        c.changed()
    elif scene == "done":
        c.scan(p["ready-syrup-5-uses"])
        c.confirm()
    elif scene == "done-again":  # the same card again right after its redemption
        c.scan(p["ready-ten-percent"])
        c.confirm()
        c.go_idle()
        c.scan(p["ready-ten-percent"])
    elif scene == "pin":
        c.open_staff()
        for key in "12":
            c.pin_key(key)
    elif scene != "idle":
        c.open_staff()
        for key in demo.pin + "\n":
            c.pin_key("ok" if key == "\n" else key)
        if scene == "keypad":
            c.open_keypad()
            for key in "DEMO-TEN-":
                c.code_key(key)
        elif scene == "undo-ask":
            c.open_undo()
            c.undo_last()
        elif scene != "staff":
            getattr(c, f"open_{scene}")()
    if scene.startswith("done"):
        c.guard_until = 0.0  # as it looks once its tap guard is over


def child(out: Path, size: tuple[int, int], langs: list[str], check: bool = False) -> None:
    os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-shots-"))
    from kiosk.ui.kivyconf import configure_kivy

    configure_kivy(width=size[0], height=size[1], home=tmp / "kivy")
    from kiosk import config
    from kiosk.ui import demo as kdemo
    from kiosk.ui import parts as kparts
    from kiosk.ui.controller import Controller
    from kiosk.ui.harness import Harness
    from kiosk.ui.worker import InlineWorker

    demo = kdemo.build(tmp / "demo")
    cfg = config.load(demo.config)
    parts = kparts.build(cfg, post=lambda fn: fn(), worker=InlineWorker(),
                         print_worker=InlineWorker(), with_camera=False)
    c = parts.controller
    c.signals.sounds.mute = True  # screenshots are silent
    tag = f"{size[0]}x{size[1]}"
    Path(out).mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}

    def shoot(harness, name: str) -> None:
        harness.frames(3)
        if check:
            from kiosk.ui.legibility import problems

            harness.frames(2)
            bad = problems(harness.screen, harness.window.size)
            if bad:
                found[name] = bad
        else:
            harness.screenshot(out / f"{name}.png")

    harness = Harness(c)
    try:
        for lang in langs:
            for scene in SCENES[:-1]:
                _scene(c, scene, demo)
                c.set_language(lang)
                shoot(harness, f"{scene}-{lang}-{tag}")
    finally:
        harness.close()
        parts.stop()
    bare = Controller(None, problem=f"{tmp}/kiosk.toml: config file not found")
    harness = Harness(bare)
    try:
        for lang in langs:
            bare.set_language(lang)
            shoot(harness, f"not-provisioned-{lang}-{tag}")
    finally:
        harness.close()
    shutil.rmtree(tmp, ignore_errors=True)
    if check:
        (out / f"check-{tag}.json").write_text(json.dumps(found, ensure_ascii=False, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kiosk.ui.screenshots")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", required=True)
    ap.add_argument("--langs", default="en,uz,kk,ru")
    ap.add_argument("--check", action="store_true",
                    help="write check-WxH.json: texts that overflow or lack contrast")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    child(args.out, (w, h), [x for x in args.langs.split(",") if x], args.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
