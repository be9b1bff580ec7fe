"""Command modules of the ``kiosk`` CLI; each has ``register(subparsers)``."""

import json
import sys


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=None, default=str)
    sys.stdout.write("\n")
