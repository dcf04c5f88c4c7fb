"""The bundled transformation plugins in the real binary: proxy-rewrite, response-rewrite,
redirect, request-id (upstream, response and access log) and fault-injection (statistically, in
bounded loops): what they change, their denials, and their schema errors from `turnpike -t`."""
from __future__ import annotations

import re
import time

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, ERROR_LINE


def route(name, paths, plugins, **extra):
    return {"name": name, "match": {"paths": paths}, "upstream": "origin", "plugins": plugins, **extra}


def get(tp, target, headers=None, method="GET", body=None):
    return rawhttp.request(tp.port(), method, target, headers=headers or [], body=body)


def upstream_view(resp):
    """What the origin's /echo saw: (path, query, headers by lower-case name)."""
    assert resp.status == 200, resp
    body = resp.json()
    headers = {}
    for n, v in body["headers"]:
        headers.setdefault(n.lower(), []).append(v)
    return body["path"], body["query"], headers


def assert_config_error(turnpike_bin, tmp_path, origin, plugins, message):
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(base_config(origin, routes=[route("r", ["/*"], plugins)])))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    plugin = next(iter(plugins))
    expected = f'route "r": plugin "{plugin}": {message}'
    messages = [m["message"] for m in ERROR_LINE.finditer(out.stderr)]
    assert any(m.startswith(expected) for m in messages), (expected, out.stderr)


@pytest.fixture(scope="module")
def tp(origin_module, turnpike_module, tmp_path_factory):
    routes = [
        route("users", ["/users/{id}"],
              {"proxy-rewrite": {"uri": "/internal/users/{id}/profile?src=gw", "host": "users.internal",
                                 "headers": {"set": {"X-Set": "1", "X-Version": 2},
                                             "add": {"X-Add": "b"}, "remove": ["X-Remove"]}}}),
        route("method", ["/method/*"], {"proxy-rewrite": {"method": "PUT"}}),
        route("regex", ["/old/*"],
              {"proxy-rewrite": {"regex_uri": [r"^/old/(\d+)/(?<rest>.*)$", "/new/${rest}/$1"]}}),
        route("resp-head", ["/resp/head/*"],
              {"response-rewrite": {"status_code": 202,
                                    "headers": {"set": {"X-New": "yes"}, "add": {"X-Many": "2"},
                                                "remove": ["X-Drop"]}}}),
        route("resp-body", ["/resp/body/*"],
              {"response-rewrite": {"body": '{"replaced":true}',
                                    "headers": {"set": {"Content-Type": "application/json", "X-New": "yes"}}}}),
        route("resp-body-status", ["/resp/status/*"],
              {"response-rewrite": {"status_code": 418, "body": "short and stout"}}),
        route("resp-body-rid", ["/resp/rid/*"], {"request-id": {}, "response-rewrite": {"body": "new"}}),
        route("resp-denial", ["/resp/denial/*"],
              {"key-auth": {}, "response-rewrite": {"body": "please log in"}}),
        route("https", ["/https/*"], {"redirect": {"http_to_https": True}}),
        route("https-port", ["/https-port/*"], {"redirect": {"http_to_https": True, "https_port": 8443}}),
        route("docs", ["/docs/{page}"], {"redirect": {"uri": "https://docs.example/v2/{page}", "ret_code": 301}}),
        route("docs-query", ["/docs-q/{page}"],
              {"redirect": {"uri": "/v2/{page}?from=v1", "append_query_string": True}}),
        route("blog", ["/blog/*"], {"redirect": {"regex_uri": [r"^/blog/(\d+)/(.*)$", "/posts/$2?id=$1"]}}),
        route("rid", ["/rid/*"], {"request-id": {}}),
        route("rid-custom", ["/rid-custom/*"], {"request-id": {"header_name": "X-Trace", "include_in_response": False}}),
        route("abort", ["/abort/*"], {"fault-injection": {"abort": {"http_status": 503, "body": "injected"}}}),
        route("abort-half", ["/abort-half/*"], {"fault-injection": {"abort": {"http_status": 500, "percentage": 50}}}),
        route("abort-never", ["/abort-never/*"], {"fault-injection": {"abort": {"http_status": 500, "percentage": 0}}}),
        route("delay", ["/delay/*"], {"fault-injection": {"delay": {"duration": 0.3}}}),
        route("per-consumer", ["/per-consumer/*"], {"key-auth": {}}),
    ]
    consumers = [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}},
                 {"username": "carol", "plugins": {"key-auth": {"key": "k-carol"},
                                                   "fault-injection": {"abort": {"http_status": 429, "body": "carol"}}}}]
    cfg = base_config(origin_module, routes=routes, consumers=consumers)
    log = tmp_path_factory.mktemp("log") / "access.log"
    cfg["log"]["access_log"] = str(log)
    server = turnpike_module(cfg)
    server.access_log = log
    return server


# ---- proxy-rewrite ----------------------------------------------------------------------------

def test_proxy_rewrite_path_template_query_host_and_headers(tp):
    resp = get(tp, "/users/42?a=1", headers=[("X-Remove", "secret"), ("X-Add", "a"), ("X-Set", "old")])
    path, query, headers = upstream_view(resp)
    assert path == "/internal/users/42/profile"
    assert query == "src=gw&a=1"  # the template's arguments, then the request's
    assert headers["host"] == ["users.internal"]
    assert headers["x-set"] == ["1"]
    assert headers["x-version"] == ["2"]
    assert headers["x-add"] == ["a, b"]
    assert "x-remove" not in headers


def test_proxy_rewrite_adds_a_field_the_request_lacks(tp):
    _, query, headers = upstream_view(get(tp, "/users/7"))
    assert query == "src=gw"
    assert headers["x-add"] == ["b"]


def test_proxy_rewrite_regex_captures(tp):
    path, query, _ = upstream_view(get(tp, "/old/7/a/b?x=1"))
    assert (path, query) == ("/new/a/b/7", "x=1")
    # A path the expression does not match goes upstream unchanged.
    path, _, _ = upstream_view(get(tp, "/old/no-number"))
    assert path == "/old/no-number"


def test_proxy_rewrite_method(tp):
    resp = get(tp, "/method/a")
    assert resp.status == 200 and resp.json()["method"] == "PUT"
    resp = get(tp, "/method/b", method="POST", body=b"kept")
    assert resp.json()["method"] == "PUT" and resp.json()["body_len"] == 4
    # A HEAD request keeps its method: its response has no body whatever the upstream's method.
    with rawhttp.HttpConn(tp.port()) as conn:
        head = conn.request("HEAD", "/method/c")
        assert head.status == 200 and head.body == b""
        after = conn.request("GET", "/method/d")  # the connection's framing held
        assert after.json()["method"] == "PUT"


@pytest.mark.parametrize("conf,message", [
    ({"uri": "/a", "regex_uri": ["^/b", "/c"]}, "conf: give uri or regex_uri, not both"),
    ({"uri": "relative"}, 'conf.uri: does not match the pattern "^/"'),
    ({"regex_uri": ["^/(a", "/b"]}, "conf.regex_uri[1]: invalid regular expression: "),
    ({"regex_uri": ["^/(a)", "$1"]}, 'conf.regex_uri[2]: the replacement is a path: it must start with "/"'),
    ({"regex_uri": ["^/a"]}, "conf.regex_uri: expected at least 2 items, got 1"),
    ({"headers": {"set": {"Host": "x"}}}, "conf.headers.set.Host: the gateway manages this field (use conf.host)"),
    ({"headers": {"add": {"Transfer-Encoding": "chunked"}}}, "conf.headers.add.Transfer-Encoding: the gateway manages this field"),
    ({"headers": {"set": {"X-A": ["list"]}}}, "conf.headers.set.X-A: expected a string, got table"),
    ({"headers": {"remove": ["Content-Length"]}}, "conf.headers.remove[1]: the gateway manages this field"),
    ({"method": "HEAD"}, "conf.method: HEAD cannot be set (the response's framing depends on it)"),
    ({"method": "GE T"}, "conf.method: does not match the pattern"),
    ({"verb": "POST"}, "conf.verb: unknown property"),
    ({"host": "a b"}, "conf.host: does not match the pattern"),
    ({"headers": {"remove": ["bad name"]}}, "conf.headers.remove[1]: does not match the pattern"),
])
def test_proxy_rewrite_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    assert_config_error(turnpike_bin, tmp_path, origin, {"proxy-rewrite": conf}, message)


# ---- response-rewrite -------------------------------------------------------------------------

def test_response_rewrite_status_and_headers_keep_the_body(tp):
    resp = get(tp, "/resp/head/x?resp_header=X-Drop:1&resp_header=X-Many:1&resp_header=X-Keep:1")
    assert resp.status == 202
    assert resp.json()["path"] == "/resp/head/x"  # the upstream's body
    assert resp.header("x-new") == "yes"
    assert resp.header("x-drop") is None
    assert resp.header("x-keep") == "1"
    assert resp.header_all("x-many") == ["1", "2"]


def test_response_rewrite_replaces_a_proxied_body(tp, origin_module):
    with rawhttp.HttpConn(tp.port()) as conn:
        for i in range(3):  # the client connection stays usable after each replacement
            resp = conn.request("GET", f"/resp/body/{i}?resp_header=X-Upstream:1")
            assert resp.status == 200
            assert resp.json() == {"replaced": True}
            assert resp.header("content-type") == "application/json"
            assert resp.header("x-new") == "yes"
            assert resp.header("x-upstream") is None  # the upstream's fields go with its body
    assert [r for r in origin_module.snapshot() if r.path == "/resp/body/2"]


def test_response_rewrite_keeps_fields_earlier_header_filters_set_on_a_proxied_response(tp):
    resp = get(tp, "/resp/rid/x")
    assert resp.body == b"new"
    assert UUID4.match(resp.header("x-request-id") or "")


def test_response_rewrite_status_with_body_and_upstream_content_type(tp):
    resp = get(tp, "/resp/status/x")
    assert resp.status == 418
    assert resp.body == b"short and stout"
    assert resp.header("content-type").startswith("application/json")  # the upstream's type


def test_response_rewrite_replaces_the_gateways_own_answers(tp):
    resp = get(tp, "/resp/denial/x")
    assert resp.status == 401
    assert resp.body == b"please log in"


@pytest.mark.parametrize("conf,message", [
    ({}, "conf: give status_code, headers or body"),
    ({"status_code": 99}, "conf.status_code: expected at least 200, got 99"),
    ({"headers": {"set": {"Content-Length": "5"}}}, "conf.headers.set.Content-Length: the gateway manages this field"),
    ({"headers": {"set": {"X-Bad": "a\r\nb"}}}, "conf.headers.set.X-Bad: a field value cannot hold CR, LF or NUL"),
    ({"headers": {"sett": {}}}, "conf.headers.sett: unknown property"),
])
def test_response_rewrite_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    assert_config_error(turnpike_bin, tmp_path, origin, {"response-rewrite": conf}, message)


# ---- redirect ---------------------------------------------------------------------------------

def test_redirect_http_to_https(tp, origin_module):
    resp = get(tp, "/https/a/b?c=1&d=2", headers=[("Host", "shop.example:8080")])
    assert resp.status == 301
    assert resp.header("location") == "https://shop.example/https/a/b?c=1&d=2"
    post = get(tp, "/https/form", method="POST", body=b"x=1", headers=[("Host", "shop.example")])
    assert post.status == 308  # the method and body are kept
    assert post.header("location") == "https://shop.example/https/form"
    assert not [r for r in origin_module.snapshot() if r.path.startswith("/https/")]
    port = get(tp, "/https-port/x", headers=[("Host", "[2001:db8::1]:80")])
    assert port.header("location") == "https://[2001:db8::1]:8443/https-port/x"
    absolute = get(tp, "http://shop.example/https/abs?q=1", headers=[("Host", "shop.example")])
    assert absolute.header("location") == "https://shop.example/https/abs?q=1"


def test_redirect_uri_template(tp):
    resp = get(tp, "/docs/install?lang=en")
    assert resp.status == 301
    assert resp.header("location") == "https://docs.example/v2/install"
    q = get(tp, "/docs-q/install?lang=en")
    assert q.status == 302
    assert q.header("location") == "/v2/install?from=v1&lang=en"


def test_redirect_regex_uri(tp):
    resp = get(tp, "/blog/12/hello-world")
    assert resp.status == 302
    assert resp.header("location") == "/posts/hello-world?id=12"
    assert get(tp, "/blog/latest").status == 200  # no match: proxied


@pytest.mark.parametrize("conf,message", [
    ({}, "conf: give exactly one of http_to_https, uri and regex_uri"),
    ({"http_to_https": True, "uri": "/x"}, "conf: give exactly one of http_to_https, uri and regex_uri"),
    ({"uri": "/x", "ret_code": 200}, "conf.ret_code: expected one of 301, 302, 303, 307, 308, got 200"),
    ({"regex_uri": ["(", "/x"]}, "conf.regex_uri[1]: invalid regular expression: "),
    ({"uri": "/a b"}, "conf.uri: does not match the pattern"),
])
def test_redirect_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    assert_config_error(turnpike_bin, tmp_path, origin, {"redirect": conf}, message)


# ---- request-id -------------------------------------------------------------------------------

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def wait_log_line(tp, needle, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tp.access_log.exists():
            for line in tp.access_log.read_text().splitlines():
                if needle in line:
                    return line
        time.sleep(0.05)
    return None


def test_request_id_generated_sent_upstream_returned_and_logged(tp):
    resp = get(tp, "/rid/generated")
    rid = resp.header("x-request-id")
    assert rid and UUID4.match(rid), rid
    _, _, headers = upstream_view(resp)
    assert headers["x-request-id"] == [rid]
    line = wait_log_line(tp, "/rid/generated")
    assert line and f" rid={rid}" in line, line


def test_request_id_keeps_a_good_client_id_and_replaces_a_bad_one(tp):
    resp = get(tp, "/rid/kept", headers=[("X-Request-Id", "client-id:42")])
    assert resp.header("x-request-id") == "client-id:42"
    assert upstream_view(resp)[2]["x-request-id"] == ["client-id:42"]
    assert "rid=client-id:42" in (wait_log_line(tp, "/rid/kept") or "")
    for bad in ["two words", "x" * 129, "quote\"d"]:
        resp = get(tp, "/rid/bad", headers=[("X-Request-Id", bad)])
        rid = resp.header("x-request-id")
        assert UUID4.match(rid), (bad, rid)
        assert upstream_view(resp)[2]["x-request-id"] == [rid]


def test_request_ids_are_distinct(tp):
    ids = set()
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(200):  # more than one batch of random bytes
            ids.add(conn.request("GET", "/rid/many").header("x-request-id"))
    assert len(ids) == 200


def test_request_id_custom_header_not_in_the_response(tp):
    resp = get(tp, "/rid-custom/x")
    assert resp.header("x-trace") is None
    rid = upstream_view(resp)[2]["x-trace"][0]
    assert UUID4.match(rid)
    assert f"rid={rid}" in (wait_log_line(tp, "/rid-custom/x") or "")


def test_request_id_schema_errors(turnpike_bin, tmp_path, origin):
    assert_config_error(turnpike_bin, tmp_path, origin, {"request-id": {"header_name": "X Id"}},
                        "conf.header_name: does not match the pattern")


# ---- fault-injection --------------------------------------------------------------------------

def test_fault_injection_abort(tp, origin_module):
    resp = get(tp, "/abort/x")
    assert resp.status == 503
    assert resp.body == b"injected"
    assert not [r for r in origin_module.snapshot() if r.path == "/abort/x"]
    assert get(tp, "/abort-never/x").status == 200


def test_fault_injection_abort_percentage(tp):
    statuses = []
    with rawhttp.HttpConn(tp.port()) as conn:
        for _ in range(200):
            statuses.append(conn.request("GET", "/abort-half/x").status)
    aborted = statuses.count(500)
    assert aborted + statuses.count(200) == 200, statuses
    # 50% of 200: binomial, sd ~7; 60..140 fails by chance with probability ~1e-8.
    assert 60 <= aborted <= 140, aborted


def test_fault_injection_for_one_consumer(tp):
    assert get(tp, "/per-consumer/x", headers=[("apikey", "k-alice")]).status == 200
    resp = get(tp, "/per-consumer/x", headers=[("apikey", "k-carol")])
    assert (resp.status, resp.body) == (429, b"carol")
    assert get(tp, "/per-consumer/x").status == 401  # authentication first


def test_fault_injection_delay(tp):
    start = time.monotonic()
    resp = get(tp, "/delay/x")
    assert resp.status == 200
    assert time.monotonic() - start >= 0.3


@pytest.mark.parametrize("conf,message", [
    ({}, "conf: give abort, delay or both"),
    ({"abort": {"percentage": 10}}, "conf.abort.http_status: required"),
    ({"abort": {"http_status": 503, "percentage": 101}}, "conf.abort.percentage: expected at most 100, got 101"),
    ({"delay": {"duration": -1}}, "conf.delay.duration: expected at least 0, got -1"),
])
def test_fault_injection_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    assert_config_error(turnpike_bin, tmp_path, origin, {"fault-injection": conf}, message)
