"""The HQ dashboard's catalogs: every string in the templates and pages is translated
in uz, kk and ru, and every compiled .mo is what its .po says (make hq-catalogs)."""

import io
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from sync.hq.web import i18n

ROOT = Path(__file__).resolve().parents[1]
LANGS = [lang for lang in i18n.NAMES if lang != "en"]


def source_ids() -> set[str]:
    method_map = [("sync/hq/web/**.py", "python"), ("sync/hq/web/templates/**.html", "jinja2")]
    found = extract_from_dir(str(ROOT), method_map, keywords={"_": None, "N_": None},
                             options_map={"**.html": {}})
    return {message for _file, _line, message, _comments, _ctx in found
            if isinstance(message, str)}


@pytest.mark.parametrize("lang", LANGS)
def test_every_dashboard_string_is_translated(lang):
    po = i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "hq.po"
    catalog = read_po(po.open("rb"), locale=lang)
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    missing = source_ids() - translated
    assert not missing, f"{po}: not translated (run make hq-catalogs): {sorted(missing)}"


@pytest.mark.parametrize("lang", LANGS)
def test_compiled_catalog_matches_its_po(lang):
    folder = i18n.LOCALE_DIR / lang / "LC_MESSAGES"
    want = io.BytesIO()
    write_mo(want, read_po((folder / "hq.po").open("rb"), locale=lang))
    want.seek(0)
    have = read_mo((folder / "hq.mo").open("rb"))
    expected = read_mo(want)
    assert {m.id: m.string for m in have if m.id} == {m.id: m.string for m in expected if m.id}


def test_pages_speak_the_chosen_language():
    assert i18n.translations("ru").gettext("Sign in") == "Вход"
    assert i18n.translations("uz").gettext("Store") == "Do\u02bbkon"
    session: dict = {}
    assert i18n.choose(session, "kk", "en") == "kk" and session["lang"] == "kk"
    assert i18n.choose(session, None, "ru") == "kk"  # the explicit choice stays
    assert i18n.choose({}, None, "ru-RU,ru;q=0.9,en;q=0.8") == "ru"
    assert i18n.choose({}, "xx", "de") == "en"
