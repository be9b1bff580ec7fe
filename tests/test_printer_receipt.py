"""The receipt's content and wording in every language (pure: no printer)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from kiosk.core import receipt
from kiosk.core.receipt import Line, QRCode, Rule
from kiosk.i18n import LANGUAGES

AT = datetime(2026, 11, 22, 14, 5, 9, tzinfo=UTC)
LABELS = {lang: receipt.labels(lang) for lang in LANGUAGES}  # from the catalogs
RID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
TITLES = {"en": "Free coffee", "uz": "Bepul qahva", "kk": "Тегін кофе", "ru": "Бесплатный кофе"}


def data(**kw) -> receipt.ReceiptData:
    base = dict(redemption_id=RID, business_name="Café Samarqand", reward_title=TITLES, at=AT,
                clock="rtc", store="main-store", device="counter-1", masked_code="0001",
                reward={"type": "percent", "value": 10}, tz=timezone(timedelta(hours=5)))
    return receipt.ReceiptData(**(base | kw))


def test_every_language_has_every_label():
    keys = set(LABELS["en"])
    for lang in LANGUAGES:
        assert set(LABELS[lang]) == keys, lang
        assert all(LABELS[lang][k].strip() for k in keys)


def test_uzbek_uses_the_turned_comma_and_kazakh_its_letters():
    assert "\u02bb" in LABELS["uz"]["store"]  # Doʻkon, not Do'kon
    assert "'" not in "".join(LABELS["uz"].values())
    kazakh = set("ӘҒҚҢӨҰҮҺІәғқңөұүһі")
    assert kazakh & set("".join(LABELS["kk"].values()))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_receipt_has_everything_in_order(lang):
    r = receipt.build(data(), lang)
    text = r.text_lines()
    t = LABELS[lang]
    assert text[0] == "Café Samarqand"
    assert t["title"] in text and TITLES[lang] in text
    assert f"{t['value']}: 10%" in text
    assert f"{t['code']}: ****0001" in text
    assert f"{t['time']}: 2026-11-22 19:05 +05:00" in text  # local time with its offset
    assert f"{t['clock']}: {t['clock.rtc']}" in text
    assert f"{t['store']}: main-store" in text and f"{t['device']}: counter-1" in text
    assert t["redemption"] in text and RID in text
    assert text[-1] == t["footer"]  # default footer in the receipt's language
    assert [b.data for b in r.blocks if isinstance(b, QRCode)] == [RID]
    assert sum(isinstance(b, Rule) for b in r.blocks) == 3
    assert not any(t["reprint"] in line for line in text)


def test_reprint_says_so_and_sample_says_test():
    r = receipt.build(data(reprint=True), "ru")
    assert "*** КОПИЯ ***" in r.text_lines()[:3] and r.reprint
    s = receipt.build(data(sample=True), "en")
    assert "*** TEST PRINT ***" in s.text_lines()


def test_footer_from_config_string_or_table_and_logo_first():
    r = receipt.build(data(footer="Come again\nwww.example.uz", logo="/x/logo.png"), "kk")
    assert r.text_lines()[-2:] == ["Come again", "www.example.uz"]
    assert isinstance(r.blocks[0], receipt.Logo)
    r = receipt.build(data(footer={"en": "Thanks", "ru": "Спасибо за визит"}), "ru")
    assert r.text_lines()[-1] == "Спасибо за визит"
    r = receipt.build(data(footer=""), "en")
    assert not isinstance(r.blocks[-2], Rule) and r.text_lines()[-1] == RID


def test_only_the_last_four_characters_of_the_code_are_shown():
    assert receipt.masked("0001") == "****0001"
    assert receipt.masked(None) == "-"
    r = receipt.build(data(masked_code="ABCD"), "en")
    assert "Code: ****ABCD" in r.text_lines()


@pytest.mark.parametrize("reward,lang,expected", [
    ({"type": "percent", "value": 12.5}, "en", "12.5%"),
    ({"type": "amount", "value": 50000, "currency": "UZS"}, "en", "50 000 UZS"),
    ({"type": "item", "value": "coffee"}, "ru", "бесплатно"),
    ({"type": "addon", "value": "extra shot"}, "en", "extra shot"),
    (None, "en", ""),
])
def test_reward_values(reward, lang, expected):
    assert receipt.reward_value(reward, lang) == expected


def test_value_row_is_left_out_when_there_is_none_and_title_falls_back():
    r = receipt.build(data(reward=None, reward_title={"en": "Wash"}), "kk")
    assert "Wash" in r.text_lines()
    assert not any(line.startswith(LABELS["kk"]["value"]) for line in r.text_lines())
    rows = [b for b in r.blocks if isinstance(b, Line) and b.right]
    assert [b.right for b in rows][0] == "****0001"
