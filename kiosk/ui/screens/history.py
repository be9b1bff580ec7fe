"""Today's redemptions on this device and those fanned out from the store."""

from kivy.properties import StringProperty

from kiosk.core import timefmt
from kiosk.core.bundle import reward_title
from kiosk.ui.i18n import N_, tr
from kiosk.ui.screens.base import KioskScreen

UNCONFIRMED = N_("Not confirmed (timed out)")


def history_lines(rows, lang: str) -> list[str]:
    lines = []
    for r in rows:
        at = timefmt.parse(r["at"]).astimezone().strftime("%H:%M")
        title = reward_title(r.get("reward"), lang) or r["reward_id"] or "-"
        if r["kind"] == "void":
            kind = tr("Undo", lang) + ": " + title
        elif r["kind"] == "unconfirmed":
            kind = tr(UNCONFIRMED, lang) + ": " + title
        else:
            kind = title
        code = f"…{r['masked_code']}" if r["masked_code"] else f"#{(r['code_hash'] or '')[:6]}"
        line = f"{at}   {kind}   {code}"
        if r["voided_by"]:
            line += "   (" + tr("Undone", lang) + ")"
        if r.get("origin", "local") != "local":
            line += f"   [{r['device']}]"
        lines.append(line)
    return lines


class HistoryScreen(KioskScreen):
    body = StringProperty("")

    def refresh(self, controller) -> None:
        rows, lang = controller.page_data, controller.lang
        if rows is None:
            self.body = controller.staff_message or tr("Loading…", lang)
        elif not rows:
            self.body = tr("No redemptions today", lang)
        else:
            redeemed = sum(1 for r in rows if r["kind"] == "redeem" and not r["voided_by"])
            head = tr("{n} redeemed today", lang).format(n=redeemed)
            self.body = "\n".join([head, ""] + history_lines(rows, lang))
