"""What a scanned QR code (or a typed code) holds, turned into a redeem code or not.

Accepted (DESIGN.md section 4):

* a bare code: letters, digits, spaces and dashes, 4 to 64 characters once normalised;
* a URL (http/https) whose ``code`` query parameter is a code, or whose last path
  segment is a code written in capitals/digits (``https://w.example/r/AB12-CD34``);
  lower-case path words such as ``/menu`` are web links, not codes;
* a configurable regular expression with a named group ``code``.

Anything else (Wi-Fi QR codes, menu links, vCards, binary noise) is *not a code*.
The parser never raises on any input.
"""

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from kiosk.core.codes import normalise

MIN_LEN = 4
MAX_LEN = 64
MAX_PAYLOAD = 2048
_BARE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 \-]*\Z")
_SEGMENT = re.compile(r"[A-Z0-9][A-Z0-9\-]*\Z")
_NORMALISED = re.compile(r"[A-Z0-9]+\Z")


@dataclass(frozen=True)
class Payload:
    """The result of parsing: ``code`` is the normalised code, or None if not a code."""

    raw: str
    code: str | None
    source: str  # "bare", "url-query", "url-path", "pattern" or "none"

    @property
    def is_code(self) -> bool:
        return self.code is not None


def _as_text(data: str | bytes) -> str | None:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return data.strip()


def _valid(candidate: str) -> str | None:
    norm = normalise(candidate)
    if MIN_LEN <= len(norm) <= MAX_LEN and _NORMALISED.match(norm):
        return norm
    return None


def _from_url(text: str) -> tuple[str | None, str]:
    try:
        parts = urlsplit(text)
        query = parse_qs(parts.query)
    except ValueError:
        return None, "none"
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None, "none"
    for value in query.get("code", [])[:1]:
        return _valid(value), "url-query"
    segment = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if segment and _SEGMENT.match(segment):
        return _valid(segment), "url-path"
    return None, "none"


def parse(data: str | bytes, pattern: re.Pattern[str] | None = None) -> Payload:
    """Parse what a QR code or a keyboard holds. Never raises."""
    text = _as_text(data)
    if text is None or not text or len(text) > MAX_PAYLOAD:
        return Payload(raw="" if text is None else text[:MAX_PAYLOAD], code=None, source="none")
    if pattern is not None:
        match = pattern.fullmatch(text)
        if match and match.groupdict().get("code"):
            code = _valid(match.group("code"))
            if code:
                return Payload(text, code, "pattern")
    if "://" in text:
        code, source = _from_url(text)
        return Payload(text, code, source if code else "none")
    if _BARE.match(text):
        code = _valid(text)
        if code:
            return Payload(text, code, "bare")
    return Payload(text, None, "none")


def compile_pattern(expr: str | None) -> re.Pattern[str] | None:
    """Compile the configured pattern; it must have a named group ``code``."""
    if not expr:
        return None
    compiled = re.compile(expr)
    if "code" not in compiled.groupindex:
        raise ValueError("the pattern needs a named group (?P<code>...)")
    return compiled
