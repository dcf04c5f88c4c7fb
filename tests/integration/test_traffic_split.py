"""The traffic-split plugin in the real binary: sticky percentages (exactly the users whose
Murmur3 bucket is below p x 100, computed here independently; raising p through a reload only adds
users), the missing-key fallback, rule matching on header, cookie, query, consumer and client
CIDR, weighted choices, the gray tag header (set, passed on, honoured), tagged-node preference
with fallback to untagged nodes, and the schema errors. The ±1% split over 100,000 keys is
checked on the hash itself in tests/unit/lua/lib_hash_test.cc, and here on 3,000 keys over HTTP."""
from __future__ import annotations

import pytest

import rawhttp
from harness import base_config, check_config, dump_yaml, upstream, ERROR_LINE
from origin import Origin, closed_port


def murmur3(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32, the reference traffic-split's buckets must agree with."""
    def rol(x, r):
        return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    n = len(data) // 4 * 4
    for i in range(0, n, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = rol((k * c1) & mask, 15) * c2 & mask
        h = (rol(h ^ k, 13) * 5 + 0xE6546B64) & mask
    k = int.from_bytes(data[n:], "little")
    if len(data) > n:
        h ^= rol((k * c1) & mask, 15) * c2 & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def bucket(key: str) -> int:
    return murmur3(key.encode()) % 10000


def test_the_reference_hash_has_the_published_values():
    assert murmur3(b"") == 0
    assert murmur3(b"", 1) == 0x514E28B7
    assert murmur3(b"hello") == 0x248BFA47
    assert murmur3(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723


def route(name, conf, up="stable", **extra):
    return {"name": name, "match": {"paths": [f"/{name}/*"]}, "upstream": up,
            "plugins": {"traffic-split": conf, **extra}}


@pytest.fixture(scope="module")
def canary_origin():
    o = Origin().start()
    yield o
    o.stop()


def split_rule(percentage, **extra):
    return {"rules": [{"split": {"key": {"header": "x-user-id"}, "percentage": percentage,
                                 "canary_upstream": "canary", **extra}}],
            "gray": {"canary_upstream": "canary"}}


def make_config(stable, canary, percentage=10):
    routes = [
        route("sticky", split_rule(percentage)),
        route("missing-canary", split_rule(50, missing="canary")),
        route("cookie-key", {"rules": [{"split": {"key": {"cookie": "uid"}, "percentage": 50,
                                                  "canary_upstream": "canary"}}]}),
        route("rules", {"rules": [
            {"match": [{"header": "x-beta", "value": "1"}], "upstreams": [{"upstream": "canary", "canary": True}]},
            {"match": [{"cookie": "beta"}], "upstreams": [{"upstream": "canary"}]},
            {"match": [{"query": "v", "value": "2"}, {"header": "x-and"}], "upstreams": [{"upstream": "canary"}]},
            {"match": [{"cidrs": ["10.0.0.0/8", "::1"]}], "upstreams": [{"upstream": "canary"}]},
        ]}),
        route("cidr", {"rules": [{"match": [{"cidrs": ["192.0.2.0/24", "127.0.0.0/8"]}],
                                  "upstreams": [{"upstream": "canary"}]}]}),
        route("consumer", {"rules": [{"match": [{"consumers": ["bob"]}], "upstreams": [{"upstream": "canary"}]}]},
              **{"key-auth": {}}),
        route("weighted", {"rules": [{"upstreams": [{"upstream": "canary", "weight": 1}, {"weight": 3}]}]}),
        route("honour-off", {"gray": {"honour": False}, "rules": []}),
        route("custom-tag", {"gray": {"header": "x-lane", "value": "blue"},
                             "rules": [{"upstreams": [{"upstream": "canary", "canary": True}]}]}),
        # The same upstream for both sides: the canary is its nodes tagged "canary".
        route("tagged", {"rules": [{"match": [{"header": "x-beta"}], "upstreams": [{"canary": True}]}]}, up="mixed"),
        route("tag-fallback", {"rules": [{"match": [{"header": "x-beta"}], "upstreams": [{"canary": True}]}]},
              up="mixed-dead-canary"),
        route("untagged-only", {"rules": [{"match": [{"header": "x-beta"}], "upstreams": [{"canary": True}]}]},
              up="stable"),
        route("all-tagged", {"rules": []}, up="all-tagged"),
    ]
    upstreams = [
        upstream("stable", [stable.address]),
        upstream("canary", [canary.address]),
        upstream("mixed", [stable.address, {"host": "127.0.0.1", "port": canary.port, "tags": ["canary"]}]),
        upstream("mixed-dead-canary", [stable.address, {"host": "127.0.0.1", "port": closed_port(),
                                                        "tags": ["canary", "other"]}], retries=1),
        upstream("all-tagged", [{"host": "127.0.0.1", "port": stable.port, "tags": ["blue"]}]),
    ]
    consumers = [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}},
                 {"username": "bob", "plugins": {"key-auth": {"key": "k-bob"}}}]
    return base_config(routes=routes, upstreams=upstreams, consumers=consumers)


@pytest.fixture(scope="module")
def tp(origin_module, canary_origin, turnpike_module):
    return turnpike_module(make_config(origin_module, canary_origin))


def went_to(origin, path):
    return [r for r in origin.snapshot() if r.path == path]


def send_all(tp, targets_headers):
    with rawhttp.HttpConn(tp.port()) as conn:
        for target, headers in targets_headers:
            resp = conn.request("GET", target, headers)
            assert resp.status == 200, resp


def canary_users(origin, canary, prefix, users):
    """The users (by path /prefix/<user>) the canary origin saw; every user seen exactly once."""
    on_canary = {r.path.rsplit("/", 1)[1] for r in canary.snapshot() if r.path.startswith(prefix)}
    on_stable = {r.path.rsplit("/", 1)[1] for r in origin.snapshot() if r.path.startswith(prefix)}
    assert on_canary | on_stable == set(users)
    assert not on_canary & on_stable
    return on_canary


def test_sticky_split_sends_exactly_the_low_buckets_and_raising_it_only_adds_users(
        origin, canary_origin, turnpike):
    canary_origin.reset()
    tp = turnpike(make_config(origin, canary_origin, percentage=10))
    users = [f"user-{i}" for i in range(3000)]
    send_all(tp, [(f"/sticky/p10/{u}", [("x-user-id", u)]) for u in users])
    at10 = canary_users(origin, canary_origin, "/sticky/p10/", users)
    assert at10 == {u for u in users if bucket(u) < 1000}
    assert abs(len(at10) / len(users) - 0.10) < 0.015  # 3,000 keys: ±1.5% (the unit test does ±1% on 100,000)

    tp.reload(make_config(origin, canary_origin, percentage=25.5))
    send_all(tp, [(f"/sticky/p25/{u}", [("x-user-id", u)]) for u in users])
    at25 = canary_users(origin, canary_origin, "/sticky/p25/", users)
    assert at25 == {u for u in users if bucket(u) < 2550}
    assert at10 <= at25  # nobody moved out of the canary
    assert abs(len(at25) / len(users) - 0.255) < 0.015


def test_the_split_is_the_same_on_every_connection_and_worker(tp, origin_module, canary_origin):
    users = [f"sticky-{i}" for i in range(40)]
    for round_ in range(3):
        for u in users:  # a connection per request: both workers answer
            with rawhttp.HttpConn(tp.port()) as conn:
                assert conn.request("GET", f"/sticky/r{round_}/{u}", [("x-user-id", u)]).status == 200
    for u in users:
        expected = canary_origin if bucket(u) < 1000 else origin_module
        for round_ in range(3):
            assert went_to(expected, f"/sticky/r{round_}/{u}"), (u, round_)


def test_a_cookie_can_be_the_key(tp, origin_module, canary_origin):
    users = [f"c{i}" for i in range(200)]
    send_all(tp, [(f"/cookie-key/{u}", [("cookie", f"theme=dark; uid={u}; x=1")]) for u in users])
    on_canary = canary_users(origin_module, canary_origin, "/cookie-key/", users)
    assert on_canary == {u for u in users if bucket(u) < 5000}


def test_requests_without_the_key_go_to_the_configured_side(tp, origin_module, canary_origin):
    send_all(tp, [("/sticky/nokey", []), ("/missing-canary/nokey", [])])
    assert went_to(origin_module, "/sticky/nokey")
    assert went_to(canary_origin, "/missing-canary/nokey")


def test_canary_requests_carry_the_tag_header_and_stable_ones_do_not(tp, origin_module, canary_origin):
    users = [f"tag-{i}" for i in range(100)]
    send_all(tp, [(f"/sticky/tag/{u}", [("x-user-id", u)]) for u in users])
    for r in canary_origin.snapshot():
        if r.path.startswith("/sticky/tag/"):
            assert r.header("x-gray") == "canary"
    stable = [r for r in origin_module.snapshot() if r.path.startswith("/sticky/tag/")]
    assert stable and all(r.header("x-gray") is None for r in stable)


def test_an_incoming_tag_is_honoured_and_passed_on(tp, origin_module, canary_origin):
    # A user whose bucket is stable still goes to the canary when the request is gray already.
    user = next(f"u{i}" for i in range(1000) if bucket(f"u{i}") >= 1000)
    send_all(tp, [("/sticky/honoured", [("x-user-id", user), ("x-gray", "canary")])])
    assert went_to(canary_origin, "/sticky/honoured")[0].header("x-gray") == "canary"
    # Not honoured: the request goes where it would, and the tag still passes on.
    send_all(tp, [("/honour-off/x", [("x-gray", "canary")])])
    assert went_to(origin_module, "/honour-off/x")[0].header("x-gray") == "canary"


def test_the_tag_header_and_value_are_configurable(tp, canary_origin):
    send_all(tp, [("/custom-tag/x", [])])
    seen = went_to(canary_origin, "/custom-tag/x")[0]
    assert seen.header("x-lane") == "blue" and seen.header("x-gray") is None


@pytest.mark.parametrize("path,headers,canary", [
    ("/rules/h1", [("x-beta", "1")], True),
    ("/rules/h2", [("x-beta", "0")], False),
    ("/rules/c1", [("cookie", "a=b; beta=yes")], True),
    ("/rules/c2", [("cookie", "abeta=yes")], False),
    ("/rules/q1?v=2", [("x-and", "1")], True),
    ("/rules/q2?v=2", [], False),            # both conditions of the rule must hold
    ("/rules/q3?v=3", [("x-and", "1")], False),
    ("/cidr/in", [], True),                   # 127.0.0.1 is in 127.0.0.0/8
    ("/rules/cidr-out", [], False),           # 127.0.0.1 is not in 10.0.0.0/8 nor ::1
])
def test_rules_match_on_header_cookie_query_and_client_cidr(tp, origin_module, canary_origin, path, headers, canary):
    send_all(tp, [(path, headers)])
    bare = path.split("?")[0]
    assert bool(went_to(canary_origin, bare)) == canary
    assert bool(went_to(origin_module, bare)) != canary


def test_rules_match_on_the_consumer(tp, origin_module, canary_origin):
    send_all(tp, [("/consumer/bob", [("apikey", "k-bob")]), ("/consumer/alice", [("apikey", "k-alice")])])
    assert went_to(canary_origin, "/consumer/bob")
    assert went_to(origin_module, "/consumer/alice")


def test_weighted_choices_follow_their_weights(tp, origin_module, canary_origin):
    send_all(tp, [(f"/weighted/{i}", []) for i in range(40)])  # one connection: one worker's rotation
    on_canary = [r for r in canary_origin.snapshot() if r.path.startswith("/weighted/")]
    on_stable = [r for r in origin_module.snapshot() if r.path.startswith("/weighted/")]
    assert (len(on_canary), len(on_stable)) == (10, 30)


def test_tagged_requests_prefer_tagged_nodes_and_others_untagged_ones(tp, origin_module, canary_origin):
    send_all(tp, [(f"/tagged/beta{i}", [("x-beta", "1")]) for i in range(6)] +
             [(f"/tagged/plain{i}", []) for i in range(6)])
    for i in range(6):
        assert went_to(canary_origin, f"/tagged/beta{i}"), i    # the node tagged canary
        assert went_to(origin_module, f"/tagged/plain{i}"), i   # never the canary node
        assert went_to(canary_origin, f"/tagged/beta{i}")[0].header("x-gray") == "canary"


def test_a_tagged_request_falls_back_to_untagged_nodes(tp, origin_module):
    # The canary node refuses connections: the request goes on to the untagged node.
    send_all(tp, [("/tag-fallback/x", [("x-beta", "1")])])
    assert went_to(origin_module, "/tag-fallback/x")
    # No node carries the tag: untagged nodes serve it.
    send_all(tp, [("/untagged-only/x", [("x-beta", "1")])])
    assert went_to(origin_module, "/untagged-only/x")


def test_an_untagged_request_is_served_when_every_node_is_tagged(tp, origin_module):
    send_all(tp, [("/all-tagged/x", [])])
    assert went_to(origin_module, "/all-tagged/x")


# ---- schema and config errors -------------------------------------------------------------------

def errors_of(turnpike_bin, tmp_path, cfg):
    path = tmp_path / "bad.yaml"
    path.write_text(dump_yaml(cfg))
    out = check_config(turnpike_bin, path)
    assert out.returncode != 0, out
    return [m.group("message") for m in ERROR_LINE.finditer(out.stderr)]


@pytest.mark.parametrize("conf,message", [
    ({"rules": [{"split": {"key": {"header": "u"}, "percentage": 12.345}}]},
     "conf.rules[1].split.percentage: at most two decimals (10,000 buckets)"),
    ({"rules": [{"split": {"key": {"header": "u"}, "percentage": 101}}]},
     "conf.rules[1].split.percentage: expected at most 100, got 101"),
    ({"rules": [{"split": {"key": {}, "percentage": 5}}]},
     "conf.rules[1].split.key: give one of header, cookie, query, consumer, client_ip"),
    ({"rules": [{"split": {"key": {"header": "u", "cookie": "c"}, "percentage": 5}}]},
     "conf.rules[1].split.key: give only one of header and cookie"),
    ({"rules": [{"upstreams": [{"upstream": "a"}], "split": {"key": {"header": "u"}, "percentage": 5}}]},
     "conf.rules[1]: give exactly one of upstreams and split"),
    ({"rules": [{"match": [{"header": "a", "query": "b"}], "upstreams": [{}]}]},
     "conf.rules[1].match[1]: give only one of header and query"),
    ({"rules": [{"match": [{"cidrs": ["10.0.0.0/33"]}], "upstreams": [{}]}]},
     'conf.rules[1].match[1].cidrs[1]: "10.0.0.0/33": an IPv4 prefix length is at most 32'),
    ({"rules": [{"match": [{"consumers": ["a"], "value": "x"}], "upstreams": [{}]}]},
     "conf.rules[1].match[1].value: only with header, cookie or query"),
    ({"rules": [{"upstreams": [{"weight": 0}]}]}, "conf.rules[1].upstreams: the weights add up to 0"),
    ({"gray": {"value": "can ary"}}, 'conf.gray.value: does not match the pattern "^[A-Za-z0-9._-]+$"'),
    ({"rules": [{"upstreams": [{"upstream": "a", "wieght": 2}]}]}, "conf.rules[1].upstreams[1].wieght: unknown property"),
])
def test_schema_errors(turnpike_bin, tmp_path, origin, conf, message):
    cfg = base_config(origin, routes=[{"name": "r", "match": {"paths": ["/*"]}, "upstream": "origin",
                                       "plugins": {"traffic-split": conf}}])
    errors = errors_of(turnpike_bin, tmp_path, cfg)
    assert f'route "r": plugin "traffic-split": {message}' in errors, errors


@pytest.mark.parametrize("node,message", [
    ({"host": "127.0.0.1", "port": 1, "tags": ["bad tag"]},
     'nodes[1].tags: "bad tag" is not a tag (1 to 64 letters, digits, \'.\', \'_\' or \'-\')'),
    ({"host": "127.0.0.1", "port": 1, "tags": "canary"}, "nodes[1].tags: expected a list"),
])
def test_node_tag_errors(turnpike_bin, tmp_path, node, message):
    cfg = base_config(upstreams=[upstream("u", [node])],
                      routes=[{"name": "r", "match": {"paths": ["/*"]}, "upstream": "u"}])
    errors = errors_of(turnpike_bin, tmp_path, cfg)
    assert any(message in e for e in errors), errors
