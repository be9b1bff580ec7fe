"""Property tests of the QR payload parser (kiosk/core/payload.py, DESIGN.md section 4)."""

import re
import string
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.core import codes, payload

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PATTERN = payload.compile_pattern(r"LOYAL:(?P<code>[A-Za-z0-9 -]{4,200})")

code_st = st.text(string.ascii_uppercase + string.digits, min_size=payload.MIN_LEN,
                  max_size=payload.MAX_LEN)
host_st = st.sampled_from(["w.example", "loyalty.example.uz", "x.example:8443", "127.0.0.1"])


@st.composite
def written(draw, code_st=code_st, seps=("", "", " ", "-", "--", " - "), lower=True):
    """A code as a person or a wallet might write it: separators, mixed case."""
    code = draw(code_st)
    out = []
    for i, ch in enumerate(code):
        if lower and draw(st.booleans()):
            ch = ch.lower()
        out.append(ch)
        if i < len(code) - 1:
            out.append(draw(st.sampled_from(seps)))
    return code, "".join(out)


@SETTINGS
@given(st.text(max_size=3000))
def test_never_raises_on_text(text):
    for p in (None, PATTERN):
        result = payload.parse(text, p)
        assert result.code is None or re.fullmatch(r"[A-Z0-9]{4,64}", result.code)


@SETTINGS
@given(st.binary(max_size=3000))
def test_never_raises_on_bytes(data):
    result = payload.parse(data, PATTERN)
    assert result.code is None or re.fullmatch(r"[A-Z0-9]{4,64}", result.code)
    assert (result.source == "none") == (result.code is None)


@SETTINGS
@given(written(), st.sampled_from(["", " ", "\n", "\t "]))
def test_bare_code_round_trips(pair, pad):
    code, text = pair
    result = payload.parse(pad + text + pad)
    assert (result.code, result.source) == (code, "bare")
    # the HQ hashes the code as written in its CSV; the kiosk hashes what it parsed
    salt = b"s" * 32
    assert codes.code_hash(salt, text) == codes.code_hash(salt, result.code)


@SETTINGS
@given(written(), host_st, st.sampled_from(["", "/r", "/redeem/now"]),
       st.sampled_from(["", "&src=wallet", "&lang=uz"]), st.booleans())
def test_url_query_round_trips(pair, host, path, more, plus):
    code, text = pair
    value = quote_plus(text) if plus else quote(text)
    result = payload.parse(f"https://{host}{path}?code={value}{more}".encode())
    assert (result.code, result.source) == (code, "url-query")


@SETTINGS
@given(written(lower=False, seps=("", "", "-")), host_st,
       st.sampled_from(["/r/", "/c/", "/", "/v1/r/"]), st.sampled_from(["", "/", "?utm=qr"]),
       st.sampled_from(["https", "http", "HTTPS"]))
def test_url_last_path_segment_in_capitals_round_trips(pair, host, prefix, suffix, scheme):
    code, text = pair
    result = payload.parse(f"{scheme}://{host}{prefix}{text}{suffix}")
    assert (result.code, result.source) == (code, "url-path")


@SETTINGS
@given(written())
def test_configured_pattern_round_trips(pair):
    code, text = pair
    result = payload.parse(f"LOYAL:{text}", PATTERN)
    assert (result.code, result.source) == (code, "pattern")
    assert payload.parse(f"LOYAL:{text}").source != "pattern"


wifi_st = st.builds(
    lambda ssid, pw, kind: f"WIFI:S:{ssid};T:{kind};P:{pw};;",
    st.text(min_size=1, max_size=32), st.text(max_size=63), st.sampled_from(["WPA", "WEP", "nopass"]))
menu_st = st.builds(
    lambda host, words, q: f"https://{host}/" + "/".join(words) + q,
    host_st, st.lists(st.text(string.ascii_lowercase + "-_.", min_size=1, max_size=12),
                      min_size=1, max_size=4),
    st.sampled_from(["", "?table=4", "?lang=ru#drinks", "?code="]))


@SETTINGS
@given(st.one_of(wifi_st, menu_st))
def test_wifi_and_menu_links_are_not_codes(text):
    result = payload.parse(text, PATTERN)
    assert result.code is None and result.source == "none"


@pytest.mark.parametrize("text", [
    "", "   ", "ABC", "A" * 65, "BEGIN:VCARD\nFN:Ali\nEND:VCARD", "mailto:a@example.com",
    "tel:+998901234567", "ftp://files.example/ABCD1234", "https://w.example/r?code=ab",
    "https://[::1/r/ABCD", "https://w.example/menu", "-ABCD-1234", "AB_CD_12",
    "https://w.example/r?code=" + "A" * 70, "\x00\x01ABCD", "ABCD\u02bb1234",
])
def test_examples_that_are_not_codes(text):
    assert payload.parse(text).code is None


def test_oversized_payload_is_not_a_code():
    assert payload.parse("A" * (payload.MAX_PAYLOAD + 1)).code is None


def test_pattern_needs_a_code_group():
    with pytest.raises(ValueError):
        payload.compile_pattern(r"LOYAL:([A-Z]+)")
    assert payload.compile_pattern("") is None
