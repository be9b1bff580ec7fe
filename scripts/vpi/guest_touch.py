"""A Pi-style multitouch screen inside the virtual Pi (pushed in by vpi_test.py).

Creates /dev/uinput device "vpi-touch" with the capabilities of the official DSI
display's touch controller (type B multitouch slots, BTN_TOUCH, ABS_X/Y and
ABS_MT_POSITION_X/Y, INPUT_PROP_DIRECT), then taps at the x,y pairs given on the
command line (800x480 screen pixels), one tap per pair, and keeps the device alive
for N seconds with --hold N. With --when-ready LOG the taps wait until the file LOG
holds a line READY (guest_tap_count.py's window is up; the device exists before the
window, as a touch screen does). Standard library only (the guest has Debian's python3).
"""

import fcntl
import os
import struct
import sys
import time

EV_SYN, EV_KEY, EV_ABS = 0, 1, 3
SYN_REPORT = 0
BTN_TOUCH = 0x14A
ABS_X, ABS_Y = 0, 1
ABS_MT_SLOT, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_TRACKING_ID = 0x2F, 0x35, 0x36, 0x39
INPUT_PROP_DIRECT = 1
UI_DEV_CREATE, UI_DEV_DESTROY = 0x5501, 0x5502
UI_SET_EVBIT, UI_SET_KEYBIT, UI_SET_ABSBIT, UI_SET_PROPBIT = 0x40045564, 0x40045565, 0x40045567, 0x4004556E
ABS_CNT = 64
W, H = 800, 480


def event(fd: int, etype: int, code: int, value: int) -> None:
    os.write(fd, struct.pack("llHHi", 0, 0, etype, code, value))


def create() -> int:
    fd = os.open("/dev/uinput", os.O_WRONLY | os.O_NONBLOCK)
    for ev in (EV_SYN, EV_KEY, EV_ABS):
        fcntl.ioctl(fd, UI_SET_EVBIT, ev)
    fcntl.ioctl(fd, UI_SET_KEYBIT, BTN_TOUCH)
    fcntl.ioctl(fd, UI_SET_PROPBIT, INPUT_PROP_DIRECT)
    absmax, absmin = [0] * ABS_CNT, [0] * ABS_CNT
    for code, top in ((ABS_X, W - 1), (ABS_Y, H - 1), (ABS_MT_POSITION_X, W - 1),
                      (ABS_MT_POSITION_Y, H - 1), (ABS_MT_SLOT, 9), (ABS_MT_TRACKING_ID, 65535)):
        fcntl.ioctl(fd, UI_SET_ABSBIT, code)
        absmax[code] = top
    # struct uinput_user_dev: name[80], input_id (4 x u16), ff_effects_max, abs arrays
    dev = struct.pack("80sHHHHi", b"vpi-touch", 0x06, 0x0001, 0x0001, 1, 0)
    dev += struct.pack(f"{ABS_CNT}i", *absmax) + struct.pack(f"{ABS_CNT}i", *absmin)
    dev += struct.pack(f"{ABS_CNT}i", *([0] * ABS_CNT)) * 2
    os.write(fd, dev)
    fcntl.ioctl(fd, UI_DEV_CREATE)
    return fd


def tap(fd: int, x: int, y: int, tracking: int) -> None:
    for etype, code, value in ((EV_ABS, ABS_MT_SLOT, 0), (EV_ABS, ABS_MT_TRACKING_ID, tracking),
                               (EV_ABS, ABS_MT_POSITION_X, x), (EV_ABS, ABS_MT_POSITION_Y, y),
                               (EV_KEY, BTN_TOUCH, 1), (EV_ABS, ABS_X, x), (EV_ABS, ABS_Y, y),
                               (EV_SYN, SYN_REPORT, 0)):
        event(fd, etype, code, value)
    time.sleep(0.12)
    for etype, code, value in ((EV_ABS, ABS_MT_TRACKING_ID, -1), (EV_KEY, BTN_TOUCH, 0),
                               (EV_SYN, SYN_REPORT, 0)):
        event(fd, etype, code, value)
    time.sleep(0.4)


def wait_ready(log: str, timeout: float = 300.0) -> None:
    """Until the file ``log`` holds a line READY (guest_tap_count.py's window is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(log) as f:
                if "READY" in f.read().split():
                    break
        except OSError:
            pass
        time.sleep(0.5)
    time.sleep(2.0)  # the first frames after READY


def main(argv: list[str]) -> int:
    hold, ready_log = 0.0, None
    while argv[:1] in (["--hold"], ["--when-ready"]):
        if argv[0] == "--hold":
            hold = float(argv[1])
        else:
            ready_log = argv[1]
        argv = argv[2:]
    fd = create()
    time.sleep(1.0)  # let udev and the readers find the new device
    if ready_log:
        wait_ready(ready_log)
    for i, pair in enumerate(argv):
        x, y = (int(v) for v in pair.split(","))
        tap(fd, x, y, 100 + i)
    time.sleep(hold)
    fcntl.ioctl(fd, UI_DEV_DESTROY)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
