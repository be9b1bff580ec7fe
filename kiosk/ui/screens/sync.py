"""Sync state: online, last sync, events waiting to be sent, code list version and age."""

from datetime import UTC, datetime

from kivy.properties import StringProperty

from kiosk.core import timefmt
from kiosk.ui.i18n import age, short_time, tr
from kiosk.ui.screens.base import KioskScreen


def sync_lines(info: dict, lang: str) -> list[str]:
    lines = []
    if "online" in info:
        lines.append(tr("Online", lang) if info["online"] else tr("Offline", lang))
    last = info.get("last_sync")
    if last:
        when = timefmt.parse(last) if isinstance(last, str) else last
        lines.append(tr("Last sync: {when}", lang).format(when=short_time(when, lang)))
    else:
        lines.append(tr("Never synced", lang))
    lines.append(tr("Waiting to send: {n}", lang).format(n=info.get("pending", 0)))
    if info.get("list_version") is None:
        lines.append(tr("No code list yet", lang))
    else:
        issued = info.get("list_issued_at")
        ago = age((datetime.now(UTC) - issued).total_seconds(), lang) if issued else "?"
        lines.append(tr("Code list version {v}, issued {age} ago, {n} codes", lang).format(
            v=info["list_version"], age=ago, n=info.get("list_codes", "?")))
        if info.get("list_expired"):
            lines.append(tr("The code list has expired: sync or import a new one", lang))
    loading = info.get("list_loading")
    if loading:
        lines.append(tr("New code list version {v} loading: {pct}%", lang).format(
            v=loading["version"], pct=loading["percent"]))
    waiting = info.get("list_salt_wait")
    if waiting and waiting["pending"]:
        text = tr("Code list version {v} waits until HQ has {n} redemption(s); the current list stays in use", lang)  # noqa: E501
        lines.append(text.format(v=waiting["version"], n=waiting["pending"]))
    elif waiting:
        text = tr("Code list version {v} must be signed again at HQ; the current list stays in use", lang)  # noqa: E501
        lines.append(text.format(v=waiting["version"]))
    return lines


class SyncScreen(KioskScreen):
    body = StringProperty("")

    def refresh(self, controller) -> None:
        info, lang = controller.page_data, controller.lang
        if info is None:
            self.body = controller.staff_message or tr("Loading…", lang)
        else:
            self.body = "\n".join(sync_lines(info, lang))
