"""gRPC end to end: a real gRPC client (Debian's python3-grpcio) → Turnpike (HTTP/2 cleartext
listener) → a real gRPC server (grpcio, h2c). Messages are raw bytes (no protobuf needed): the
generic handlers below echo, count and fail on request."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")

from harness import base_config, upstream  # noqa: E402

SERVICE = "turnpike.test.Echo"


def _unary(request: bytes, context):
    if request.startswith(b"fail:"):
        context.abort(grpc.StatusCode.NOT_FOUND, request[5:].decode())
    if request.startswith(b"sleep:"):
        time.sleep(float(request[6:]))
    context.set_trailing_metadata((("x-echo-trailer", "kept"),))
    return b"echo:" + request


def _server_stream(request: bytes, context):
    n = int(request)
    for i in range(n):
        yield b"part-%d" % i


def _client_stream(requests, context):
    total = 0
    count = 0
    for r in requests:
        total += len(r)
        count += 1
    return b"%d messages, %d bytes" % (count, total)


def _bidi(requests, context):
    for r in requests:
        yield b"pong:" + r


def _bidi_end_early(requests, context):
    first = next(requests)
    yield b"bye:" + first
    # Ends the call (status in trailers) while the client's request stream is still open.
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "enough")


class GrpcOrigin:
    def __init__(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
            "BidiEndEarly": grpc.stream_stream_rpc_method_handler(_bidi_end_early),
        }
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(grace=None)


@pytest.fixture(scope="module")
def grpc_origin():
    o = GrpcOrigin()
    yield o
    o.stop()


def grpc_config(port: int, **extra_upstream) -> dict:
    up = upstream("grpc", [f"127.0.0.1:{port}"], protocol="h2c", **extra_upstream)
    return base_config(upstreams=[up], routes=[{"name": "grpc", "match": {"paths": ["/*"]}, "upstream": "grpc"}])


@pytest.fixture(scope="module")
def gateway(turnpike_module, grpc_origin):
    tp = turnpike_module(grpc_config(grpc_origin.port))
    channel = grpc.insecure_channel(f"127.0.0.1:{tp.port()}")
    yield tp, channel
    channel.close()


def call(channel, kind: str, method: str):
    factory = {"uu": channel.unary_unary, "us": channel.unary_stream,
               "su": channel.stream_unary, "ss": channel.stream_stream}[kind]
    return factory(f"/{SERVICE}/{method}")


def test_unary_call_with_trailers(gateway):
    _, channel = gateway
    resp, info = call(channel, "uu", "Unary").with_call(b"hello", timeout=10)
    assert resp == b"echo:hello"
    assert info.code() == grpc.StatusCode.OK
    assert ("x-echo-trailer", "kept") in info.trailing_metadata()


def test_many_concurrent_unary_calls(gateway):
    _, channel = gateway
    stub = call(channel, "uu", "Unary")
    futs = [stub.future(b"n%d" % i, timeout=20) for i in range(200)]
    assert [f.result() for f in futs] == [b"echo:n%d" % i for i in range(200)]


def test_status_and_message_pass_through(gateway):
    _, channel = gateway
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "uu", "Unary")(b"fail:no such thing", timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert e.value.details() == "no such thing"


def test_server_streaming(gateway):
    _, channel = gateway
    parts = list(call(channel, "us", "ServerStream")(b"50", timeout=10))
    assert parts == [b"part-%d" % i for i in range(50)]


def test_client_streaming(gateway):
    _, channel = gateway
    msgs = [b"x" * 1000 for _ in range(100)]
    assert call(channel, "su", "ClientStream")(iter(msgs), timeout=10) == b"100 messages, 100000 bytes"


def test_bidi_streaming_ping_pong(gateway):
    """Each request is sent only after the previous answer arrived: the gateway must relay the
    response stream while the request stream is still open."""
    _, channel = gateway
    answers = []
    got = threading.Event()
    outbox = []
    lock = threading.Condition()

    def requests():
        for i in range(20):
            with lock:
                outbox.append(i)
            yield b"ping-%d" % i
            with lock:  # wait for the answer before sending the next one
                if not lock.wait_for(lambda: len(answers) > i, timeout=10):
                    return

    for r in call(channel, "ss", "Bidi")(requests(), timeout=30):
        with lock:
            answers.append(r)
            lock.notify_all()
    got.set()
    assert answers == [b"pong:ping-%d" % i for i in range(20)]


def test_bidi_server_ends_while_client_still_sends(gateway):
    """The server ends the call while the client keeps its request stream open: the status must
    reach the client at once (the gateway stops pumping the request body), not at the deadline."""
    _, channel = gateway
    release = threading.Event()

    def requests():
        yield b"hello"
        release.wait(timeout=30)  # keep the request stream open

    answers = []
    started = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as e:
            for r in call(channel, "ss", "BidiEndEarly")(requests(), timeout=20):
                answers.append(r)
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert answers == [b"bye:hello"]
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.details() == "enough"
    # The connection still serves calls.
    assert call(channel, "uu", "Unary")(b"after", timeout=10) == b"echo:after"


def test_bidi_client_cancels_mid_stream(gateway):
    """The client cancels a bidi call while the gateway pumps its request body: the gateway ends
    both sides cleanly and keeps serving."""
    _, channel = gateway
    release = threading.Event()

    def requests():
        yield b"one"
        release.wait(timeout=30)

    try:
        it = call(channel, "ss", "Bidi")(requests(), timeout=20)
        assert next(it) == b"pong:one"
        it.cancel()
        with pytest.raises(grpc.RpcError) as e:
            next(it)
        assert e.value.code() == grpc.StatusCode.CANCELLED
    finally:
        release.set()
    assert call(channel, "uu", "Unary")(b"after", timeout=10) == b"echo:after"


def test_deadline_exceeded_through_the_gateway(gateway):
    _, channel = gateway
    with pytest.raises(grpc.RpcError) as e:
        call(channel, "uu", "Unary")(b"sleep:3", timeout=0.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_gateway_errors_are_grpc_statuses(turnpike):
    from origin import closed_port
    tp = turnpike(grpc_config(closed_port(), retries=0))
    channel = grpc.insecure_channel(f"127.0.0.1:{tp.port()}")
    try:
        with pytest.raises(grpc.RpcError) as e:
            call(channel, "uu", "Unary")(b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
