"""The kiosk's one gettext domain: every marked string of the device (screens, receipts,
the CLI, ``kiosk doctor``, printer faults, config/provisioning errors) is translated in
every catalog, errors and CLI lines people read are marked at all, the
committed .mo files are what their .po files say, the font draws every glyph, and the
run time reads them with the stdlib alone (``make catalogs``, docs/ui.md)."""

import ast
import io
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages import frontend
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from fontTools.ttLib import TTFont

from kiosk import config, i18n
from kiosk.ui import demo
from kiosk.ui import i18n as ui_i18n
from kiosk.ui.kivyconf import FONT_BOLD, FONT_REGULAR

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {**DEFAULT_KEYWORDS, "tr": None, "N_": None, "_": None, "Msg": None}  # as `make catalogs`
# Babel >= 2.15 names it parse_mapping_cfg; the dev extra admits 2.12.
parse_mapping_cfg = getattr(frontend, "parse_mapping_cfg", None) or frontend.parse_mapping


def source_ids() -> set[str]:
    """Every string marked in kiosk/, found the way `make catalogs` finds them."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found = extract_from_dir(str(ROOT), method_map, options_map, keywords=KEYWORDS)
    return {message for _file, _line, message, _comments, _ctx in found if isinstance(message, str)}


SOURCE = source_ids()


def po_path(lang: str) -> Path:
    return i18n.LOCALE_DIR / lang / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


def entries(lang: str) -> dict[str, str]:
    """msgid -> msgstr of a catalog (the header left out)."""
    with po_path(lang).open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    return {m.id: ("" if m.fuzzy else m.string) for m in catalog if m.id}


def test_the_language_list_is_written_once():
    assert i18n.LANGUAGES == ("en", "uz", "kk", "ru")
    assert config.LANGUAGES is i18n.LANGUAGES and ui_i18n.LANGUAGES is i18n.LANGUAGES
    assert set(i18n.LANGUAGE_NAMES) == set(i18n.LANGUAGES)
    assert {p.parts[-3] for p in i18n.LOCALE_DIR.glob("*/LC_MESSAGES/kiosk.po")} == set(i18n.LANGUAGES)


def test_extraction_reaches_every_part_of_the_kiosk():
    """A babel.cfg or keyword change that loses a part of the code fails here."""
    for text in ("Confirm",  # a .kv file
                 "Your reward is ready",  # the screens' texts (ui/present.py)
                 "Reward redeemed", "TEST PRINT",  # receipts
                 "Ready to redeem", "valid until {date}",  # kiosk redeem
                 "no code list installed: every scan is refused",  # doctor (_)
                 "under-voltage",  # doctor tables (N_)
                 "Printer is out of paper: load a new roll.", "Printer ready.",  # printer
                 "The receipt is saved: reprint it from the staff menu.",  # print outcomes (Msg)
                 "Receipts are saved as PNG files in {folder}.",  # the preview printer
                 "no redemptions today", "redemption {id} was already undone",  # void, history
                 "printed -> {file}", "print queue is empty",  # print-test, print-queue
                 "{path}: config file not found (set --config or KIOSK_CONFIG)", "missing (required)",
                 "setup QR signature does not verify: forged or altered",  # provisioning
                 "provisioning refused [{reason}]: {problem}",
                 "missing (the sync agent needs a broker URL such as {example})",  # kiosk-sync
                 "chunk {name}: sha256 does not match the manifest", "line {line}: {problem}",  # bundles
                 "replay: {path} does not exist",  # camera errors
                 "put this line in the [ui] section of kiosk.toml"):  # kiosk pin-hash
        assert text in SOURCE, text


# Where a technician or staff reads the words: errors a command or screen shows, and the
# lines the CLI prints. Their text must be marked (Msg, _, tr, N_), never a bare English
# literal; tests/test_config.py, test_provision.py, test_ledger.py, test_printer_*.py
# show each of them in another language.
def _kiosk_errors() -> set[str]:
    """Every KioskError subclass (kiosk/errors.py and any module's own, e.g. BackupError):
    each is raised on purpose and its words reach a person."""
    from kiosk import errors

    names = {name for name, obj in vars(errors).items()
             if isinstance(obj, type) and issubclass(obj, errors.KioskError)}
    classes = [node for path in (ROOT / "kiosk").rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.ClassDef)]
    while more := {c.name for c in classes if c.name not in names
                   and any(isinstance(b, ast.Name) and b.id in names for b in c.bases)}:
        names |= more
    return names


SHOWN_ERRORS = _kiosk_errors()
NOT_SECTIONS = {"log", "logger", "logging"}
# Every command module and cli.py. Left out: `kiosk screenshots` (cmd_screenshots), a
# developer tool that renders the screens for the docs, never run by staff or a technician.
CLI_MODULES = ["cli.py"] + sorted(f"commands/{p.name}" for p in (ROOT / "kiosk" / "commands").glob("*.py"))
DEVELOPER_ONLY = {"cmd_screenshots"}


def _literal_parts(node):
    """The literal text of a string expression built from constants, f-strings and +."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.JoinedStr):
        for part in node.values:
            yield from _literal_parts(part)
    elif isinstance(node, ast.BinOp):
        yield from _literal_parts(node.left)
        yield from _literal_parts(node.right)


# Modules whose errors are not converted yet (issue 14); the test below checks they still
# hold a bare literal, so the list shrinks as they are done. decoder.py: its owner was
# reworking it at the same time (scanning); convert its three HardwareErrors next.
ERRORS_PENDING: set[str] = set()


# The sync agent's words a technician reads: its start-up errors (agent_cli), and what
# `kiosk sync-status` and `kiosk doctor` show from the sync state: connection errors
# (the ("error", text) items of its queue) and what happened to a code list (ListEvent).
SYNC_SHOWN = ["sync/agent.py", "sync/agent_cli.py", "sync/lists.py", "sync/list_import.py"]


def _sync_words(node):
    """The text of a ListEvent(state, message) or a queue's put(("error", text))."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ListEvent":
        return [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "message")]
    item = node.args[0] if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "put" else None
    if (isinstance(item, ast.Tuple) and len(item.elts) == 2 and isinstance(item.elts[0], ast.Constant)
            and item.elts[0].value == "error"):
        return [item.elts[1]]
    return []


def test_errors_shown_to_people_are_marked_for_translation():
    bare = []
    paths = sorted((ROOT / "kiosk").rglob("*.py")) + [ROOT / name for name in SYNC_SHOWN]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if any(any(_literal_parts(words)) for words in _sync_words(node)):
                bare.append((str(path.relative_to(ROOT)), node.lineno))
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            shown = getattr(func, "id", None) in SHOWN_ERRORS or getattr(func, "attr", None) in SHOWN_ERRORS
            section = (isinstance(func, ast.Attribute) and func.attr == "error" and len(node.args) == 2
                       and not (isinstance(func.value, ast.Name) and func.value.id in NOT_SECTIONS))
            if (shown or section) and any(_literal_parts(node.args[-1])):
                bare.append((str(path.relative_to(ROOT)), node.lineno))
    new = [f"{file}:{line}" for file, line in bare if file not in ERRORS_PENDING]
    assert not new, f"English-only error text (use kiosk.i18n.Msg): {new}"
    done = ERRORS_PENDING - {file for file, _line in bare}
    assert not done, f"converted: take them off ERRORS_PENDING: {sorted(done)}"


@pytest.mark.parametrize("module", CLI_MODULES)
def test_cli_lines_are_marked_for_translation(module):
    """A print() of the CLI may hold punctuation and the program name around marked text,
    never English words of its own."""
    path = ROOT / "kiosk" / module
    words = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name in DEVELOPER_ONLY]:
        func.body = []  # not read by staff or a technician (see DEVELOPER_ONLY)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            for arg in node.args:
                text = re.sub(r"kiosk(-sync| [a-z-]+)?:", "", "".join(_literal_parts(arg)))
                if any(ch.isalpha() for ch in text):
                    words.append(f"{module}:{node.lineno}: {text!r}")
    assert not words, f"English-only CLI output (use _()): {words}"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_string_in_the_code_is_translated(lang):
    have = entries(lang)
    missing = sorted(SOURCE - set(have))
    empty = sorted(k for k in SOURCE & set(have) if not have[k].strip())
    assert not missing, f"{po_path(lang)} lacks (run make catalogs): {missing}"
    assert not empty, f"{po_path(lang)}: empty or fuzzy translation of {empty}"
    stale = sorted(set(have) - SOURCE)
    assert not stale, f"{po_path(lang)}: no longer in the code (run make catalogs): {stale}"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_placeholders_survive_translation(lang):
    def fields(text):
        return sorted(f for _, f, _, _ in string.Formatter().parse(text) if f)

    for msgid, msgstr in entries(lang).items():
        assert fields(msgid) == fields(msgstr), f"{lang}: {msgid!r} -> {msgstr!r}"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_compiled_mo_is_what_the_po_says(lang):
    """Fails when a .po was edited without `make catalogs` (pybabel compile)."""
    folder = po_path(lang).parent
    want = io.BytesIO()
    with po_path(lang).open("rb") as fh:
        write_mo(want, read_po(fh, locale=lang))
    want.seek(0)
    with (folder / "kiosk.mo").open("rb") as fh:
        have = read_mo(fh)
    assert {m.id: m.string for m in have if m.id} == {m.id: m.string for m in read_mo(want) if m.id}


@pytest.mark.parametrize("font", [FONT_REGULAR, FONT_BOLD], ids=lambda p: p.name)
def test_font_draws_every_glyph_of_every_catalog(font):
    """The screens and the raster receipts use this font: every character of every
    catalog (all four languages, every part of the kiosk) must be in it."""
    cmap = TTFont(str(font)).getBestCmap()
    texts = [s for lang in i18n.LANGUAGES for s in entries(lang).values()]
    assert len(texts) == len(i18n.LANGUAGES) * len(SOURCE)
    texts += list(i18n.LANGUAGE_NAMES.values())
    texts += [t for r in demo.spec()["rewards"].values() for t in r["title"].values()]
    lacking = {ch for t in texts for ch in t if ord(ch) not in cmap and not ch.isspace()}
    assert not lacking, f"{font.name} cannot draw {sorted(lacking)}"


def test_lookups_fall_back_to_english():
    assert "\u02bb" in i18n.tr("Wrong PIN", "uz")  # Uzbek Latin: the turned comma, not '
    assert i18n.tr("Confirm", "ru") == "Подтвердить"
    assert i18n.tr("an untranslated text", "kk") == "an untranslated text"
    assert i18n.tr("Confirm", "xx") == "Confirm"


def test_speaking_sets_the_language_of_underscore_for_the_block_only():
    with i18n.speaking("ru"):
        assert i18n._("never") == "никогда"
        with i18n.speaking("kk"):
            assert i18n._("never") == "ешқашан"
        assert i18n.current() == "ru"
    assert i18n._("never") == "never" and i18n.current() == "en"
    with i18n.speaking("xx"):
        assert i18n.current() == "en"


def test_the_device_runs_without_babel():
    """Babel is a dev-time tool: nothing the kiosk imports at run time may need it."""
    code = ("import sys\n"
            "import kiosk.cli, kiosk.i18n, kiosk.core.receipt, kiosk.core.messages\n"
            "import kiosk.doctor.data, kiosk.doctor.devices, kiosk.doctor.network\n"
            "import kiosk.doctor.system, kiosk.hardware.printer.faults, kiosk.ui.present\n"
            "assert kiosk.i18n.tr('Printer ready.', 'ru') == 'Принтер готов.'\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'babel'], 'babel imported'\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_msg_is_the_english_text_and_says_itself_in_any_language():
    from kiosk.errors import VoidError

    inner = i18n.Msg("redemption {id} was already undone", id="r1")
    outer = i18n.Msg("cannot undo: {reason}", reason=inner)
    assert isinstance(outer, str) and outer == "cannot undo: redemption r1 was already undone"
    assert i18n.say(outer, "ru") == "отменить нельзя: погашение r1 уже отменено"
    err = VoidError(inner)
    assert str(err) == inner and err.msg is inner
    assert i18n.say(i18n.Msg("cannot undo: {reason}", reason=err), "kk") == \
        "болдырмау мүмкін емес: r1 пайдалануы бұрын болдырылмаған"
    assert i18n.say(ValueError(inner), "uz") == "r1 foydalanishi allaqachon bekor qilingan"
    assert i18n.say(ValueError("plain words"), "ru") == "plain words"
    with i18n.speaking("ru"):
        assert i18n.say(inner) == "погашение r1 уже отменено"
    assert inner.map(str.upper).render("ru") == "погашение R1 уже отменено"


def test_a_msg_crosses_a_process_boundary_as_json():
    import json

    inner = i18n.Msg("redemption {id} was already undone", id="r1")
    outer = i18n.Msg("cannot undo: {reason}", reason=ValueError(inner))
    back = i18n.Msg.from_json(json.loads(json.dumps(outer.to_json())))
    assert back == outer and back.render("ru") == outer.render("ru") != str(outer)
    for bad in ("plain words", None, {"text": "a {b}", "values": {"c": 1}}, {"text": "{0}"},
                {"text": 5}, {"text": "x {y:d}", "values": {"y": "text"}}):
        assert isinstance(i18n.Msg.from_json(bad), i18n.Msg)
