"""TLS termination and https upstreams: SNI, ALPN, resumption, certificate reload, bad input."""
from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

import rawhttp
from harness import base_config, check_config, json_access_log, upstream, respond_route, wait_access_entry, ERROR_LINE
from tlsutil import TlsConn, client_context, make_cert, peer_cn


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    return {
        "default": make_cert(d, "default", "default.test"),
        "api": make_cert(d, "api", "api.example.test"),
        "wild": make_cert(d, "wild", "wild.example.test", sans=["*.example.test"]),
        "other": make_cert(d, "other", "other.test"),
        "dir": d,
    }


def tls_listener(certs_list, name="public", **tls) -> dict:
    t = {"certificates": [{"cert": str(c), "key": str(k)} for c, k in certs_list]}
    t.update(tls)
    return {"name": name, "address": "127.0.0.1", "port": 0, "tls": t}


def summary_fields(tp) -> dict:
    line = [l for l in tp.logs().splitlines() if "turnpike stopped:" in l][-1]
    return dict(item.split("=", 1) for item in line.split("turnpike stopped:")[1].split())


# ---- SNI, ALPN, the request itself -----------------------------------------------------------

def test_sni_picks_the_certificate_exact_then_wildcard_then_default(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"], certs["api"], certs["wild"]])]))
    port = tp.port()
    expect = {"api.example.test": "api.example.test",    # exact name beats the wildcard
              "x.example.test": "wild.example.test",     # *.example.test
              "a.b.example.test": "default.test",        # a wildcard covers one label only
              "unknown.test": "default.test",            # no match: the first certificate
              None: "default.test"}                      # no SNI at all
    for sni, cn in expect.items():
        with TlsConn(port, server_name=sni) as c:
            assert peer_cn(c.sock) == cn, sni
            resp = c.request("GET", "/echo")
            assert resp.status == 200


def test_https_request_is_proxied_with_forwarded_proto_https(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]])]))
    with TlsConn(tp.port()) as c:
        for i in range(3):  # keepalive over TLS
            resp = c.request("POST", f"/echo?i={i}", body=b"x" * 100_000)
            assert resp.status == 200
            seen = resp.json()
            assert seen["body_len"] == 100_000
            assert ("X-Forwarded-Proto", "https") in [tuple(h) for h in seen["headers"]]
    assert origin.requests[-1].header("x-forwarded-proto") == "https"


def test_large_response_over_tls(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]])]))
    from origin import pattern_sha256
    n = 8 * 1024 * 1024 + 123
    with TlsConn(tp.port()) as c:
        resp = c.request("GET", f"/bytes/{n}")
        assert resp.status == 200 and resp.body_len == n and resp.body_sha256 == pattern_sha256(n)
        resp = c.request("GET", f"/chunked/{n}")
        assert resp.status == 200 and resp.body_len == n and resp.body_sha256 == pattern_sha256(n)


def test_upload_and_pipelined_requests_over_tls_keep_flowing(turnpike, origin, certs):
    """The readiness bookkeeping under OpenSSL: reads that fill a buffer (a large upload, a
    pipelined burst larger than one TLS read), reads that empty the socket, and idle gaps
    between requests must all lead to the next bytes being noticed."""
    import hashlib
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]])]))
    body = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB
    with TlsConn(tp.port()) as c:
        resp = c.request("POST", "/echo/upload", body=body, timeout=30)
        assert resp.status == 200
        assert resp.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        # 60 pipelined requests with bodies, sent in one burst (well over 16 KiB of records).
        burst = b"".join(rawhttp.build_request("POST", f"/echo/p?n={i}", body=b"b" * 1000) for i in range(60))
        c.send(burst)
        got = [c.read_final_response() for _ in range(60)]
        assert [r.json()["query"] for r in got] == [f"n={i}" for i in range(60)]
        for gap in (0.0, 0.05, 0.3):  # idle between requests, then the next one
            time.sleep(gap)
            assert c.request("GET", f"/echo/after?gap={gap}").status == 200


def test_https_client_closing_while_the_upstream_works_is_logged_499(turnpike, origin, certs, tmp_path):
    """Under TLS the check for a departed client goes through OpenSSL (SSL_peek): a client that
    closes (with or without close_notify) while the origin works is noticed and logged 499."""
    log = tmp_path / "access.log"
    tp = turnpike(json_access_log(base_config(origin, listeners=[tls_listener([certs["default"]])]), log))
    for i, notify in enumerate((False, True)):
        target = f"/sleep/4000?i={i}"
        c = TlsConn(tp.port())
        c.send_request("GET", target)
        origin.wait_for(lambda reqs: any(r.target == target for r in reqs), timeout=5)
        gone = time.monotonic()
        if notify:
            c.sock = c.sock.unwrap()  # sends close_notify
        c.close()
        entry = wait_access_entry(log, target, timeout=3.0 - (time.monotonic() - gone))
        assert entry is not None, f"close_notify={notify}: not logged within 3 s"
        assert entry["status"] == 499 and entry["error"] == "client_reset", entry


def test_alpn_negotiates_h2_and_http11_in_server_preference(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]])]))
    port = tp.port()
    with TlsConn(port, ctx=client_context(alpn=("http/1.1",))) as c:
        assert c.alpn == "http/1.1"
        assert c.request("GET", "/").status == 200
    with TlsConn(port, ctx=client_context(alpn=None)) as c:  # no ALPN: HTTP/1.1
        assert c.alpn is None
        assert c.request("GET", "/").status == 200
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    with client_context(alpn=("http/1.1", "h2")).wrap_socket(s, server_hostname="test.local") as t:
        assert t.selected_alpn_protocol() == "h2"  # ours first: h2 preferred


def test_alpn_without_h2_when_http2_is_disabled(turnpike, origin, certs):
    listener = tls_listener([certs["default"]])
    listener["http2"] = {"enabled": False}
    tp = turnpike(base_config(origin, listeners=[listener]))
    with TlsConn(tp.port(), ctx=client_context(alpn=("h2", "http/1.1"))) as c:
        assert c.alpn == "http/1.1"
        assert c.request("GET", "/").status == 200


def test_tls13_only_refuses_tls12(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]], min_version="TLSv1.3")]))
    ctx = client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        TlsConn(tp.port(), ctx=ctx)
    with TlsConn(tp.port()) as c:
        assert c.sock.version() == "TLSv1.3"
        assert c.request("GET", "/").status == 200


# ---- resumption ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_sessions_resume_across_connections_and_workers(turnpike, origin, certs, version):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]])], workers=2))
    ctx = client_context()
    ctx.maximum_version = getattr(ssl.TLSVersion, version.replace(".", "_").replace("TLSv", "TLSv"))
    with TlsConn(tp.port(), ctx=ctx) as first:
        assert first.request("GET", "/").status == 200  # TLS 1.3 tickets arrive after the handshake
        session = first.sock.session
        assert not first.sock.session_reused
    resumed = 0
    for _ in range(8):  # with 2 workers, some of these land on the other worker
        with TlsConn(tp.port(), ctx=ctx, session=session) as c:
            assert c.request("GET", "/").status == 200
            resumed += c.sock.session_reused
    assert resumed == 8
    tp.stop()
    fields = summary_fields(tp)
    assert int(fields["tls_resumed"]) == 8 and int(fields["tls_handshakes"]) == 9


def test_tickets_disabled_means_full_handshakes(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]], session_tickets=False)]))
    ctx = client_context()
    with TlsConn(tp.port(), ctx=ctx) as first:
        first.request("GET", "/")
        session = first.sock.session
    with TlsConn(tp.port(), ctx=ctx, session=session) as c:
        assert c.request("GET", "/").status == 200
        assert not c.sock.session_reused


# ---- reload ----------------------------------------------------------------------------------

def test_certificate_reload_takes_effect_without_dropping_open_connections(turnpike, origin, certs, tmp_path):
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(certs["default"][0].read_bytes())
    live_key.write_bytes(certs["default"][1].read_bytes())
    cfg = base_config(origin, listeners=[tls_listener([(live_cert, live_key)])])
    tp = turnpike(cfg)
    port = tp.port()
    old = TlsConn(port)
    assert peer_cn(old.sock) == "default.test"
    assert old.request("GET", "/").status == 200
    # Replace the files, reload: new handshakes get the new certificate.
    live_cert.write_bytes(certs["other"][0].read_bytes())
    live_key.write_bytes(certs["other"][1].read_bytes())
    tp.reload(cfg)
    with TlsConn(port) as new:
        assert peer_cn(new.sock) == "other.test"
        assert new.request("GET", "/").status == 200
    # The connection made before the reload still works, on its old certificate.
    for _ in range(3):
        assert old.request("GET", "/").status == 200
    assert peer_cn(old.sock) == "default.test"
    old.close()


def test_mismatched_key_is_a_config_error_with_file_and_line(turnpike_bin, certs, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"""listeners:
  - name: public
    address: 127.0.0.1
    port: 0
    tls:
      certificates:
        - cert: {certs['default'][0]}
          key: {certs['other'][1]}
        - cert: {tmp_path}/missing.pem
          key: {certs['other'][1]}
""")
    r = check_config(turnpike_bin, cfg)
    assert r.returncode != 0
    errors = [m.groupdict() for m in ERROR_LINE.finditer(r.stderr)]
    by_line = {int(e["line"]): e["message"] for e in errors if e["file"].endswith("bad.yaml")}
    assert "does not match certificate" in by_line[7], r.stderr
    assert "cannot read certificate" in by_line[9] and "No such file" in by_line[9], r.stderr


def test_bad_certificate_on_reload_is_refused_and_old_keeps_serving(turnpike, origin, certs, tmp_path):
    cfg = base_config(origin, listeners=[tls_listener([certs["default"]])])
    tp = turnpike(cfg)
    bad = base_config(origin, listeners=[tls_listener([(certs["default"][0], certs["api"][1])])])
    tp.reload(bad, expect_ok=False)
    tp.wait_log("does not match certificate")
    with TlsConn(tp.port()) as c:
        assert peer_cn(c.sock) == "default.test"
        assert c.request("GET", "/").status == 200


# ---- bad clients -----------------------------------------------------------------------------

def test_handshake_timeout_and_garbage_are_counted_and_harmless(turnpike, origin, certs):
    tp = turnpike(base_config(origin, listeners=[tls_listener([certs["default"]], handshake_timeout="500ms")]))
    port = tp.port()
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    garbage = socket.create_connection(("127.0.0.1", port), timeout=5)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to a TLS port
    plain_answer = garbage.recv(1024)  # the server fails the handshake and closes
    assert not plain_answer.startswith(b"HTTP/1.1 200")
    silent.settimeout(5)
    t0 = time.monotonic()
    assert silent.recv(1) == b""  # closed by the handshake timeout
    assert time.monotonic() - t0 < 3
    with TlsConn(port) as c:  # others are unaffected
        assert c.request("GET", "/").status == 200
    tp.stop()
    fields = summary_fields(tp)
    assert int(fields["tls_handshake_timeouts"]) == 1
    assert int(fields["tls_handshake_failures"]) >= 1


def test_cleartext_listener_beside_tls_listener(turnpike, origin, certs):
    listeners = [tls_listener([certs["default"]]), {"name": "plain", "address": "127.0.0.1", "port": 0}]
    tp = turnpike(base_config(origin, listeners=listeners))
    assert rawhttp.request(tp.port("plain"), "GET", "/").status == 200
    with TlsConn(tp.port()) as c:
        assert c.request("GET", "/").status == 200


# ---- https upstreams -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream_pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_cert(d, "ca", "Turnpike Test CA")
    server = make_cert(d, "server", "origin.test", ca=ca)
    client = make_cert(d, "client", "gateway.test", ca=ca)
    return {"ca": ca, "server": server, "client": client}


class TlsOrigin:
    """An https origin (Python's http.server over TLS) that reports, per request, whether the TLS
    session was resumed and the client certificate's CN."""

    def __init__(self, pki, require_client_cert=False):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki["server"][0]), str(pki["server"][1]))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(pki["ca"][0]))
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                cert = self.connection.getpeercert()
                cn = dict(x[0] for x in cert["subject"])["commonName"] if cert else ""
                seen.append({"resumed": self.connection.session_reused, "client_cn": cn})
                body = b"tls origin\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = super().get_request()
                return ctx.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request, client_address):
                pass  # failed handshakes (the verification tests) are expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def https_upstream(port, tls, **extra):
    return upstream("tls-origin", [f"127.0.0.1:{port}"], tls=tls, **extra)


def route_to(name):
    return [{"name": "all", "match": {"paths": ["/*"]}, "upstream": name}]


def test_https_upstream_verified_with_sni_and_sessions_reused(turnpike, upstream_pki):
    o = TlsOrigin(upstream_pki)
    try:
        up = https_upstream(o.port, {"ca_file": str(upstream_pki["ca"][0]), "sni": "origin.test"},
                            keepalive={"max_requests": 1})  # a new upstream connection per request
        tp = turnpike(base_config(upstreams=[up], routes=route_to("tls-origin"), workers=1))
        for _ in range(4):
            resp = rawhttp.request(tp.port(), "GET", "/")
            assert resp.status == 200 and resp.body == b"tls origin\n"
        assert len(o.seen) == 4
        assert not o.seen[0]["resumed"]
        assert all(s["resumed"] for s in o.seen[1:]), o.seen
    finally:
        o.stop()


def test_https_upstream_with_wrong_name_fails_verification_with_502(turnpike, upstream_pki):
    o = TlsOrigin(upstream_pki)
    try:
        up = https_upstream(o.port, {"ca_file": str(upstream_pki["ca"][0]), "sni": "not-the-origin.test"}, retries=0)
        tp = turnpike(base_config(upstreams=[up], routes=route_to("tls-origin")))
        resp = rawhttp.request(tp.port(), "GET", "/")
        assert resp.status == 502
        assert resp.json()["error"] == "upstream_connect_failed"
        assert o.seen == []
        tp.stop()
        assert int(summary_fields(tp)["upstream_tls_failures"]) == 1
    finally:
        o.stop()


def test_https_upstream_without_the_ca_fails_unless_verify_is_off(turnpike, upstream_pki):
    o = TlsOrigin(upstream_pki)
    try:
        up_default = https_upstream(o.port, {"sni": "origin.test"}, retries=0)  # system bundle: our CA is unknown
        tp = turnpike(base_config(upstreams=[up_default], routes=route_to("tls-origin")))
        assert rawhttp.request(tp.port(), "GET", "/").status == 502
        up_noverify = https_upstream(o.port, {"verify": False}, retries=0)
        tp.reload(base_config(upstreams=[up_noverify], routes=route_to("tls-origin")))
        assert rawhttp.request(tp.port(), "GET", "/").status == 200
    finally:
        o.stop()


def test_https_upstream_with_client_certificate(turnpike, upstream_pki):
    o = TlsOrigin(upstream_pki, require_client_cert=True)
    try:
        tls_no_cert = {"ca_file": str(upstream_pki["ca"][0]), "sni": "origin.test"}
        tp = turnpike(base_config(upstreams=[https_upstream(o.port, tls_no_cert, retries=0)],
                                  routes=route_to("tls-origin")))
        assert rawhttp.request(tp.port(), "GET", "/").status == 502  # the origin wants a certificate
        tls_cert = dict(tls_no_cert, cert=str(upstream_pki["client"][0]), key=str(upstream_pki["client"][1]))
        tp.reload(base_config(upstreams=[https_upstream(o.port, tls_cert, retries=0)], routes=route_to("tls-origin")))
        resp = rawhttp.request(tp.port(), "GET", "/")
        assert resp.status == 200
        assert o.seen[-1]["client_cn"] == "gateway.test"
    finally:
        o.stop()


def test_tls_listener_as_https_upstream_of_another_listener(turnpike, certs):
    # Turnpike in front of Turnpike: the second listener terminates TLS with a static route.
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 0},
                 tls_listener([certs["api"]], name="secure")]
    cfg = base_config(listeners=listeners, upstreams=[], routes=[])
    tp = turnpike(cfg)
    secure_port = tp.port("secure")
    cfg["upstreams"] = [upstream("secure", [f"127.0.0.1:{secure_port}"],
                                 tls={"ca_file": str(certs["api"][0]), "sni": "api.example.test"})]
    cfg["routes"] = [respond_route("secure-origin", ["/*"], "from the TLS listener\n", listeners=["secure"]),
                     {"name": "proxy", "listeners": ["public"], "match": {"paths": ["/*"]}, "upstream": "secure"}]
    tp.reload(cfg)
    resp = rawhttp.request(tp.port(), "GET", "/x")
    assert resp.status == 200 and resp.body == b"from the TLS listener\n"


def test_plugin_http_client_speaks_https(turnpike, certs, origin):
    # turnpike.http.request to an https URL: the gateway's own TLS listener as the side service.
    plugins_dir = Path(__file__).resolve().parent / "plugins"
    listeners = [{"name": "public", "address": "127.0.0.1", "port": 0},
                 tls_listener([certs["api"]], name="secure")]
    side = {"name": "side", "listeners": ["secure"], "match": {"paths": ["/*"]}, "upstream": "origin"}
    cfg = base_config(origin, listeners=listeners, routes=[side], plugin_paths=[str(plugins_dir)])
    tp = turnpike(cfg)
    url = f"https://127.0.0.1:{tp.port('secure')}/echo/side"

    def fetch_route(name, **conf):
        return {"name": name, "listeners": ["public"], "match": {"paths": [f"/{name}/*"]}, "upstream": "origin",
                "plugins": {"fetcher": {"url": url, **conf}}}
    cfg["routes"] = [side, fetch_route("unverified", ssl_verify=False), fetch_route("verified")]
    tp.reload(cfg)
    for attempt in range(3):  # the second and third reuse the kept-alive TLS connection
        resp = rawhttp.request(tp.port(), "GET", "/unverified/x")
        assert resp.status == 200, resp
        assert resp.header("x-fetch-status") == "200", resp.header("x-fetch-error")
        assert resp.json()["path"] == "/echo/side"
    # Verified against the system's CA store, which does not hold the test's self-signed cert.
    resp = rawhttp.request(tp.port(), "GET", "/verified/x")
    assert resp.header("x-fetch-status") == "0"
    assert "TLS handshake failed" in resp.header("x-fetch-error")
    assert "certificate" in resp.header("x-fetch-error")
