"""The ESC/POS bytes python-escpos produced: text where a code page can show it,
raster images where it cannot, and a QR code a real decoder reads back.

The oracle takes the ``GS v 0`` images out of the bytes (header 1D 76 30 m xL xH yL
yH, then the packed bits), turns them into bitmaps and decodes them with zxing-cpp.
"""

import socket
from datetime import UTC, datetime

import numpy as np
import pytest
import zxingcpp
from escpos.capabilities import get_profile

from kiosk.core import receipt
from kiosk.core.receipt import labels
from kiosk.hardware.printer import escpos_stream, open_printer, status
from kiosk.hardware.printer.fake_server import (
    COVER_OPEN,
    HEALTHY,
    OFFLINE,
    PAPER_OUT,
    FakeNetworkPrinter,
)

RID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
TITLES = {"en": "Free coffee", "uz": "Bepul qahva", "kk": "Тегін кофе", "ru": "Бесплатный кофе"}


def build(lang: str, **kw) -> receipt.Receipt:
    data = receipt.ReceiptData(
        redemption_id=RID, business_name="Cafe Samarqand", reward_title=TITLES,
        at=datetime(2026, 11, 22, 14, 5, tzinfo=UTC), clock="synced", store="main-store",
        device="counter-1", masked_code="0001", reward={"type": "percent", "value": 10}, **kw)
    return receipt.build(data, lang)


def codecs(profile: str) -> dict[int, str]:
    """ESC t slot -> Python codec for the profile's code pages (the oracle's own map)."""
    names = {"CP437": "cp437", "CP850": "cp850", "CP866": "cp866", "CP855": "cp855",
             "CP1251": "cp1251", "CP1252": "cp1252", "CP858": "cp858", "CP852": "cp852"}
    return {int(slot): names[n] for n, slot in get_profile(profile).get_code_pages().items() if n in names}


def printed_text(stream, profile) -> str:
    return "".join(t.decode(codecs(profile)) for t in stream.texts)


def qr_texts(stream) -> list[str]:
    found = []
    for img in stream.rasters:
        found += [r.text for r in zxingcpp.read_barcodes(img.to_gray(), formats=zxingcpp.BarcodeFormat.QRCode)]
    return found


def job(lang: str, profile="TM-T20II", paper=80, text="auto", **kw) -> tuple[bytes, escpos_stream.Stream]:
    printer = open_printer("dummy://", paper_mm=paper, profile=profile, text=text)
    printer.print_receipt(build(lang, **kw))
    [data] = printer.jobs
    return data, escpos_stream.parse(data)


def test_english_receipt_is_text_with_a_qr_image_and_a_cut():
    data, s = job("en")
    text = printed_text(s, "TM-T20II")
    for expected in ("Cafe Samarqand", "Reward redeemed", "Free coffee", "****0001",
                     "network time", "main-store", "counter-1", RID, "Thank you!"):
        assert expected in text
    assert "Value:" in text and text.count("\n") > 10
    assert len(s.rasters) == 1  # only the QR code is an image
    assert qr_texts(s) == [RID]
    assert data.startswith(b"\x1b@") and s.cuts == 1


def test_kazakh_receipt_oracle_qr_reads_back_and_kazakh_is_rasterised_not_question_marks():
    data, s = job("kk")
    assert qr_texts(s) == [RID]
    text = printed_text(s, "TM-T20II")
    assert "?" not in text  # nothing was replaced by python-escpos' fallback symbol
    for key in ("title", "value", "time", "clock", "store", "device", "redemption", "footer"):
        assert labels("kk")[key] not in text, key  # those carry Kazakh letters: images
    assert "Код:" in text  # plain Cyrillic still goes as text (CP866)
    assert len(s.rasters) >= 4
    inked = [r for r in s.rasters if r.bits.any()]
    assert len(inked) == len(s.rasters)  # every image has something drawn on it


def test_uzbek_turned_comma_line_is_an_image_and_the_rest_text():
    _, s = job("uz")
    text = printed_text(s, "TM-T20II")
    assert "?" not in text and "main-store" not in text  # the "Doʻkon: main-store" row is raster
    assert "Mukofot berildi" in text and "Kod:" in text and "Qurilma:" in text
    assert qr_texts(s) == [RID]


def test_russian_receipt_is_all_text_in_a_cyrillic_code_page():
    data, s = job("ru", reprint=True)
    text = printed_text(s, "TM-T20II")
    for expected in ("Награда выдана", "Бесплатный кофе", "*** КОПИЯ ***", "Устройство:", "Спасибо!"):
        assert expected in text
    assert b"\x1bt\x11" in data  # ESC t 17 = CP866 on this profile
    assert len(s.rasters) == 1 and qr_texts(s) == [RID]


def test_raster_mode_prints_every_line_as_an_image():
    _, s = job("en", text="raster")
    text = printed_text(s, "TM-T20II")
    assert text.strip("-\n ") == ""  # only the rules remain as text
    assert len(s.rasters) >= 3 and qr_texts(s) == [RID]


def test_58mm_paper_narrows_text_and_images():
    _, s = job("kk", profile="POS-5890", paper=58)
    assert {r.width for r in s.rasters} == {384}
    lines = printed_text(s, "POS-5890").splitlines()
    assert "-" * 32 in lines and max(map(len, lines)) <= 384 // 9  # font A 32, font B 42
    assert qr_texts(s) == [RID]
    _, wide = job("en")
    assert "-" * 48 in printed_text(wide, "TM-T20II").splitlines()


def test_a_profile_without_a_cutter_gets_no_cut_command():
    _, s = job("en", profile="ZJ-5870", paper=58)
    assert s.cuts == 0 and qr_texts(s) == [RID]


def test_logo_is_printed_as_an_image_and_a_broken_logo_is_skipped(tmp_path):
    from PIL import Image, ImageDraw

    logo = tmp_path / "logo.png"
    img = Image.new("RGBA", (300, 120), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((20, 20, 280, 100), fill=(0, 0, 0, 255))
    img.save(logo)
    _, s = job("en", logo=str(logo))
    first = s.rasters[0]
    assert first.bits.any() and len(s.rasters) == 2
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    _, s = job("en", logo=str(bad))
    assert len(s.rasters) == 1 and qr_texts(s) == [RID]


def test_tcp_printer_receives_the_same_bytes_after_status_queries():
    with FakeNetworkPrinter(HEALTHY) as fake:
        printer = open_printer(fake.url, profile="TM-T20II", timeout_s=2)
        r = build("kk")
        printer.print_receipt(r)
        [got] = fake.wait_for_jobs(1)
    assert got == printer.render(r)
    assert qr_texts(escpos_stream.parse(got)) == [RID]
    assert printer.status  # the printer object stays usable for the next job


@pytest.mark.parametrize("table,state", [
    (HEALTHY, "ok"), (PAPER_OUT, "paper_out"), (COVER_OPEN, "cover_open"), (OFFLINE, "offline"),
    ({1: 0x12, 2: 0x12, 4: 0x1E}, "paper_low"),
])
def test_status_bytes_from_a_network_printer(table, state):
    with FakeNetworkPrinter(table) as fake:
        got = open_printer(fake.url, timeout_s=2).status()
    assert got.state == state, got


def test_no_answer_or_garbage_is_unknown_never_paper_out():
    # python-escpos paper_status() says 0 ("no paper") for answers it cannot parse.
    assert status.interpret(lambda n: None).state == "unknown"
    assert status.interpret(lambda n: 0x00).state == "unknown"
    assert status.interpret(lambda n: 0xFF).state == "unknown"
    with FakeNetworkPrinter({}) as fake:  # a printer that never answers status
        printer = open_printer(fake.url, timeout_s=2)
        assert printer.status().state == "unknown"
        printer.print_receipt(build("en"))  # and it still prints
        assert len(fake.wait_for_jobs(1)) == 1


def test_stream_parser_reads_gs_v_0_exactly():
    bits = np.zeros((3, 16), np.uint8)
    bits[1, 3] = bits[2, 15] = 1
    packed = np.packbits(bits, axis=1).tobytes()
    s = escpos_stream.parse(b"\x1b@hi\x1dv0\x00\x02\x00\x03\x00" + packed + b"\x1dV\x00")
    assert s.texts[0].data == b"hi" and s.cuts == 1
    assert (s.rasters[0].bits == bits).all()
    with pytest.raises(ValueError, match="unknown command"):
        escpos_stream.parse(b"\x1b\x99")


def test_bad_urls_and_settings_are_explained():
    for url, words in [("usb://zz", "usb://VID:PID"), ("serial://", "serial:///dev/ttyUSB0"),
                       ("tcp://", "tcp://HOST:PORT"), ("lpt://x", "unknown printer URL")]:
        with pytest.raises(ValueError, match=words.replace("/", ".")):
            open_printer(url)
    with pytest.raises(ValueError, match="58 or 80"):
        open_printer("dummy://", paper_mm=70)
    with pytest.raises(ValueError, match="unknown python-escpos profile"):
        open_printer("dummy://", profile="TM-nope")
    assert not open_printer("none").available


def test_refused_port_is_reported_quickly():
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    st = open_printer(f"tcp://127.0.0.1:{port}", timeout_s=1).status()
    assert st.state == "refused" and f"127.0.0.1:{port}" in st.message


def test_device_file_status_does_not_open_the_file(tmp_path):
    lp = tmp_path / "lp0"
    lp.write_bytes(b"earlier job")
    assert open_printer(f"file://{lp}").status().state == "unknown"
    assert lp.read_bytes() == b"earlier job"  # not truncated by a status check
    assert open_printer(f"file://{tmp_path}/none").status().state == "unplugged"
    printer = open_printer(f"file://{lp}")
    printer.print_receipt(build("ru"))
    assert escpos_stream.parse(lp.read_bytes()).cuts == 1
