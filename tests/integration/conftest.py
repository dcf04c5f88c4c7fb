"""Fixtures for the integration tests: the test origin and a factory for turnpike processes.

    def test_x(origin, turnpike):
        tp = turnpike(base_config(origin))        # started, ready-file read
        resp = rawhttp.request(tp.port(), "GET", "/echo")

Every process a test starts is stopped at teardown (SIGTERM, then SIGKILL), and teardown fails
the test if the binary's stderr carries a sanitizer report.
"""
from __future__ import annotations

import itertools

import pytest

from harness import Turnpike, find_binary
from origin import Origin


@pytest.fixture(scope="session")
def turnpike_bin() -> str:
    path, why = find_binary()
    if path is None:
        pytest.skip(why)
    return path


def _origin():
    server = Origin().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def origin():
    yield from _origin()


@pytest.fixture(scope="module")
def origin_module():
    yield from _origin()


def _factory(binary, make_dir):
    started = []
    counter = itertools.count()

    def make(config, wait: bool = True, extra_args=()) -> Turnpike:
        tp = Turnpike(binary, make_dir(next(counter)), config, extra_args)
        started.append(tp)
        return tp.start(wait=wait)

    yield make
    reports = []
    for tp in started:
        tp.cleanup()
        report = tp.sanitizer_report()
        if report:
            reports.append(report)
    if reports:
        pytest.fail("sanitizer report in turnpike's stderr:\n" + "\n----\n".join(reports)[-20000:])


@pytest.fixture
def turnpike(turnpike_bin, tmp_path):
    """Factory: turnpike(config_dict) → a started Turnpike (function scope)."""
    yield from _factory(turnpike_bin, lambda i: tmp_path / f"tp{i}")


@pytest.fixture(scope="module")
def turnpike_module(turnpike_bin, tmp_path_factory):
    """Factory like `turnpike`, for processes shared by the tests of one module."""
    base = tmp_path_factory.mktemp("tp")
    yield from _factory(turnpike_bin, lambda i: base / f"tp{i}")
