"""``kiosk-sync``: the device's MQTT sync agent (its own process)."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("kiosk-sync: the MQTT agent is not built yet (see issue 6)", file=sys.stderr)
    return 1
