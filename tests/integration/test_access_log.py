"""The access log's configured fields (log.access_fields) in the real binary: every variable in
text and JSON, the client's TLS version and cipher over https, every node tried with its status
and times (aligned lists) when the first node fails, unknown variables refused at their line, and
the default line unchanged when no fields are configured."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

import rawhttp
from harness import ERROR_LINE, base_config, check_config, dump_yaml, upstream
from origin import closed_port
from tlsutil import TlsConn, make_cert

ALL_VARIABLES = ("$remote_addr $remote_port $time_iso8601 $msec $request_id $host $request $request_method "
                 "$request_uri $server_protocol $scheme $status $body_bytes_sent $request_body_bytes $request_time "
                 "$route $consumer $error $upstream_addr $upstream_status $upstream_connect_time "
                 "$upstream_header_time $upstream_response_time $ssl_protocol $ssl_cipher $http_user_agent "
                 "$http_x_trace")
SECONDS = re.compile(r"^\d+\.\d{3}$")


def log_lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The first `count` lines of the access log, waiting up to `timeout` for them (the log is
    written by a background thread)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() >= deadline:
            assert len(lines) >= count, f"{len(lines)} access log lines, expected {count}: {lines}"
            return lines[:count]
        time.sleep(0.05)


def logged(origin, tmp_path, fields, fmt="text", **cfg_extra):
    cfg = base_config(origin, workers=1, **cfg_extra)
    path = tmp_path / "access.log"
    cfg["log"]["access_log"] = str(path)
    cfg["log"]["access_format"] = fmt
    if fields is not None:
        cfg["log"]["access_fields"] = fields
    return cfg, path


def auth_routes():
    return [{"name": "api", "match": {"paths": ["/*"]}, "upstream": "origin",
             "plugins": {"key-auth": {}, "request-id": {}}}]


CONSUMERS = [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}}]


# ---- every variable -------------------------------------------------------------------------

def test_every_variable_in_json(origin, turnpike, tmp_path):
    cfg, path = logged(origin, tmp_path, ALL_VARIABLES, "json", routes=auth_routes(), consumers=CONSUMERS)
    tp = turnpike(cfg)
    with rawhttp.HttpConn(tp.port()) as conn:
        resp = conn.request("POST", "/echo/a?b=1", headers=[("Host", "api.test:8080"), ("apikey", "k-alice"),
                                                            ("User-Agent", "probe/1 \"x\""), ("X-Trace", "t-1"),
                                                            ("X-Request-Id", "rid-42")], body=b"hello")
        assert resp.status == 200
        client_port = conn.sock.getsockname()[1]
    [line] = log_lines(path, 1)
    e = json.loads(line)
    assert list(e) == [v.lstrip("$") for v in ALL_VARIABLES.split()], "keys are the variables' names, in order"
    assert e["remote_addr"] == "127.0.0.1" and e["remote_port"] == client_port
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time_iso8601"]), e
    assert abs(e["msec"] - time.time()) < 60 and round(e["msec"], 3) == e["msec"]
    assert e["request_id"] == "rid-42" and e["host"] == "api.test:8080"
    assert e["request"] == "POST /echo/a?b=1 HTTP/1.1" and e["request_method"] == "POST"
    assert e["request_uri"] == "/echo/a?b=1" and e["server_protocol"] == "HTTP/1.1" and e["scheme"] == "http"
    assert e["status"] == 200 and e["body_bytes_sent"] == int(resp.header("content-length"))
    assert e["request_body_bytes"] == 5
    assert isinstance(e["request_time"], float) and 0 <= e["request_time"] < 5
    assert e["route"] == "api" and e["consumer"] == "alice" and e["error"] == ""
    # One try: lists of one, aligned.
    assert e["upstream_addr"] == [origin.address] and e["upstream_status"] == [200]
    [connect], [header], [response] = (e["upstream_connect_time"], e["upstream_header_time"],
                                       e["upstream_response_time"])
    assert 0 <= connect <= header <= response <= e["request_time"] + 0.001, e
    assert e["ssl_protocol"] == "" and e["ssl_cipher"] == ""  # cleartext
    assert e["http_user_agent"] == 'probe/1 "x"' and e["http_x_trace"] == "t-1"


def test_every_variable_in_text(origin, turnpike, tmp_path):
    fields = ALL_VARIABLES.replace("$request ", '"$request" ').replace("$http_user_agent", '"$http_user_agent"')
    cfg, path = logged(origin, tmp_path, fields, routes=auth_routes(), consumers=CONSUMERS)
    tp = turnpike(cfg)
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/echo/t", headers=[("apikey", "k-alice"), ("User-Agent", "probe 1"),
                                                       ("X-Request-Id", "rid-7")]).status == 200
        client_port = conn.sock.getsockname()[1]
    [line] = log_lines(path, 1)
    m = re.fullmatch(r'(\S+) (\S+) (\S+) (\S+) (\S+) (\S+) "([^"]*)" (.*) "([^"]*)" (\S+)', line)
    assert m, line
    assert m.group(1, 2) == ("127.0.0.1", str(client_port))
    assert SECONDS.match(m.group(4)), m.group(4)  # $msec
    assert m.group(5, 6, 7) == ("rid-7", "test.local", "GET /echo/t HTTP/1.1")
    assert m.group(9, 10) == ("probe 1", "-")  # a quoted header keeps its space; a missing one is "-"
    rest = m.group(8).split(" ")
    (method, uri, proto, scheme, status, sent, received, rt, route, consumer, err, addr, ustatus, uconnect,
     uheader, uresponse, ssl_protocol, ssl_cipher) = rest
    assert (method, uri, proto, scheme, status) == ("GET", "/echo/t", "HTTP/1.1", "http", "200")
    assert int(sent) > 0 and received == "0" and SECONDS.match(rt)
    assert (route, consumer, err) == ("api", "alice", "-")
    assert (addr, ustatus) == (origin.address, "200")
    assert all(SECONDS.match(t) for t in (uconnect, uheader, uresponse)), rest
    assert (ssl_protocol, ssl_cipher) == ("-", "-")


def test_literal_text_and_braces(origin, turnpike, tmp_path):
    cfg, path = logged(origin, tmp_path, "client=${remote_addr}:${remote_port} s=$status|${route}x")
    tp = turnpike(cfg)
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/echo").status == 200
        client_port = conn.sock.getsockname()[1]
    assert log_lines(path, 1) == [f"client=127.0.0.1:{client_port} s=200|allx"]


def test_fields_as_a_yaml_list(origin, turnpike, tmp_path):
    cfg, path = logged(origin, tmp_path, ["$status", "$route"], "json")
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/nowhere").status == 200
    assert json.loads(log_lines(path, 1)[0]) == {"status": 200, "route": "all"}


def test_unmatched_request_has_empty_route_and_no_tries(origin, turnpike, tmp_path):
    routes = [{"name": "api", "match": {"paths": ["/api/*"]}, "upstream": "origin"}]
    cfg, path = logged(origin, tmp_path, "$status $route $error $upstream_addr $upstream_status "
                                         "$upstream_connect_time", routes=routes)
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/nowhere").status == 404
    assert log_lines(path, 1) == ["404 - no_route - - -"]
    tp.reload(_json(cfg))
    assert rawhttp.request(tp.port(), "GET", "/nowhere").status == 404
    entry = json.loads(log_lines(path, 2)[1])
    assert entry == {"status": 404, "route": "", "error": "no_route", "upstream_addr": [], "upstream_status": [],
                     "upstream_connect_time": []}


def _json(cfg):
    out = json.loads(json.dumps(cfg))
    out["log"]["access_format"] = "json"
    return out


# ---- every node tried -----------------------------------------------------------------------

def test_every_try_with_its_times_when_the_first_node_fails(origin, turnpike, tmp_path):
    dead = closed_port()
    up = upstream("origin", [f"127.0.0.1:{dead}", origin.address], retries=2)
    fields = "$upstream_addr $upstream_status $upstream_connect_time $upstream_header_time $upstream_response_time"
    cfg, path = logged(origin, tmp_path, fields, "json", upstreams=[up])
    tp = turnpike(cfg)
    for i in range(4):
        assert rawhttp.request(tp.port(), "GET", f"/echo/{i}").status == 200
    entries = [json.loads(line) for line in log_lines(path, 4)]
    retried = [e for e in entries if len(e["upstream_addr"]) == 2]
    assert retried, entries  # the first node is tried first by some requests before it is ejected
    for e in retried:
        assert e["upstream_addr"] == [f"127.0.0.1:{dead}", origin.address]
        assert e["upstream_status"] == [502, 200]
        # The refused connect took some time; the answer came on the second try only.
        assert e["upstream_connect_time"][0] >= 0 and e["upstream_connect_time"][1] >= 0
        assert e["upstream_header_time"] == [None, e["upstream_header_time"][1]] and e["upstream_header_time"][1] >= 0
        assert all(t >= 0 for t in e["upstream_response_time"]), e
        assert len({len(v) for v in e.values()}) == 1, "aligned lists"


def test_every_try_in_text_is_comma_separated(origin, turnpike, tmp_path):
    dead = closed_port()
    up = upstream("origin", [f"127.0.0.1:{dead}", origin.address], retries=2)
    cfg, path = logged(origin, tmp_path, "$upstream_addr $upstream_status $upstream_header_time", upstreams=[up])
    tp = turnpike(cfg)
    for i in range(4):
        assert rawhttp.request(tp.port(), "GET", f"/echo/{i}").status == 200
    lines = log_lines(path, 4)
    retried = [line for line in lines if "," in line.split(" ")[0]]
    assert retried, lines
    for line in retried:
        addrs, statuses, header = line.split(" ")
        assert addrs == f"127.0.0.1:{dead},{origin.address}" and statuses == "502,200"
        first, second = header.split(",")
        assert first == "-" and SECONDS.match(second), line


def test_slow_response_times_are_in_seconds(origin, turnpike, tmp_path):
    cfg, path = logged(origin, tmp_path, "$request_time $upstream_header_time $upstream_response_time", "json")
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/sleep/300").status == 200
    e = json.loads(log_lines(path, 1)[0])
    assert 0.3 <= e["upstream_header_time"][0] <= e["upstream_response_time"][0] <= e["request_time"] < 3, e


# ---- TLS ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("certs"), "default", "default.test")


def test_tls_version_and_cipher_over_https(origin, turnpike, tmp_path, cert):
    listener = {"name": "public", "address": "127.0.0.1", "port": 0,
                "tls": {"certificates": [{"cert": str(cert[0]), "key": str(cert[1])}]}}
    cfg, path = logged(origin, tmp_path, "$scheme $ssl_protocol $ssl_cipher", "json", listeners=[listener])
    tp = turnpike(cfg)
    with TlsConn(tp.port()) as c:
        assert c.request("GET", "/echo").status == 200
        version, cipher = c.sock.version(), c.sock.cipher()[0]
    e = json.loads(log_lines(path, 1)[0])
    assert e == {"scheme": "https", "ssl_protocol": version, "ssl_cipher": cipher}, (e, version, cipher)


# ---- the default line, and errors -----------------------------------------------------------

def test_default_text_line_is_unchanged(origin, turnpike, tmp_path):
    cfg, path = logged(origin, tmp_path, None)
    tp = turnpike(cfg)
    with rawhttp.HttpConn(tp.port()) as conn:
        assert conn.request("GET", "/echo/d", headers=[("User-Agent", "ua 1"), ("Referer", "r")]).status == 200
        client_port = conn.sock.getsockname()[1]
    [line] = log_lines(path, 1)
    assert re.fullmatch(
        rf'127\.0\.0\.1:{client_port} - \[\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\] "GET /echo/d HTTP/1\.1" 200 \d+ '
        rf'"r" "ua 1" rt=\d+\.\d{{3}} route=all upstream={re.escape(origin.address)} ustatus=200 '
        rf'urt=\d+\.\d{{3}} err=-', line), line


@pytest.mark.parametrize("fields,fmt,problem", [
    ("$remote_addr $bogus_var", "text", "unknown variable $bogus_var"),
    ("$status ${nope", "text", "without its"),
    ("cost $ 5", "text", "must start a variable"),
    ("just text", "text", "names no variable"),
    ("[$status]", "json", "has no place in a JSON line"),
    ("$status $status", "json", "twice"),
])
def test_bad_fields_are_refused_at_their_line(turnpike_bin, tmp_path, origin, fields, fmt, problem):
    cfg, _ = logged(origin, tmp_path, fields, fmt)
    path = tmp_path / "bad.yaml"
    text = dump_yaml(cfg)
    path.write_text(text)
    result = check_config(turnpike_bin, path)
    assert result.returncode != 0, result
    errors = [m.groupdict() for m in ERROR_LINE.finditer(result.stderr + result.stdout)]
    expected_line = next(i for i, line in enumerate(text.splitlines(), 1) if "access_fields" in line)
    mine = [e for e in errors if "access_fields" in e["message"]]
    assert mine, result.stderr + result.stdout
    assert mine[0]["file"] == str(path) and int(mine[0]["line"]) == expected_line, mine
    assert problem in mine[0]["message"], mine


def test_fields_change_on_reload(origin, turnpike, tmp_path):
    cfg, path = logged(origin, tmp_path, "a=$status")
    tp = turnpike(cfg)
    assert rawhttp.request(tp.port(), "GET", "/echo").status == 200
    assert log_lines(path, 1) == ["a=200"]  # (the log phase runs after the response is sent)
    cfg["log"]["access_fields"] = "b=$status"
    tp.reload(cfg)
    assert rawhttp.request(tp.port(), "GET", "/echo").status == 200
    assert log_lines(path, 2) == ["a=200", "b=200"]
