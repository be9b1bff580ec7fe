"""How big the setup QR is, and from how far the kiosk camera reads it off a phone.

    python bench/setup_qr.py

Prints the text length, QR version and module count of a realistic setup QR (Wi-Fi,
CA pin, 32-character broker password, long ids) next to the former format that
carried the whole CA, and then which 640x480 frames the kiosk's decoder chain reads:
the QR drawn W pixels wide (the phone 15-25 cm under a 62-66 degree Pi camera puts a
55-60 mm code at about 130-210 px), clean and degraded (blur, perspective, noise,
washed out, all at once).
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np  # noqa: E402
import segno  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from test_setup_qr_enroll import DEGRADE, camera_frame  # noqa: E402

from kiosk import provision  # noqa: E402
from kiosk.core import b64url  # noqa: E402
from kiosk.hardware.decoder import make_decoder  # noqa: E402

FIELDS = {"device": "counter-17", "store": "tashkent-mega-01", "program": "cafe",
          "broker": "mqtts://mqtt.example.com:8883", "credential": "x" * 32,
          "ca_sha256": "a1" * 32, "name": "Counter 17", "wifi_ssid": "Shop Wi-Fi 5G",
          "wifi_psk": "shop-secret-2026", "wifi_country": "UZ"}
WIDTHS = (120, 140, 160, 180, 200, 240)


def old_format_length(ca_pem: str) -> int:
    """Length of the former KIOSK-SETUP:1 text (base64url JSON carrying the CA PEM)."""
    body = {"issued_at": 1796000000, "expires_at": 1796086400, "device": FIELDS["device"],
            "store": FIELDS["store"], "program": FIELDS["program"], "broker": FIELDS["broker"],
            "credential": FIELDS["credential"], "username": FIELDS["device"], "ca": ca_pem,
            "key_id": "hq1"}
    text = "KIOSK-SETUP:1:" + b64url.encode(json.dumps(body, separators=(",", ":")).encode())
    return len(text) + 1 + 86


def main() -> None:
    import tempfile

    from sync.testing import make_pki

    with tempfile.TemporaryDirectory() as tmp:
        ca = make_pki(Path(tmp))["ca"].read_text()
    text = provision.make_setup_qr(FIELDS, Ed25519PrivateKey.generate(), key_id="hq1")
    qr = segno.make(text, error="m")
    n = qr.symbol_size(border=0)[0]
    old = old_format_length(ca)
    old_qr = segno.make("x" * old, error="l")
    print(f"setup QR: {len(text)} characters, version {qr.version}-{qr.error}, {n}x{n} modules, "
          f"{qr.mode} mode (with Wi-Fi and CA pin)")
    print(f"former format with this (EC P-256) CA in it: {old} characters, version "
          f"{old_qr.version}-L, {old_qr.symbol_size(border=0)[0]} modules")
    matrix = np.array([[bool(v) for v in row] for row in qr.matrix_iter(border=4)])
    decoder = make_decoder("auto")
    names = sorted(DEGRADE)
    print(f"\n{'QR px':>6} {'px/module':>9}  " + " ".join(f"{c:>15}" for c in names))
    for width in WIDTHS:
        frame = camera_frame(matrix, width)
        cells = []
        for case in names:
            t0 = time.perf_counter()
            found = decoder.decode(DEGRADE[case](frame))
            ms = (time.perf_counter() - t0) * 1000
            ok = bool(found) and found[0].text == text
            cells.append(f"{'read' if ok else 'MISS':>8} {ms:4.0f} ms")
        print(f"{width:>6} {width / n:>9.2f}  " + " ".join(f"{c:>15}" for c in cells))


if __name__ == "__main__":
    main()
