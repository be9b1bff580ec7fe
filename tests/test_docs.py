"""Every ``kiosk`` and ``kiosk-hq`` command is documented (like sqlite-utils' test_docs).

Walks the real argparse parsers, so a new command module fails this test until
README.md or a docs/*.md file mentions it as ``kiosk <cmd>`` / ``kiosk-hq <cmd>``.
"""

import argparse
import re
from pathlib import Path

import pytest

from kiosk import cli
from sync import hq_cli

ROOT = Path(__file__).resolve().parents[1]


def commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    """``prefix cmd`` for every subcommand, ``prefix cmd sub`` for nested ones."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(f"{prefix} {name}")
                found.extend(commands(sub, f"{prefix} {name}"))
    return found


def docs_text() -> str:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    return "\n".join(f.read_text(encoding="utf-8") for f in files if f.exists())


ALL = commands(cli.build_parser(), "kiosk") + commands(hq_cli.build_parser(), "kiosk-hq")


def test_parsers_have_the_core_commands():
    for cmd in ("kiosk codes import", "kiosk codes status", "kiosk redeem", "kiosk void",
                "kiosk history", "kiosk-hq keygen", "kiosk-hq sign"):
        assert cmd in ALL


@pytest.mark.parametrize("cmd", ALL)
def test_command_is_documented(cmd):
    pattern = re.compile(r"(?<![\w-])" + re.escape(cmd).replace(r"\ ", r"\s+") + r"(?![\w-])")
    assert pattern.search(docs_text()), f"`{cmd}` is not mentioned in README.md or docs/*.md"


def _event_table_fields() -> list[str]:
    """The field names of docs/sync.md's event table, in order (``a``, ``b`` rows give both)."""
    text = (ROOT / "docs" / "sync.md").read_text(encoding="utf-8")
    table = text.split("An event (", 1)[1].split("\n\n", 2)[1]
    names = []
    for row in table.splitlines()[2:]:
        names += re.findall(r"`(\w+)`", row.split("|")[1])
    return names


def test_the_documented_event_is_the_event_type():
    """docs/sync.md's event table lists exactly the fields of the one event type, in order;
    the ledger records events of that shape and the wire check keeps exactly them."""
    from dataclasses import fields

    from kiosk.core.events import Event
    from sync import protocol

    assert _event_table_fields() == [f.name for f in fields(Event)]
    assert protocol.Event is Event and tuple(_event_table_fields()) == protocol.EVENT_FIELDS
