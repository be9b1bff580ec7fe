"""``kiosk`` command line: parses arguments and calls the library, nothing more.

Each command group lives in a module of :mod:`kiosk.commands` with a
``register(subparsers)`` function; they are discovered here, so adding a command
touches only its own module. A module whose commands open a printer sets
``USES_PRINTER = True``: python-escpos is then prepared (:mod:`kiosk.hardware.escpos_setup`)
before the command runs, and only then (it costs 0.2 s). Exit codes: 0 success, 1 refusal or failure, 2 usage or
configuration error.

Every command speaks the language of ``--lang`` (if it has one, :func:`kiosk.commands.add_lang_option`)
or else the configured ``[device] language``: :func:`main` runs it inside
``kiosk.i18n.speaking(...)``, so its ``_()`` texts and the errors it raises
(``kiosk.i18n.say``) are in that language; ``--json`` keys and values stay as they are.
"""

import argparse
import importlib
import os
import pkgutil
import sqlite3
import sys

from kiosk import __version__, commands, config
from kiosk.errors import ConfigError, KioskError
from kiosk.i18n import LANGUAGES, _, say, speaking

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on usage errors; keep that
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kiosk", description="redeem-kiosk: offline loyalty redeem codes")
    parser.add_argument("--config", metavar="PATH",
                        help=f"config file (default: $KIOSK_CONFIG or {config.DEFAULT_PATH})")
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"kiosk.commands.{info.name}").register(sub)
    return parser


def load_config(args: argparse.Namespace) -> config.Config:
    """The config the command line names; its warnings (unknown keys) go to stderr."""
    cfg = config.load(config.locate(args.config))
    for warning in cfg.warnings:
        print("kiosk: " + _("config warning: {warning}").format(warning=say(warning)), file=sys.stderr)
    return cfg


def language_of(args: argparse.Namespace) -> str:
    """The language a command speaks: its ``--lang``, else the configured one."""
    chosen = getattr(args, "lang", None)
    return chosen if chosen in LANGUAGES else config.language_hint(config.locate(getattr(args, "config", None)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(sys.modules[args.handler.__module__], "USES_PRINTER", False):
        from kiosk.hardware import escpos_setup
        escpos_setup.prepare()  # before the command imports python-escpos
    with speaking(language_of(args)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except ConfigError as exc:
        print("kiosk: " + _("config error: {error}").format(error=say(exc)), file=sys.stderr)
        return EXIT_USAGE
    except KioskError as exc:
        print(f"kiosk: {say(exc)}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kiosk scan --json | head -2`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return EXIT_OK
    except sqlite3.Error as exc:  # e.g. disk full: the transaction was rolled back
        print("kiosk: " + _("database error: {error} (the change that failed was not recorded)").format(
            error=exc), file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
