"""TLS helpers for the integration tests: throwaway certificates (made with the openssl command
line) and HTTP/1.1 client connections over TLS that reuse rawhttp's strict response reader."""
from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

from rawhttp import DEFAULT_TIMEOUT, HttpConn


def make_cert(directory: Path, name: str, cn: str, sans=(), ca: tuple | None = None) -> tuple[Path, Path]:
    """An EC P-256 certificate for `cn` (+ DNS `sans`), self-signed or signed by `ca` = (cert, key).
    Returns (cert_path, key_path)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    san = ",".join(f"DNS:{s}" for s in (sans or [cn]))
    if ca is None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}",
                        "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=critical,CA:TRUE"],
                       check=True, capture_output=True)
    else:
        csr = directory / f"{name}.csr"
        ext = directory / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\n")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}"], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
                        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext)],
                       check=True, capture_output=True)
    return cert, key


def client_context(alpn=("http/1.1",), ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=str(ca))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def peer_cn(sock: ssl.SSLSocket) -> str:
    """The CN of the certificate the server presented (works without verification)."""
    der = sock.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "multiline"],
                         input=der, capture_output=True, check=True).stdout.decode()
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("commonName"):
            return line.split("=", 1)[1].strip()
    return ""


class TlsConn(HttpConn):
    """HttpConn over TLS: `server_name` is sent as SNI (None: no SNI)."""

    def __init__(self, port: int, server_name: str | None = "test.local", ctx: ssl.SSLContext | None = None,
                 session: ssl.SSLSession | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.timeout = timeout
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ctx = ctx or client_context()
        self.sock = self.ctx.wrap_socket(raw, server_hostname=server_name, session=session)
        self.buf = bytearray()
        self.eof = False

    @property
    def alpn(self) -> str | None:
        return self.sock.selected_alpn_protocol()
