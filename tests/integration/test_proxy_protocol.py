"""The client's address behind a balancer: PROXY protocol v1 and v2 on listeners (raw sockets and
a real HAProxy in TCP mode sending v2), refusals (untrusted source, no header, malformed, too
slow), and `real_ip` from trusted X-Forwarded-For hops. The address the header gives is the one
the origin sees in X-Forwarded-For / X-Real-IP, the access log writes and plugins match."""
from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import time
import zlib

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE, json_access_log, wait_access_entry

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def pp_listener(**extra):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0, "proxy_protocol": True,
                "trusted": ["127.0.0.1/32"]}
    listener.update(extra)
    return [listener]


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def v2_header(src="203.0.113.7", dst="192.0.2.1", sport=51234, dport=80, command=1, tlvs=b"", crc=False,
              family=None):
    """A PROXY v2 header; `crc` appends a PP2_TYPE_CRC32C TLV with the right checksum."""
    if family is None:
        family = socket.AF_INET6 if ":" in src else socket.AF_INET
    if family == socket.AF_INET:
        fam, addrs = 0x11, socket.inet_pton(family, src) + socket.inet_pton(family, dst) + struct.pack("!HH", sport, dport)
    else:
        fam, addrs = 0x21, socket.inet_pton(family, src) + socket.inet_pton(family, dst) + struct.pack("!HH", sport, dport)
    body = addrs + tlvs
    if crc:
        body += b"\x03\x00\x04" + b"\x00\x00\x00\x00"
    head = V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body))
    whole = head + body
    if crc:
        whole = whole[:-4] + struct.pack("!I", crc32c(whole))
    return whole


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


GET = b"GET /echo HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"


def exchange(port, data: bytes, source: str = "127.0.0.1", timeout: float = 5.0, pieces=None):
    """Sends `data` (or each of `pieces` with a pause between) from `source` and reads until the
    peer closes: (bytes received, whether the connection was reset)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as s:
        try:
            if pieces:
                for i, p in enumerate(pieces):
                    if i:
                        time.sleep(0.05)
                    s.sendall(p)
            else:
                s.sendall(data)
            out = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    return out, False
                out += chunk
            raise AssertionError(f"connection still open after {timeout}s; got {out[:200]!r}")
        except ConnectionResetError:
            return b"", True


def echoed(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    return json.loads(body)


def header(req: dict, name: str):
    values = [v for n, v in req["headers"] if n.lower() == name.lower()]
    return values[0] if values else None


# ---- accepted headers ----

@pytest.mark.parametrize("prefix,client", [
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\n", "203.0.113.7"),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n", "2001:db8::7"),
    (v2_header(), "203.0.113.7"),
    (v2_header("2001:db8::7", "2001:db8::1"), "2001:db8::7"),
    (v2_header(tlvs=tlv(0x02, b"api.example.test") + tlv(0x05, b"id-1") + tlv(0x20, b"\x01\x00\x00\x00\x00" +
                                                                      tlv(0x21, b"TLSv1.3"))), "203.0.113.7"),
    (v2_header(crc=True), "203.0.113.7"),
], ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6", "v2-tlvs", "v2-crc32c"])
def test_header_sets_the_client_address_the_origin_and_access_log_see(origin, turnpike, tmp_path, prefix, client):
    log = tmp_path / "access.log"
    tp = turnpike(json_access_log(base_config(origin, listeners=pp_listener()), log))
    raw, reset = exchange(tp.port(), prefix + GET)
    req = echoed(raw)
    assert header(req, "x-forwarded-for") == client
    assert header(req, "x-real-ip") == client
    entry = wait_access_entry(log, "/echo", 5)
    assert entry is not None
    expected = f"{client}:51234"
    assert entry["remote_addr"] == expected


def test_header_split_over_segments_is_read_whole(origin, turnpike):
    tp = turnpike(base_config(origin, listeners=pp_listener()))
    line = b"PROXY TCP4 198.51.100.20 192.0.2.1 4000 80\r\n"
    raw, _ = exchange(tp.port(), b"", pieces=[line[:9], line[9:30], line[30:] + GET])
    assert header(echoed(raw), "x-real-ip") == "198.51.100.20"
    v2 = v2_header("198.51.100.21")
    raw, _ = exchange(tp.port(), b"", pieces=[v2[:5], v2[5:14], v2[14:] + GET])
    assert header(echoed(raw), "x-real-ip") == "198.51.100.21"


@pytest.mark.parametrize("prefix", [v2_header(command=0), b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n"],
                         ids=["v2-local", "v1-unknown", "v1-unknown-with-addresses"])
def test_local_and_unknown_keep_the_balancers_own_address(origin, turnpike, prefix):
    tp = turnpike(base_config(origin, listeners=pp_listener()))
    raw, _ = exchange(tp.port(), prefix + GET)
    assert header(echoed(raw), "x-real-ip") == "127.0.0.1"


def test_keepalive_requests_after_the_header_keep_the_client(origin, turnpike):
    tp = turnpike(base_config(origin, listeners=pp_listener()))
    with rawhttp.HttpConn(tp.port()) as conn:
        conn.send(b"PROXY TCP4 203.0.113.9 192.0.2.1 1111 80\r\n")
        for _ in range(3):
            resp = conn.request("GET", "/echo")
            assert resp.status == 200
            assert header(resp.json(), "x-forwarded-for") == "203.0.113.9"


def test_the_proxied_client_is_what_ip_restriction_matches(origin, turnpike):
    route = {"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin",
             "plugins": {"ip-restriction": {"blacklist": ["203.0.113.0/24"]}}}
    tp = turnpike(base_config(origin, listeners=pp_listener(), routes=[route]))
    raw, _ = exchange(tp.port(), b"PROXY TCP4 203.0.113.50 192.0.2.1 1 80\r\n" + GET)
    assert raw.startswith(b"HTTP/1.1 403"), raw[:200]
    raw, _ = exchange(tp.port(), b"PROXY TCP4 198.51.100.50 192.0.2.1 1 80\r\n" + GET)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


# ---- refusals: closed without a response, counted ----

def counted(tp, name):
    tp.stop()
    text = tp.wait_log(r"turnpike stopped:", timeout=10)
    return int(text.split(f" {name}=")[1].split()[0])


@pytest.mark.parametrize("data", [
    GET,                                                             # no header at all
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n" + GET,             # a port missing
    b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n" + GET,               # family mismatch
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 080\r\n" + GET,         # leading zero
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\n" + GET,            # LF without CR
    b"PROXY " + b"A" * 120 + b"\r\n" + GET,                          # v1 line over 107 bytes
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12 + GET,        # version 3
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4 + GET,         # address block too short
    V2_SIGNATURE + b"\x21\x12\x00\x0c" + b"\x00" * 12 + GET,        # UDP
    v2_header(tlvs=b"\x02\x00\x10ab") + GET,                         # TLV longer than the header
    v2_header(crc=True)[:-1] + b"\x00" + GET,                        # CRC32C mismatch
    V2_SIGNATURE + b"\x21\x11\x08\x00" + GET,                        # declared 2048 bytes: over the cap
], ids=["none", "v1-short", "v1-family", "v1-port-zero", "v1-lf", "v1-long", "v2-version", "v2-short-addr",
        "v2-udp", "v2-tlv-overrun", "v2-crc", "v2-too-long"])
def test_connection_without_a_valid_header_is_closed_unanswered(origin, turnpike, data):
    tp = turnpike(base_config(origin, listeners=pp_listener()))
    raw, _ = exchange(tp.port(), data)
    assert raw == b""
    assert origin.snapshot() == []
    assert counted(tp, "proxy_protocol_invalid") == 1


def test_untrusted_source_is_closed_even_with_a_valid_header(origin, turnpike):
    tp = turnpike(base_config(origin, listeners=pp_listener(trusted=["127.0.0.1/32"])))
    raw, _ = exchange(tp.port(), b"PROXY TCP4 203.0.113.7 192.0.2.1 1 80\r\n" + GET, source="127.0.0.2")
    assert raw == b""
    raw, _ = exchange(tp.port(), b"PROXY TCP4 203.0.113.7 192.0.2.1 1 80\r\n" + GET)
    assert raw.startswith(b"HTTP/1.1 200")
    assert counted(tp, "proxy_protocol_untrusted") == 1


def test_header_that_does_not_arrive_in_time_is_closed(origin, turnpike):
    tp = turnpike(base_config(origin, listeners=pp_listener(proxy_protocol_timeout="300ms")))
    started = time.monotonic()
    raw, _ = exchange(tp.port(), b"", pieces=[b"PROXY TCP4 203.0.113.7"], timeout=5)
    assert raw == b""
    assert time.monotonic() - started < 3, "closed by the 300ms timeout, not later"
    raw, _ = exchange(tp.port(), b"", pieces=[b"\r\n\r\n"], timeout=5)  # silence after a v2 prefix
    assert raw == b""
    assert counted(tp, "proxy_protocol_timeouts") == 2


def test_tls_listener_reads_the_header_before_the_handshake(origin, turnpike, tmp_path):
    import ssl
    import tlsutil
    cert, key = tlsutil.make_cert(tmp_path, "srv", "example.test")
    listeners = pp_listener(tls={"certificates": [{"cert": str(cert), "key": str(key)}]})
    tp = turnpike(base_config(origin, listeners=listeners))
    raw_sock = socket.create_connection(("127.0.0.1", tp.port()), timeout=5)
    raw_sock.sendall(v2_header("203.0.113.77"))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    with ctx.wrap_socket(raw_sock, server_hostname="example.test") as s:
        s.sendall(GET)
        out = b""
        for _ in range(100):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert header(echoed(out), "x-real-ip") == "203.0.113.77"


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls-alpn-h2"])
def test_http2_connections_keep_the_headers_client(origin, turnpike, tmp_path, tls):
    # The HTTP/1.1 connection that reads the header hands the address on when the client turns
    # out to speak HTTP/2 (prior knowledge, or ALPN after the handshake).
    import ssl
    import tlsutil
    from h2client import H2Client
    log = tmp_path / "access.log"
    extra = {"http2": {"enabled": True}}
    ctx = None
    if tls:
        cert, key = tlsutil.make_cert(tmp_path, "srv", "example.test")
        extra = {"tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
    tp = turnpike(json_access_log(base_config(origin, listeners=pp_listener(**extra)), log))
    c = H2Client(tp.port(), prefix=v2_header("203.0.113.9", sport=40001), tls=ctx)
    try:
        for _ in range(2):
            r = c.get("/echo")
            assert r.status == 200
            req = json.loads(bytes(r.body))
            assert header(req, "x-forwarded-for") == "203.0.113.9"
            assert header(req, "x-real-ip") == "203.0.113.9"
    finally:
        c.close()
    entry = wait_access_entry(log, "/echo", 5)
    assert entry is not None and entry["remote_addr"] == "203.0.113.9:40001"


# ---- HAProxy in TCP mode in front, sending PROXY v2 ----

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_tcp_mode_sending_proxy_v2_passes_the_real_client(origin, turnpike, tmp_path):
    tp = turnpike(base_config(origin, listeners=pp_listener(trusted=["127.0.0.1"])))
    front = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend fe
    bind 127.0.0.1:{front}
    default_backend be
backend be
    server tp 127.0.0.1:{tp.port()} send-proxy-v2 source 127.0.0.1
""")
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=20)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and rawhttp.connect_refused(front, timeout=0.5):
            time.sleep(0.05)
        # The client connects to HAProxy from 127.0.0.2; Turnpike sees HAProxy (127.0.0.1).
        for i in range(3):
            raw, _ = exchange(front, GET, source="127.0.0.2")
            req = echoed(raw)
            assert header(req, "x-real-ip") == "127.0.0.2"
            assert header(req, "x-forwarded-for") == "127.0.0.2"
        # The same client straight to Turnpike is not a trusted balancer: closed.
        raw, _ = exchange(tp.port(), b"PROXY TCP4 203.0.113.7 192.0.2.1 1 80\r\n" + GET, source="127.0.0.2")
        assert raw == b""
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---- real_ip from X-Forwarded-For ----

def real_ip_listener(**extra):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0, "real_ip": True,
                "trusted": ["127.0.0.1", "10.0.0.0/8"]}
    listener.update(extra)
    return [listener]


def get_from(port, source, headers):
    lines = b"".join(f"{n}: {v}\r\n".encode() for n, v in headers)
    raw, _ = exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + lines + b"\r\n", source=source)
    return echoed(raw)


def test_real_ip_walks_past_trusted_hops(origin, turnpike):
    tp = turnpike(base_config(origin, listeners=real_ip_listener()))
    req = get_from(tp.port(), "127.0.0.1", [("X-Forwarded-For", "192.0.2.66, 198.51.100.9, 10.1.1.1")])
    assert header(req, "x-real-ip") == "198.51.100.9"
    # The chain goes on with the hop that connected, not the client again.
    assert header(req, "x-forwarded-for") == "192.0.2.66, 198.51.100.9, 10.1.1.1, 127.0.0.1"
    # Several field lines: the last one holds the latest hops.
    req = get_from(tp.port(), "127.0.0.1", [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "10.0.0.2")])
    assert header(req, "x-real-ip") == "192.0.2.1"
    # Every hop trusted: the leftmost.
    req = get_from(tp.port(), "127.0.0.1", [("X-Forwarded-For", "10.0.0.3, 10.0.0.2")])
    assert header(req, "x-real-ip") == "10.0.0.3"
    # Garbage stops the walk at the hop to its right.
    req = get_from(tp.port(), "127.0.0.1", [("X-Forwarded-For", "198.51.100.1, not-an-ip, 10.0.0.2")])
    assert header(req, "x-real-ip") == "10.0.0.2"


def test_real_ip_ignores_forwarded_for_from_an_untrusted_peer(origin, turnpike):
    tp = turnpike(base_config(origin, listeners=real_ip_listener()))
    req = get_from(tp.port(), "127.0.0.2", [("X-Forwarded-For", "198.51.100.9")])
    assert header(req, "x-real-ip") == "127.0.0.2"
    assert header(req, "x-forwarded-for") == "198.51.100.9, 127.0.0.2"


def test_real_ip_is_what_ip_restriction_matches(origin, turnpike):
    route = {"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin",
             "plugins": {"ip-restriction": {"whitelist": ["198.51.100.0/24"]}}}
    tp = turnpike(base_config(origin, listeners=real_ip_listener(), routes=[route]))
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/a", [("X-Forwarded-For", "198.51.100.3")]).status == 200
        assert conn.request("GET", "/a", [("X-Forwarded-For", "192.0.2.3")]).status == 403


# ---- config errors ----

@pytest.mark.parametrize("listener,message", [
    ({"proxy_protocol": True}, 'listener "public": proxy_protocol needs "trusted"'),
    ({"real_ip": True}, 'listener "public": real_ip needs "trusted"'),
    ({"proxy_protocol": True, "trusted": ["10.0.0.0/33"]}, 'listener "public": trusted: "10.0.0.0/33" is not an IP address or network'),
    ({"proxy_protocol": True, "trusted": ["example.com"]}, 'listener "public": trusted: "example.com" is not an IP address or network'),
    ({"proxy_protocol": "yes please", "trusted": ["10.0.0.0/8"]}, 'listener "public": proxy_protocol'),
    ({"proxy_protocol": True, "trusted": ["10.0.0.0/8"], "proxy_protocol_timeout": "0s"}, 'listener "public": proxy_protocol_timeout'),
])
def test_config_errors(turnpike_bin, tmp_path, listener, message):
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 0, **listener}]
    path = tmp_path / "t.yaml"
    path.write_text(dump_yaml(base_config(listeners=listeners, routes=[])))
    result = check_config(turnpike_bin, path)
    assert result.returncode == 1, result.stdout
    errors = [m.group("message") for m in ERROR_LINE.finditer(result.stderr)]
    assert any(e.startswith(message) for e in errors), result.stderr
