"""Command modules of the ``kiosk`` CLI; each has ``register(subparsers)``."""

import json
import sys

from kiosk.i18n import LANGUAGES


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=None, default=str)
    sys.stdout.write("\n")


def add_lang_option(parser, what: str = "the output", *, extra: tuple = ()) -> None:
    """``--lang en|uz|kk|ru``: the language the command speaks (``kiosk.cli.main`` runs
    it inside ``speaking(--lang or the configured [device] language)``)."""
    parser.add_argument("--lang", choices=LANGUAGES + extra,
                        help=f"language of {what} (default: the configured [device] language)")
