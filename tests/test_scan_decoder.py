"""QR decoding of generated wallet-card frames and of the real photo corpus."""

from pathlib import Path

import numpy as np
import pytest
import segno
import zxingcpp
from pyzbar import pyzbar

from kiosk.errors import ConfigError
from kiosk.hardware.camera import synthetic as syn
from kiosk.hardware.decoder import (
    ChainDecoder,
    Decoded,
    PyzbarDecoder,
    ZxingDecoder,
    bytes_to_text,
    make_decoder,
)

PAYLOAD = "https://loyalty.example.com/r/ABCD-EFGH-2345"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "qr-photos"


@pytest.fixture(scope="module")
def auto():
    return make_decoder("auto")


@pytest.fixture(scope="module")
def card():
    return syn.wallet_card(PAYLOAD)


@pytest.fixture(scope="module")
def dark():
    return syn.wallet_card(PAYLOAD, dark=True)


HARD_CASES = {
    "plain": lambda c, d: c,
    "perspective": lambda c, d: syn.perspective(c, 0.3),
    "blur": lambda c, d: syn.blur(c, 2.0),
    "noise": lambda c, d: syn.noise(c, 30),
    "low contrast": lambda c, d: syn.low_contrast(c, 110, 150),
    "glare": lambda c, d: syn.glare(c, strength=180, radius=0.18),
    "inverted": lambda c, d: syn.invert(c),
    "dark mode": lambda c, d: d,
    "dark mode, tilted, blurred, noisy": lambda c, d: syn.noise(syn.blur(syn.perspective(d, 0.2), 1.2), 12),
    "dark mode with strong glare": lambda c, d: syn.glare(d, strength=210, radius=0.12),
    "low contrast, tilted, blurred, noisy":
        lambda c, d: syn.noise(syn.blur(syn.perspective(syn.low_contrast(c), 0.2), 1.0), 6),
}


@pytest.mark.parametrize("case", list(HARD_CASES))
def test_pipeline_decoder_reads_distorted_wallet_cards(auto, card, dark, case):
    gray = HARD_CASES[case](card, dark)
    assert [d.text for d in auto.decode(gray)] == [PAYLOAD]


def test_distortions_really_change_the_frame(card):
    # Guards the test above against helpers that silently return the input.
    for make in HARD_CASES.values():
        out = make(card, syn.wallet_card(PAYLOAD, dark=True))
        assert out.shape == card.shape and out.dtype == np.uint8
    assert np.abs(syn.glare(card).astype(int) - card).max() > 100
    assert syn.low_contrast(card).max() <= 150
    assert not np.array_equal(syn.perspective(card), card)


def test_a_segno_code_is_read_by_every_backend():
    qr = segno.make_qr("LOYAL-7788-XY")
    matrix = np.array([[bool(v) for v in row] for row in qr.matrix_iter(border=4)])
    frame = syn.wallet_card("", matrix=matrix)
    for decoder in (ZxingDecoder(), ZxingDecoder("global"), PyzbarDecoder(), make_decoder()):
        assert [d.text for d in decoder.decode(frame)] == ["LOYAL-7788-XY"], decoder


def test_both_backends_read_light_on_dark_codes(dark):
    assert pyzbar.decode(dark, symbols=[pyzbar.ZBarSymbol.QRCODE]) == []  # raw zbar cannot
    assert [d.text for d in PyzbarDecoder().decode(dark)] == [PAYLOAD]
    assert [d.text for d in ZxingDecoder().decode(dark)] == [PAYLOAD]


def _ean13() -> np.ndarray:
    image = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("5901234123457", zxingcpp.BarcodeFormat.EAN13), scale=3)
    return np.asarray(image)


def _code128() -> np.ndarray:
    image = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode("ABCD-EFGH-2345", zxingcpp.BarcodeFormat.Code128), scale=3)
    return np.asarray(image)


def _padded(gray: np.ndarray) -> np.ndarray:
    frame = np.full((gray.shape[0] + 80, gray.shape[1] + 80), 255, np.uint8)
    frame[40:-40, 40:-40] = gray
    return frame


@pytest.mark.parametrize("name", ["ean13", "code128"])
def test_1d_barcodes_are_never_reported(auto, name):
    gray = _padded({"ean13": _ean13, "code128": _code128}[name]())
    assert pyzbar.decode(gray), "the unrestricted reader sees the barcode"  # the frame is readable
    for decoder in (auto, ZxingDecoder(), ZxingDecoder("global"), PyzbarDecoder()):
        assert decoder.decode(gray) == []


def test_noise_and_empty_frames_yield_nothing(auto):
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (480, 640), dtype=np.uint8) for _ in range(3)]
    frames += [syn.blank(seed=s) for s in range(3)] + [np.zeros((480, 640), np.uint8)]
    for gray in frames:
        assert auto.decode(gray) == []


def test_payload_bytes_become_text():
    assert bytes_to_text("Oʻzbek ҚҰ".encode()) == "Oʻzbek ҚҰ"
    assert bytes_to_text(b"caf\xe9") == "café"  # not UTF-8: latin-1 passes through


def test_chain_returns_the_first_backend_that_finds_something(card):
    class Fixed:
        def __init__(self, name, texts):
            self.name, self.texts, self.calls = name, texts, 0

        def decode(self, gray):
            self.calls += 1
            return [Decoded(t, self.name) for t in self.texts]

    first, second, third = Fixed("a", []), Fixed("b", ["X"]), Fixed("c", ["Y"])
    assert ChainDecoder([first, second, third]).decode(card) == [Decoded("X", "b")]
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)


def test_decoder_names():
    plan = make_decoder("auto")
    assert plan.name == "auto" and plan.first.name == "zxing"
    assert [s.name for s in plan.crop_steps] == ["zxing", "zxing-global", "pyzbar", "zxing+contrast",
                                                 "zxing+sharpen", "zxing+half", "zxing+equalize"]
    assert make_decoder("zxing").name == "zxing"
    assert make_decoder("pyzbar").name == "pyzbar"
    assert [d.name for d in make_decoder("pyzbar, zxing").decoders] == ["pyzbar", "zxing"]
    with pytest.raises(ConfigError, match="unknown decoder 'zbar'"):
        make_decoder("zbar")


def test_large_frames_are_halved_for_fast_pyzbar(card):
    fast = make_decoder("pyzbar-fast")
    assert [d.text for d in fast.decode(card)] == [PAYLOAD]
    assert [d.text for d in fast.decode(syn.invert(card))] == [PAYLOAD]


def _corpus():
    items = []
    for path in sorted(CORPUS.rglob("*")):
        if path.suffix in (".png", ".webp", ".jpg") and path.with_suffix(".txt").exists():
            truth = path.with_suffix(".txt").read_bytes().decode("utf-8").replace("\r\n", "\n").strip()
            from kiosk.hardware.camera.replay import load_gray

            items.append((load_gray(path), truth))
    return items


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared photo corpus not present")
def test_auto_reads_at_least_what_either_raw_decoder_reads_on_real_photos(auto):
    items = _corpus()
    assert len(items) >= 90

    def norm(texts):
        return [t.replace("\r\n", "\n").strip() for t in texts]

    def hits(read):
        return {i for i, (gray, truth) in enumerate(items) if truth in norm(read(gray))}

    raw_zbar = hits(lambda g: [r.data.decode("utf-8", "replace")
                               for r in pyzbar.decode(g, symbols=[pyzbar.ZBarSymbol.QRCODE])])
    raw_zxing = hits(lambda g: [b.text for b in zxingcpp.read_barcodes(g, formats=zxingcpp.BarcodeFormat.QRCode)])
    ours = hits(lambda g: [d.text for d in auto.decode(g)])
    assert raw_zbar | raw_zxing <= ours
