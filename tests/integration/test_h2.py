"""HTTP/2 client side (h2c with prior knowledge): requests from curl, nghttp, h2load and the h2
library reach the HTTP/1.1 origin through the same pipeline as HTTP/1.1 requests; bodies both
ways with flow-control backpressure; many streams per connection; resets; GOAWAY on drain."""
import hashlib
import json
import signal
import subprocess
import threading
import time

import pytest

import h2.settings

import h2client
from h2client import H2Client
from harness import base_config, json_access_log, wait_access_entry
from origin import pattern_sha256

MiB = 1024 * 1024


def h2_config(origin, http2=None, **kw):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0}
    if http2 is not None:
        listener["http2"] = http2
    return base_config(origin, listeners=[listener], **kw)


@pytest.fixture
def tp(origin, turnpike):
    return turnpike(h2_config(origin))


def run(args, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_curl_prior_knowledge_get_reaches_origin_as_http11(tp, origin):
    r = run(["curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_version} %{http_code}",
             f"http://127.0.0.1:{tp.port()}/echo/a%41b?x=1"])
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.rpartition("\n")
    assert tail == "2 200"
    echoed = json.loads(body)
    assert echoed["path"] == "/echo/aAb" and echoed["query"] == "x=1"
    assert echoed["version"] == "HTTP/1.1"
    headers = {n.lower(): v for n, v in echoed["headers"]}
    assert headers["host"] == f"127.0.0.1:{tp.port()}"
    assert headers["x-forwarded-proto"] == "http"


def test_http11_still_served_on_an_http2_listener(tp):
    r = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", f"http://127.0.0.1:{tp.port()}/echo"])
    assert r.stdout == "1.1 200", r


def test_nghttp_get_and_post(tp, origin, tmp_path):
    body = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "body").write_bytes(body)
    r = run(["nghttp", "-n", "-s", f"http://127.0.0.1:{tp.port()}/echo"])
    assert r.returncode == 0 and " 200 " in r.stdout, r.stdout + r.stderr
    r = run(["nghttp", "-n", "-d", str(tmp_path / "body"), f"http://127.0.0.1:{tp.port()}/sink"])
    assert r.returncode == 0, r.stdout + r.stderr
    rec = origin.wait_for_path("/sink")
    assert rec.method == "POST" and rec.body_len == len(body)
    assert rec.body_sha256 == hashlib.sha256(body).hexdigest()


def test_h2load_all_2xx(tp):
    r = run(["h2load", "-n", "2000", "-c", "4", "-m", "10", f"http://127.0.0.1:{tp.port()}/echo"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2000 succeeded" in r.stdout, r.stdout
    assert "status codes: 2000 2xx" in r.stdout, r.stdout


def test_bodies_both_ways_several_mib_checked_by_digest(tp, origin):
    c = H2Client(tp.port())
    try:
        upload = bytes((i * 7) & 0xFF for i in range(256)) * (5 * 4096)  # 5 MiB
        digest = hashlib.sha256(upload).hexdigest()
        # With content-length: forwarded with the same Content-Length.
        sid = c.request("POST", "/sink", body=upload)
        (res,) = c.wait_streams([sid], timeout=60)
        assert res.status == 200 and json.loads(res.body) == {"length": len(upload), "sha256": digest}
        assert origin.wait_for_path("/sink").framing == "content-length"
        origin.reset()
        # Without content-length: re-chunked for the HTTP/1.1 origin.
        sid = c.request("POST", "/sink", body=upload, content_length=False)
        (res,) = c.wait_streams([sid], timeout=60)
        assert res.status == 200 and json.loads(res.body) == {"length": len(upload), "sha256": digest}
        assert origin.wait_for_path("/sink").framing == "chunked"
        # Download.
        res = c.get(f"/bytes/{6 * MiB}", keep_body=False, timeout=60)
        assert res.status == 200 and res.header("content-length") == str(6 * MiB)
        assert res.body_len == 6 * MiB and res.sha256 == pattern_sha256(6 * MiB)
        res = c.get(f"/chunked/{3 * MiB}", keep_body=False, timeout=60)
        assert res.status == 200 and res.header("content-length") is None
        assert res.sha256 == pattern_sha256(3 * MiB)
    finally:
        c.close()


def test_many_concurrent_streams_on_one_connection(tp):
    c = H2Client(tp.port())
    try:
        sids = [c.request("GET", f"/echo/{i}") for i in range(100)]
        results = c.wait_streams(sids, timeout=60)
        for i, res in enumerate(results):
            assert res.status == 200, res
            assert json.loads(res.body)["path"] == f"/echo/{i}"
    finally:
        c.close()


def test_response_headers_are_not_indexed_in_the_clients_hpack_table(tp):
    # Our encoder keeps no HPACK dynamic table (RFC 7541 §4.2 lets it use less than the client's
    # 4096 octets), so an idle connection holds no table entries; the client's decoder table
    # stays empty across repeated responses with the same fields.
    c = H2Client(tp.port())
    try:
        for _ in range(3):
            res = c.get("/echo?resp_header=X-Custom:yes")
            assert res.status == 200 and res.header("x-custom") == "yes"
        table = c.conn.decoder.header_table
        assert len(table.dynamic_entries) == 0
    finally:
        c.close()


def test_hop_by_hop_response_fields_removed_and_names_lower_case(tp):
    c = H2Client(tp.port())
    try:
        res = c.get("/echo?resp_header=X-Custom:yes&resp_header=Keep-Alive:timeout=5&resp_header=Upgrade:foo")
        assert res.status == 200
        names = [n for n, _ in res.headers]
        assert "x-custom" in names
        assert all(n == n.lower() for n in names)
        assert "keep-alive" not in names and "upgrade" not in names and "connection" not in names
    finally:
        c.close()


def test_small_client_window_backpressure_keeps_memory_bounded(tp):
    size = 48 * MiB
    c = H2Client(tp.port(), auto_window=False, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 16384})
    try:
        before = h2client.vm_rss_kib(tp.pid)
        sid = c.request("GET", f"/bytes/{size}", keep_body=False)
        c.wait(lambda: c.streams[sid].status is not None, timeout=10)
        # Stall: only the initial window arrives; the rest waits in the origin and the kernel.
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            c.pump(timeout=0.2)
        assert c.streams[sid].body_len <= 65535
        stalled = h2client.vm_rss_kib(tp.pid)
        assert stalled - before < 16 * 1024, f"RSS grew {stalled - before} KiB while the client read nothing"
        # Read it all in small window steps.
        deadline = time.monotonic() + 120
        granted = 0
        while not c.streams[sid].done:
            assert time.monotonic() < deadline, "download did not finish"
            got = c.streams[sid].body_len
            if got + 65536 > granted:
                c.grant(sid, 1024 * 1024)
                granted += 1024 * 1024
            c.pump(timeout=1.0)
        res = c.streams[sid]
        assert res.ended and res.body_len == size and res.sha256 == pattern_sha256(size)
        after = h2client.vm_rss_kib(tp.pid)
        assert after - before < 32 * 1024, f"RSS grew {after - before} KiB for a streamed response"
    finally:
        c.close()


def test_request_trailers_dropped_body_forwarded(tp, origin):
    c = H2Client(tp.port())
    try:
        sid = c.request("POST", "/sink", body=b"hello", end=False)
        c.conn.send_headers(sid, [("x-trailer", "1")], end_stream=True)
        c.flush()
        (res,) = c.wait_streams([sid])
        assert res.status == 200 and json.loads(res.body)["length"] == 5
        rec = origin.wait_for_path("/sink")
        assert rec.trailers == [] and "x-trailer" not in rec.header_names()
    finally:
        c.close()


def test_client_reset_mid_response_does_not_disturb_other_streams(tp):
    c = H2Client(tp.port())
    try:
        big = c.request("GET", f"/bytes/{32 * MiB}", keep_body=False)
        other = c.request("GET", f"/bytes/{2 * MiB}", keep_body=False)
        c.wait(lambda: c.streams[big].body_len > 0, timeout=10)
        c.reset(big)
        (res,) = c.wait_streams([other], timeout=60)
        assert res.ended and res.sha256 == pattern_sha256(2 * MiB)
        after = c.get("/echo/after")
        assert after.status == 200 and json.loads(after.body)["path"] == "/echo/after"
    finally:
        c.close()


@pytest.mark.parametrize("how", ["rst_stream", "connection_closed"])
def test_client_giving_up_cuts_the_upstream_request_short(origin, turnpike, tmp_path, how):
    """A stream reset (or its connection lost) while the origin is still working: the upstream
    request is abandoned at once (logged 499 client_reset), not carried on until the origin
    answers; the upstream connection is not reused; the same client connection and the pool go
    on serving."""
    log = tmp_path / "access.log"
    tp = turnpike(json_access_log(h2_config(origin), log))
    c = H2Client(tp.port())
    try:
        sid = c.request("GET", "/sleep/4000")
        origin.wait_for_path("/sleep/4000", timeout=5)
        gave_up = time.monotonic()
        if how == "rst_stream":
            c.reset(sid)
        else:
            c.close()
        entry = wait_access_entry(log, "/sleep/4000", timeout=3.0 - (time.monotonic() - gave_up))
        assert entry is not None, "no access log line within 3 s: the upstream request was not cut short"
        assert entry["status"] == 499 and entry["error"] == "client_reset", entry
        assert entry["duration_us"] < 3_000_000, entry
        if how == "rst_stream":
            after = c.get("/echo/after-reset")
            assert after.status == 200 and json.loads(after.body)["path"] == "/echo/after-reset"
    finally:
        c.close()
    # The abandoned upstream connection was closed, not parked: the next request gets a working one.
    c2 = H2Client(tp.port())
    try:
        assert c2.get("/echo/next").status == 200
    finally:
        c2.close()


def test_expect_100_continue(tp, origin):
    c = H2Client(tp.port())
    try:
        sid = c.request("POST", "/sink", headers=[("content-length", "3"), ("expect", "100-continue")], end=False)
        c.send_body(sid, b"abc")
        (res,) = c.wait_streams([sid])
        assert res.status == 200 and json.loads(res.body)["length"] == 3
    finally:
        c.close()


def test_connect_and_bad_path_answered_on_the_stream(tp, origin):
    c = H2Client(tp.port(), validate=False)
    try:
        sid = c.conn.get_next_available_stream_id()
        c.streams[sid] = h2client.StreamResult()
        c.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", "example.com:443")], end_stream=True)
        c.flush()
        (res,) = c.wait_streams([sid])
        assert res.status == 405
        res = c.get("/a/%00b")
        assert res.status == 400
        assert origin.snapshot() == []
    finally:
        c.close()


def test_large_header_list_gets_431(origin, turnpike):
    tp = turnpike(h2_config(origin, http2={"max_header_list_size": 4096}))
    c = H2Client(tp.port())
    try:
        res = c.get("/echo", headers=[("x-big", "a" * 6000)])
        assert res.status == 431
        assert c.get("/echo").status == 200
    finally:
        c.close()


def test_goaway_on_drain_lets_in_flight_stream_finish(origin, turnpike):
    # Raw frames: the h2 library refuses frames after any GOAWAY, even the shutdown notice.
    tp = turnpike(h2_config(origin, drain_timeout="10s"))
    c = h2client.RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/sleep/1500"))
        origin.wait_for_path("/sleep/1500", timeout=5)
        tp.signal(signal.SIGTERM)
        notice = c.goaway(timeout=5)
        assert notice is not None and notice.error_code == h2client.NO_ERROR
        end = c.response_end(1, timeout=15)
        assert end is not None and end.type != h2client.RST_STREAM
        assert c.status_of(1) == 200
        final = c.wait_for(lambda f: f.type == h2client.GOAWAY and f.last_stream_id == 1, timeout=5)
        assert final is not None and final.error_code == h2client.NO_ERROR
        assert c.wait_closed(timeout=5)
        assert tp.wait_exit(12) == 0
    finally:
        c.close()


def test_idle_connection_gets_goaway_after_idle_timeout(origin, turnpike):
    tp = turnpike(h2_config(origin, http2={"idle_timeout": "400ms"}))
    c = H2Client(tp.port())
    try:
        assert c.get("/echo").status == 200
        start = time.monotonic()
        c.wait(lambda: c.goaway is not None, timeout=5)
        assert c.goaway.error_code == h2client.NO_ERROR
        assert time.monotonic() - start >= 0.2
    finally:
        c.close()


def test_max_requests_per_connection_graceful_goaway(origin, turnpike):
    tp = turnpike(h2_config(origin, http2={"max_requests_per_connection": 3}))
    c = h2client.RawH2(tp.port())
    try:
        for sid in (1, 3, 5):
            c.send(c.request_headers(sid, f"/echo/{sid}"))
            end = c.response_end(sid, timeout=10)
            assert end is not None and end.type != h2client.RST_STREAM
            assert c.status_of(sid) == 200
        final = c.wait_for(lambda f: f.type == h2client.GOAWAY and f.last_stream_id == 5, timeout=5)
        assert final is not None and final.error_code == h2client.NO_ERROR
        assert c.wait_closed(timeout=5)
    finally:
        c.close()


def test_slow_request_body_gets_408_after_body_timeout(origin, turnpike):
    tp = turnpike(h2_config(origin, limits={"body_timeout": "500ms"}))
    c = H2Client(tp.port())
    try:
        sid = c.request("POST", "/sink", headers=[("content-length", "10")], end=False)
        c.send_body(sid, b"abc", end=False)
        (res,) = c.wait_streams([sid], timeout=10)
        assert res.status == 408 and res.ended
        assert c.get("/echo").status == 200  # the connection is fine
    finally:
        c.close()


def test_many_connections_in_parallel_threads(tp):
    errors = []

    def worker(n):
        try:
            c = H2Client(tp.port())
            try:
                sids = [c.request("GET", f"/echo/{n}/{i}") for i in range(20)]
                for res in c.wait_streams(sids, timeout=30):
                    if res.status != 200:
                        errors.append(res.status)
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def test_tls_alpn_h2(origin, turnpike, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost"])
    assert r.returncode == 0, r.stderr
    listener = {"name": "public", "address": "127.0.0.1", "port": 0,
                "tls": {"certificates": [{"cert": str(cert), "key": str(key)}]}}
    tp = turnpike(base_config(origin, listeners=[listener]))
    url = f"https://localhost:{tp.port()}/echo/tls"
    resolve = f"localhost:{tp.port()}:127.0.0.1"
    r = run(["curl", "-s", "-k", "--http2", "--resolve", resolve, "-o", "-", "-w", "\n%{http_version} %{http_code}", url])
    body, _, tail = r.stdout.rpartition("\n")
    assert tail == "2 200", r.stdout + r.stderr
    echoed = json.loads(body)
    assert {n.lower(): v for n, v in echoed["headers"]}["x-forwarded-proto"] == "https"
    r = run(["curl", "-s", "-k", "--http1.1", "--resolve", resolve, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url])
    assert r.stdout == "1.1 200", r.stdout + r.stderr


def test_reload_changing_the_listener_sends_graceful_goaway(origin, turnpike):
    cfg = h2_config(origin)
    tp = turnpike(cfg)
    c = h2client.RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/echo/before"))
        assert c.response_end(1, timeout=5) is not None
        new = h2_config(origin, http2={"max_concurrent_streams": 64})
        tp.reload(new)
        g = c.goaway(timeout=5)
        assert g is not None and g.error_code == h2client.NO_ERROR
        assert c.wait_closed(timeout=5)
    finally:
        c.close()


def test_response_stalled_by_client_window_is_reset_after_send_timeout(origin, turnpike):
    tp = turnpike(h2_config(origin, limits={"send_timeout": "500ms"}))
    c = H2Client(tp.port(), auto_window=False)
    try:
        sid = c.request("GET", f"/bytes/{4 * MiB}", keep_body=False)
        (res,) = c.wait_streams([sid], timeout=10)
        assert res.reset == h2client.CANCEL and res.body_len <= 65535
    finally:
        c.close()


def test_drain_timeout_closes_h2_connection_with_stuck_stream(origin, turnpike):
    tp = turnpike(h2_config(origin, drain_timeout="1s"))
    c = h2client.RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/sleep/6000"))
        origin.wait_for_path("/sleep/6000", timeout=5)
        start = time.monotonic()
        tp.signal(signal.SIGTERM)
        assert c.goaway(timeout=5) is not None
        assert c.wait_closed(timeout=5), "connection still open after the drain timeout"
        rc = tp.wait_exit(5.0)
        assert rc is not None and time.monotonic() - start < 5
    finally:
        c.close()


def test_idle_h2_connection_closed_promptly_on_drain(origin, turnpike):
    tp = turnpike(h2_config(origin))
    c = H2Client(tp.port())
    try:
        assert c.get("/echo").status == 200
        start = time.monotonic()
        tp.signal(signal.SIGTERM)
        assert tp.wait_exit(5.0) == 0
        assert time.monotonic() - start < 3
    finally:
        c.close()


def test_streams_across_a_reload_use_their_own_snapshot(origin, turnpike):
    from harness import respond_route
    cfg = h2_config(origin)
    tp = turnpike(cfg)
    c = H2Client(tp.port())
    try:
        slow = c.request("GET", "/sleep/800")
        origin.wait_for_path("/sleep/800", timeout=5)
        new = h2_config(origin, routes=[respond_route("static", ["/new/*"], "new config\n"),
                                        {"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}])
        tp.reload(new)
        res = c.get("/new/x")
        assert res.status == 200 and bytes(res.body) == b"new config\n"
        (old,) = c.wait_streams([slow], timeout=10)
        assert old.status == 200 and json.loads(old.body)["path"] == "/sleep/800"
        assert c.get("/echo/after").status == 200
    finally:
        c.close()


def test_head_and_204_responses_end_with_headers(tp):
    c = H2Client(tp.port())
    try:
        res = c.wait_streams([c.request("HEAD", "/bytes/1000")])[0]
        assert res.status == 200 and res.header("content-length") == "1000" and res.body_len == 0
        res = c.get("/status/204")
        assert res.status == 204 and res.body_len == 0 and res.ended
        res = c.get("/status/404")
        assert res.status == 404 and bytes(res.body) == b"status 404\n"
    finally:
        c.close()


def test_idle_h2_connection_makes_room_at_the_connection_limit(origin, turnpike):
    tp = turnpike(h2_config(origin, workers=1, limits={"max_connections_per_worker": 2}))
    idle = h2client.RawH2(tp.port())
    busy = h2client.RawH2(tp.port())
    try:
        idle.send(idle.request_headers(1, "/echo/idle"))
        assert idle.response_end(1, timeout=5) is not None
        busy.send(busy.request_headers(1, "/sleep/1500"))
        origin.wait_for_path("/sleep/1500", timeout=5)
        # A third connection: the idle one (not the busy one) gets a GOAWAY and closes.
        third = H2Client(tp.port())
        try:
            g = idle.goaway(timeout=5)
            assert g is not None and g.error_code == h2client.NO_ERROR
            assert idle.wait_closed(timeout=5)
            assert third.get("/echo/third").status == 200
            end = busy.response_end(1, timeout=10)
            assert end is not None and end.type != h2client.RST_STREAM and busy.status_of(1) == 200
            assert not [f for f in busy.frames if f.type == h2client.GOAWAY]
        finally:
            third.close()
    finally:
        idle.close()
        busy.close()


# --- HTTP/2 on both sides: response trailers and gRPC (h2c origin, h2origin.py) -----------------

@pytest.fixture
def h2_upstream_tp(turnpike):
    from h2origin import H2Origin
    from harness import upstream
    server = H2Origin().start()
    try:
        cfg = base_config(upstreams=[upstream("origin", [server.address], protocol="h2c")],
                          routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}])
        yield turnpike(cfg), server
    finally:
        server.stop()


def test_client_reset_resets_the_h2_upstream_stream(turnpike, tmp_path):
    """An h2c upstream: the client's RST_STREAM becomes an RST_STREAM to the origin right away,
    the request is logged 499, and the shared upstream connection keeps carrying streams."""
    from h2origin import H2Origin
    from harness import upstream
    server = H2Origin().start()
    try:
        log = tmp_path / "access.log"
        cfg = base_config(upstreams=[upstream("origin", [server.address], protocol="h2c")],
                          routes=[{"name": "all", "match": {"paths": ["/*"]}, "upstream": "origin"}])
        tp = turnpike(json_access_log(cfg, log))
        c = H2Client(tp.port())
        try:
            sid = c.request("GET", "/sleep/4000")
            server.wait_for(lambda reqs: any(r.path == "/sleep/4000" for r in reqs), timeout=5)
            gave_up = time.monotonic()
            c.reset(sid)
            while server.resets == 0 and time.monotonic() - gave_up < 2.0:
                time.sleep(0.02)
            assert server.resets == 1, "the origin's stream was not reset"
            entry = wait_access_entry(log, "/sleep/4000", timeout=3.0 - (time.monotonic() - gave_up))
            assert entry is not None and entry["status"] == 499 and entry["error"] == "client_reset", entry
            after = c.get("/echo/after-reset")
            assert after.status == 200
        finally:
            c.close()
    finally:
        server.stop()


def test_response_trailers_reach_the_h2_client(h2_upstream_tp):
    tp, _ = h2_upstream_tp
    c = H2Client(tp.port())
    try:
        res = c.get("/trailers")
        assert res.status == 200 and bytes(res.body) == b"hello trailers" and res.ended
        assert ("x-checksum", "abc123") in res.trailers and ("x-origin", "h2") in res.trailers
    finally:
        c.close()


def test_grpc_unary_end_to_end_over_http2(h2_upstream_tp):
    from h2origin import grpc_frames, grpc_messages
    tp, _ = h2_upstream_tp
    c = H2Client(tp.port())
    try:
        msg = grpc_frames([b"ping", b"pong" * 1000])
        sid = c.request("POST", "/test.Echo/Unary", body=msg, content_length=False,
                        headers=[("content-type", "application/grpc"), ("te", "trailers")])
        (res,) = c.wait_streams([sid], timeout=20)
        assert res.status == 200 and res.header("content-type") == "application/grpc"
        assert grpc_messages(bytes(res.body)) == [b"ping", b"pong" * 1000]
        assert ("grpc-status", "0") in res.trailers
        # Trailers-only error: grpc-status in the response HEADERS, END_STREAM on them.
        sid = c.request("POST", "/test.Echo/Fail", body=grpc_frames([b"x"]), content_length=False,
                        headers=[("content-type", "application/grpc"), ("te", "trailers")])
        (res,) = c.wait_streams([sid], timeout=20)
        assert res.status == 200 and res.header("grpc-status") == "5" and res.body_len == 0
    finally:
        c.close()


# ---- Idle connections park (src/downstream/h2/h2_park.cc) ----------------------------------------------
# (What parking saves is measured by bench/idle_conns.sh, PROTO=h2c / h2: RSS growth over a few
# hundred connections in a test mixes in the heap's high-water mark of their first requests.)


def test_parked_connection_serves_its_next_request(origin, turnpike):
    tp = turnpike(h2_config(origin, workers=1))
    c = h2client.RawH2(tp.port())
    try:
        for sid in (1, 3):
            c.send(c.request_headers(sid, f"/echo/{sid}"))
            assert c.response_end(sid, timeout=5) is not None and c.status_of(sid) == 200
            time.sleep(1.5)  # idle past the park delay (1 s) and a sweep tick
        c.send(c.request_headers(5, "/echo/5", method="POST", end=False))
        c.send(h2client.frame(h2client.DATA, h2client.END_STREAM, 5, b"after parking"))
        assert c.response_end(5, timeout=5) is not None and c.status_of(5) == 200
        assert c.goaway(timeout=0.2) is None
    finally:
        c.close()


def test_parked_connection_still_gets_its_idle_timeout_goaway(origin, turnpike):
    tp = turnpike(h2_config(origin, http2={"idle_timeout": "1800ms"}, workers=1))
    c = h2client.RawH2(tp.port())
    try:
        c.send(c.request_headers(1, "/echo"))
        assert c.response_end(1, timeout=5) is not None
        g = c.goaway(timeout=6)  # parked after 1 s, GOAWAY at 1.8 s
        assert g is not None and g.error_code == h2client.NO_ERROR and g.last_stream_id == 1
    finally:
        c.close()



def test_many_idle_connections_park_at_once_and_serve_again(origin, turnpike):
    # Above 256 connections a worker parks idle ones at once (Worker::many_connections).
    tp = turnpike(h2_config(origin, workers=1))
    conns = []
    try:
        for i in range(300):
            c = h2client.RawH2(tp.port())
            c.send(c.request_headers(1, f"/echo/first/{i}"))
            conns.append(c)
        for c in conns:
            assert c.response_end(1, timeout=10) is not None and c.status_of(1) == 200
        time.sleep(0.5)
        for i, c in enumerate(conns):
            c.send(c.request_headers(3, f"/echo/second/{i}"))
        for c in conns:
            assert c.response_end(3, timeout=10) is not None and c.status_of(3) == 200
            assert c.goaway(timeout=0) is None
    finally:
        for c in conns:
            c.close()
