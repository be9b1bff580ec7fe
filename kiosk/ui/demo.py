"""A throwaway demo kiosk: key, signed bundle, config, data and wallet-card images.

``build(data_dir)`` makes everything ``kiosk demo``, the screenshots and the UI tests
need from ``kiosk/assets/demo/cards.json``: a fresh Ed25519 demo key, a bundle
signed with it (through the real writer and importer), a kiosk.toml whose printer
writes receipt images to ``receipts/`` and whose camera replays ``cards/``, one
code already redeemed "next door" (so its refusal names a counter and a time), and
wallet-card PNGs drawn with ``qrcode`` and Pillow.

In ``kiosk demo`` the camera is a :class:`CardDeck`: it shows the next card only when
the previous customer is done and Idle has been left alone for ``DEAL_PAUSE`` seconds
(any touch restarts the wait), or at once when Space or N is pressed, so a newcomer
can look around Idle and the staff menu first. The cards still go through the real
QR decoder and scanner thread.
"""

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kiosk.core import bundle, bundle_writer, codes, importer, keys, timefmt
from kiosk.core.ids import uuid7
from kiosk.core.ledger import Identity, Ledger
from kiosk.core.store import Store
from kiosk.ui import pin

ASSETS = Path(__file__).resolve().parents[1] / "assets"
CARDS_JSON = ASSETS / "demo" / "cards.json"
FONT = ASSETS / "fonts" / "NotoSans-Bold.ttf"


@dataclass
class Demo:
    data_dir: Path
    config: Path
    cards_dir: Path
    receipts_dir: Path
    payloads: dict  # card name -> QR payload
    pin: str


def spec() -> dict:
    return json.loads(CARDS_JSON.read_text(encoding="utf-8"))


def _records(cards: list[dict], salt: bytes, now: datetime):
    for card in cards:
        if "code" not in card:
            continue
        days = card.get("valid_until_days")
        start = card.get("valid_from_days")
        yield {
            "op": "put", "code_hash": codes.code_hash(salt, card["code"]),
            "reward_id": card["reward_id"],
            "valid_from": timefmt.format(now + timedelta(days=start)) if start else None,
            "valid_until": timefmt.format(now + timedelta(days=days)) if days else None,
            "max_uses": card.get("max_uses", 1), "stores": None,
        }


def _config_text(s: dict, data_dir: Path, pub: Path, pin_hash: str, cards: Path,
                 receipts: Path, extra: str) -> str:
    return f"""# Demo kiosk written by `kiosk demo`; throwaway.
[device]
id = "{s['device']}"
store = "{s['store']}"
program = "{s['program']}"
data_dir = "{data_dir}"
language = "en"
business_name = "{s['business_name']}"

[trust.keys]
demo = "{pub}"

[ui]
pin_hash = "{pin_hash}"
verdict_timeout = 20
refusal_timeout = 8
done_timeout = 5

[camera]
# `kiosk demo` replaces this with a deck that deals one card per customer (Space: next).
source = "replay:{cards}?fps=0.2&loop=1"

[printer]
url = "preview://{receipts}"

[gpio]
# GPIO numbers; `kiosk demo` sets GPIOZERO_PIN_FACTORY=mock, so no hardware is needed.
green_led = 17
red_led = 27
buzzer = 22
button = 23

[redeem]
void_window_minutes = 10
{extra}"""


def build(data_dir: Path, *, extra_config: str = "", cards: bool = True) -> Demo:
    """Create the demo kiosk in ``data_dir`` (new and empty); ``cards=False`` skips the PNGs."""
    s, now = spec(), datetime.now(UTC)
    data_dir = Path(data_dir)
    priv, pub = keys.generate(data_dir / "keys")
    salt = bundle_writer.new_salt()
    out = bundle_writer.write(
        bundle_writer.Spec(program=s["program"], version=1, key_id="demo", code_salt=salt,
                           rewards=s["rewards"], issued_at=now - timedelta(hours=2)),
        _records(s["cards"], salt, now), keys.load_private(priv), data_dir / "bundle-v1")
    store = Store.in_dir(data_dir)
    try:
        source = bundle.open_source(out)
        importer.import_bundle(store, source, {"demo": keys.load_public(pub)}, s["program"], now=now)
        _mark_used(store, s, salt, now)
    finally:
        store.close()
    cards_dir, receipts = data_dir / "cards", data_dir / "receipts"
    receipts.mkdir(parents=True, exist_ok=True)
    payloads = draw_cards(s, cards_dir) if cards else {c["name"]: payload_of(c) for c in s["cards"]}
    config = data_dir / "kiosk.toml"
    config.write_text(_config_text(s, data_dir, pub, pin.make_hash(s["pin"]), cards_dir, receipts,
                                   extra_config), encoding="utf-8")
    return Demo(data_dir, config, cards_dir, receipts, payloads, s["pin"])


def _mark_used(store: Store, s: dict, salt: bytes, now: datetime) -> None:
    """Record the 'already used' cards as redeemed on another counter of the store."""
    ledger = Ledger(store, Identity(s["device"], s["store"], s["program"]))
    for seq, card in enumerate((c for c in s["cards"] if c.get("used_on")), 1):
        at = now - timedelta(minutes=card.get("used_at_minutes_ago", 60))
        ledger.apply_remote({
            "id": uuid7(), "seq": seq, "device": card["used_on"], "store": s["store"],
            "kind": "redeem", "voids": None, "code_hash": codes.code_hash(salt, card["code"]),
            "reward_id": card["reward_id"], "list_version": 1, "at": timefmt.format(at),
            "clock": "synced", "staff": None})


def payload_of(card: dict) -> str:
    return card.get("payload") or f"https://demo.example/r/{card['code']}"


def draw_cards(s: dict, out: Path) -> dict:
    """One wallet-card PNG per demo card (QR on a white card); returns name -> payload."""
    import qrcode
    from PIL import Image, ImageDraw, ImageFont

    out.mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(str(FONT), 28)
    small = ImageFont.truetype(str(FONT), 20)
    payloads = {}
    for i, card in enumerate(s["cards"], 1):
        payload = payloads[card["name"]] = payload_of(card)
        qr = qrcode.QRCode(border=4, box_size=8)
        qr.add_data(payload)
        qr_img = qr.make_image(fill_color="black", back_color="white").convert("L")
        img = Image.new("L", (qr_img.width + 80, qr_img.height + 140), 235)
        draw = ImageDraw.Draw(img)
        draw.rounded_rectangle([10, 10, img.width - 10, img.height - 10], 24, fill=255)
        draw.text((40, 30), s["business_name"], font=font, fill=20)
        draw.text((40, img.height - 60), card["name"], font=small, fill=90)
        img.paste(qr_img, (40, 80))
        img.save(out / f"{i:02d}-{card['name']}.png")
    return payloads


# -- the demo's camera: one card per customer ----------------------------------------
DEAL_PAUSE = 6.0   # s of untouched Idle before the next card comes
FIRST_CARD = 3.0   # s after start for the first card
SHOW_FOR = 1.5     # s a card stays in front of the camera
NEXT_KEYS = (32, ord("n"))  # Space, N


def card_deck(cards_dir: Path):
    """A :class:`CardDeck` over the card images in ``cards_dir`` (name order)."""
    import numpy as np

    from kiosk.hardware.camera.base import FrameSource
    from kiosk.hardware.camera.replay import list_images, load_gray

    class CardDeck(FrameSource):
        """An empty counter, except for ``SHOW_FOR`` s after :meth:`deal` shows a card."""

        def __init__(self, paths):
            super().__init__(f"demo-deck:{cards_dir}")
            self.paths, self.next_card, self.dealt = paths, 0, 0
            self._until, self._image = 0.0, None
            self._empty = np.full((480, 640), 70, dtype=np.uint8)
            self._guard = threading.Lock()

        def deal(self) -> str:
            """Hold the next card under the camera; returns its file name."""
            with self._guard:
                path = self.paths[self.next_card % len(self.paths)]
                self.next_card += 1
                self.dealt += 1
                self._image, self._until = load_gray(path), time.monotonic() + SHOW_FOR
            return path.name

        def showing(self) -> bool:
            return time.monotonic() < self._until

        def _grab(self, timeout):
            time.sleep(1 / 15)
            with self._guard:
                return self._image if self.showing() else self._empty

    return CardDeck(list_images(cards_dir))


class Dealer:
    """Deals the deck's next card when the kiosk has been idle long enough, or on a key."""

    def __init__(self, deck, controller, *, pause: float = DEAL_PAUSE, first: float = FIRST_CARD):
        self.deck, self.controller, self.pause = deck, controller, pause
        self.idle_since = time.monotonic() - pause + first
        self._event = None

    def start(self, app) -> None:
        from kivy.clock import Clock
        from kivy.core.window import Window

        self.controller.listeners.append(self._changed)
        Window.bind(on_touch_down=self._touched, on_key_down=self._key)
        self._event = Clock.schedule_interval(self._tick, 0.25)

    def stop(self, app=None) -> None:
        from kivy.core.window import Window

        if self._event is not None:
            self._event.cancel()
        Window.unbind(on_touch_down=self._touched, on_key_down=self._key)
        if self._changed in self.controller.listeners:
            self.controller.listeners.remove(self._changed)

    def _changed(self, controller) -> None:
        if controller.screen != "idle":
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = time.monotonic()

    def _touched(self, *_args) -> None:
        if self.idle_since is not None:
            self.idle_since = time.monotonic()

    def _key(self, _window, key, *_args) -> None:
        if key in NEXT_KEYS and not self.deck.showing():
            self.deck.deal()

    def _tick(self, _dt) -> None:
        if (self.idle_since is not None and time.monotonic() - self.idle_since >= self.pause
                and not self.deck.showing()):
            self.idle_since = time.monotonic()
            self.deck.deal()


def attach_deck(parts, cards_dir: Path, hooks: list, stop_hooks: list, **timing) -> Dealer:
    """Replace ``parts``' camera with a card deck dealt by a :class:`Dealer`."""
    from kiosk.hardware.decoder import make_decoder
    from kiosk.hardware.scanner import Scanner

    if parts.scanner is not None:
        parts.scanner.stop()
    deck = card_deck(cards_dir)
    parts.scanner = Scanner(deck, make_decoder("auto"),
                            lambda ev: parts.deliver(ev.payload, "camera"))
    dealer = Dealer(deck, parts.controller, **timing)
    hooks.append(dealer.start)
    stop_hooks.append(dealer.stop)
    return dealer
