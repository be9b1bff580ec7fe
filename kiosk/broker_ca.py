"""The broker's CA, pinned by SHA-256 in the setup QR and fetched from the broker.

A whole CA certificate does not fit a QR a phone screen can show to a 640x480
camera, so the setup QR carries only the SHA-256 of the CA certificate's DER bytes
(:func:`pin_of`). On the device, :func:`fetch` opens a TLS connection to the broker
*without* trusting anything yet and without sending any credential, takes the
certificate chain the broker presents, keeps the certificate whose SHA-256 equals
the pin, and then checks a second, verifying handshake against that certificate
(hostname included). Only a broker holding the pinned CA's signed certificate gets
through, so nobody on the shop's network can slip in a CA of their own.

The broker must send its CA in the handshake: its ``certfile`` holds the server
certificate followed by the CA (``cat server.pem ca.pem > server-chain.pem``;
mosquitto reads certfile as a chain). Otherwise :func:`fetch` says so.
"""

import hashlib
import socket
import ssl
import time

from kiosk.errors import ProvisionError
from kiosk.i18n import Msg


def pin_of(pem_or_der: bytes) -> str:
    """Lowercase hex SHA-256 of the first certificate in a PEM file (or of DER bytes)."""
    if b"-----BEGIN CERTIFICATE-----" in pem_or_der:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        try:
            cert = x509.load_pem_x509_certificate(pem_or_der)
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate ({exc})") from None
        pem_or_der = cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(pem_or_der).hexdigest()


def _chain(tls: ssl.SSLSocket) -> list[bytes]:
    """DER bytes of every certificate the peer sent (unverified)."""
    if hasattr(tls, "get_unverified_chain"):  # Python 3.13+
        return [bytes(c) for c in tls.get_unverified_chain()]
    certs = tls._sslobj.get_unverified_chain() or []  # 3.10-3.12: same call, private
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]


def presented_chain(host: str, port: int, timeout: float = 5.0) -> list[bytes]:
    """The certificates a TLS server presents, read without verifying or logging in."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return _chain(tls)


def _verify(host: str, port: int, pem: bytes, timeout: float) -> None:
    ctx = ssl.create_default_context(cadata=pem.decode("ascii"))
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=host):
        pass


def fetch(host: str, port: int, pin: str, *, wait_s: float = 60.0, timeout: float = 5.0,
          sleep=time.sleep) -> bytes:
    """The PEM of the pinned CA, taken from the broker at ``host:port``.

    Retries unreachable brokers for up to ``wait_s`` (Wi-Fi may still be joining);
    raises :class:`ProvisionError` (``broker_unreachable``, ``ca_not_presented``,
    ``ca_mismatch``) with a sentence for the technician.
    """
    pin, where = pin.lower(), f"{host}:{port}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            chain = presented_chain(host, port, timeout)
            break
        except (OSError, ssl.SSLError) as exc:
            if time.monotonic() + 2 > deadline:
                raise ProvisionError("broker_unreachable", Msg(
                    "cannot reach the broker {broker} to confirm its certificate ({error}); check the "
                    "network and show the QR again", broker=where, error=exc)) from None
            sleep(2)
    der = next((c for c in chain if hashlib.sha256(c).hexdigest() == pin), None)
    if der is None:
        raise ProvisionError("ca_not_presented", Msg(
            "the broker {broker} did not present the CA this QR pins (sha256 {pin}...): its certfile "
            "must hold the server certificate followed by the CA; or provision from the boot partition",
            broker=where, pin=pin[:16]))
    from cryptography import x509  # only when a setup QR is applied
    from cryptography.hazmat.primitives import serialization

    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    try:
        _verify(host, port, pem, timeout)
    except ssl.SSLCertVerificationError as exc:
        raise ProvisionError("ca_mismatch", Msg(
            "the broker {broker}'s certificate is not signed by the pinned CA for this name ({error})",
            broker=where, error=exc.verify_message)) from None
    except (OSError, ssl.SSLError) as exc:
        raise ProvisionError("broker_unreachable", Msg("broker {broker}: {error}", broker=where,
                                                       error=exc)) from None
    return pem
