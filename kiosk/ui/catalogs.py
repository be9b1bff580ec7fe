"""Compiling gettext catalogs: ``.po`` (what translators edit) to ``.mo`` (what runs).

A small, dependency-free equivalent of GNU ``msgfmt`` for the subset the kiosk uses
(msgid/msgstr pairs, multi-line strings, comments, ``fuzzy`` flags; no plurals or
contexts). Both files are committed; ``tests/test_ui_logic.py`` fails when a ``.mo``
is stale. Rebuild with ``python -m kiosk.ui.catalogs``.
"""

import ast
import re
import struct
import sys
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parents[1] / "assets" / "locale"
DOMAIN = "kiosk"


def _unquote(line: str, path: Path, lineno: int) -> str:
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        raise ValueError(f"{path}:{lineno}: not a quoted string: {line!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"{path}:{lineno}: not a quoted string: {line!r}")
    return value


def parse_po(path: Path) -> dict[str, str]:
    """msgid -> msgstr of a ``.po`` file (header under ""); fuzzy and empty entries skipped."""
    catalog: dict[str, str] = {}
    entry: dict[str, str] = {}
    field, fuzzy = None, False

    def flush():
        nonlocal entry, fuzzy
        if "msgid" in entry and entry.get("msgstr") and not fuzzy:
            catalog[entry["msgid"]] = entry["msgstr"]
        entry, fuzzy = {}, False

    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            flush()
            field = None
        elif line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith("#"):
            continue
        elif line.startswith(("msgid ", "msgstr ")):
            key, rest = line.split(" ", 1)
            if key == "msgid" and "msgid" in entry:
                flush()
            field = key
            entry[field] = _unquote(rest, path, lineno)
        elif line.startswith('"') and field:
            entry[field] += _unquote(line, path, lineno)
        else:
            raise ValueError(f"{path}:{lineno}: unexpected line {raw!r}")
    flush()
    return catalog


_MARKED = re.compile(r"""\b(?:tr|N_)\(\s*(?:N_\(\s*)?("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
UI_DIR = Path(__file__).resolve().parent


def extract(root: Path = UI_DIR) -> set[str]:
    """Every literal passed to ``tr(...)`` or ``N_(...)`` in the UI's .py and .kv files."""
    found = set()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".kv"):
            for match in _MARKED.finditer(path.read_text(encoding="utf-8")):
                found.add(ast.literal_eval(match.group(1)))
    return found


def mo_bytes(catalog: dict[str, str]) -> bytes:
    """The GNU ``.mo`` encoding of a catalog (little-endian, sorted keys, no hash table)."""
    keys = sorted(catalog)
    ids = [k.encode("utf-8") for k in keys]
    strs = [catalog[k].encode("utf-8") for k in keys]
    n = len(keys)
    start = 7 * 4 + 16 * n
    offsets, blob = [], b""
    for data in ids + strs:
        offsets.append((len(data), start + len(blob)))
        blob += data + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0)
    table = b"".join(struct.pack("<2I", length, off) for length, off in offsets)
    return header + table + blob


def compile_all(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Write ``LANG/LC_MESSAGES/kiosk.mo`` next to every ``kiosk.po``; return them."""
    written = []
    for po in sorted(Path(locale_dir).glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = po.with_suffix(".mo")
        mo.write_bytes(mo_bytes(parse_po(po)))
        written.append(mo)
    return written


if __name__ == "__main__":
    for path in compile_all(Path(sys.argv[1]) if len(sys.argv) > 1 else LOCALE_DIR):
        print(f"wrote {path}")
