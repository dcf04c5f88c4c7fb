// Configured access log fields (log.access_fields): each variable's text and JSON form, per-try
// lists aligned, escaping, and a JSON line that stays valid.
#include <gtest/gtest.h>

#include "access_format.h"

namespace turnpike::log {
namespace {

using config::AccessField;
using config::AccessVar;
using namespace std::chrono;

AccessField var(AccessVar v, std::string key, std::string text = {}) { return AccessField{v, std::move(text), std::move(key)}; }
AccessField lit(std::string text) { return AccessField{AccessVar::literal, std::move(text), {}}; }

std::string line(const std::vector<AccessField>& fields, bool json, const AccessRecord& r) {
  fmt::memory_buffer b;
  detail::format_access_fields(fields, json, r, b);
  return fmt::to_string(b);
}

std::vector<http::Header> request_headers() {
  return {{"User-Agent", "probe \"1\""}, {"X-Trace", "t\n1"}};
}

AccessRecord record(const std::vector<http::Header>& headers, const UpstreamTries& tries) {
  AccessRecord r;
  r.remote_addr = "10.1.2.3:5000";
  r.start = system_clock::time_point(seconds(1795428000)) + milliseconds(123);
  r.method = "GET";
  r.target = "/x?y=1";
  r.protocol = "HTTP/1.1";
  r.host = "api.test";
  r.scheme = "https";
  r.status = 200;
  r.request_bytes = 5;
  r.response_bytes = 12;
  r.duration_us = 25'400;
  r.route = "api";
  r.upstream_addr = "10.0.0.2:80";
  r.upstream_status = 200;
  r.upstream_tries = tries.view();
  r.ssl_protocol = "TLSv1.3";
  r.ssl_cipher = "TLS_AES_128_GCM_SHA256";
  r.headers = headers;
  return r;
}

// A refused first node (4 ms, 3 of them connecting), then an answer (16 ms), timed the way the
// pipeline does. end() reads the clock itself, so the second try starts now.
UpstreamTries two_tries() {
  UpstreamTries t;
  const auto second = UpstreamTry::Clock::now();
  t.begin("10.0.0.1:80", second - milliseconds(4));
  t.end(502);
  t.finish(false, milliseconds(3), second);
  t.begin("10.0.0.2:80", second);
  t.end(200);
  t.finish(true, {}, second + milliseconds(16));
  return t;
}

TEST(AccessFields, TextVariablesAndLiterals) {
  const auto headers = request_headers();
  const UpstreamTries tries;
  const std::vector<AccessField> f = {
      var(AccessVar::remote_addr, "remote_addr"), lit(" "), var(AccessVar::remote_port, "remote_port"),
      lit(" ["), var(AccessVar::time_iso8601, "time_iso8601"), lit("] \""), var(AccessVar::request, "request"),
      lit("\" "), var(AccessVar::status, "status"), lit(" "), var(AccessVar::request_time, "request_time"),
      lit(" "), var(AccessVar::ssl_protocol, "ssl_protocol"), lit(" "), var(AccessVar::consumer, "consumer"),
      lit(" \""), var(AccessVar::http_header, "http_user_agent", "user-agent"), lit("\" "),
      var(AccessVar::http_header, "http_x_trace", "x-trace"), lit(" "), var(AccessVar::msec, "msec")};
  EXPECT_EQ(line(f, false, record(headers, tries)),
            "10.1.2.3 5000 [2026-11-23T10:00:00.123Z] \"GET /x?y=1 HTTP/1.1\" 200 0.025 TLSv1.3 - "
            "\"probe \\x221\\x22\" t\\x0a1 1795428000.123");
}

TEST(AccessFields, TriesAreAlignedListsInText) {
  const auto headers = request_headers();
  const UpstreamTries tries = two_tries();
  const std::vector<AccessField> f = {
      var(AccessVar::upstream_addr, "upstream_addr"), lit(" "), var(AccessVar::upstream_status, "upstream_status"),
      lit(" "), var(AccessVar::upstream_connect_time, "upstream_connect_time"), lit(" "),
      var(AccessVar::upstream_header_time, "upstream_header_time"), lit(" "),
      var(AccessVar::upstream_response_time, "upstream_response_time")};
  const std::string text = line(f, false, record(headers, tries));
  // (The answered try's header time is what the clock says between begin() and end(): a few µs.)
  EXPECT_TRUE(text.starts_with("10.0.0.1:80,10.0.0.2:80 502,200 0.003,0.000 -,0.00")) << text;
  EXPECT_TRUE(text.ends_with(" 0.004,0.016")) << text;
}

TEST(AccessFields, JsonUsesTheNamesAsKeysAndArraysForTries) {
  const auto headers = request_headers();
  const UpstreamTries tries = two_tries();
  const std::vector<AccessField> f = {
      var(AccessVar::remote_addr, "remote_addr"), var(AccessVar::remote_port, "remote_port"),
      var(AccessVar::status, "status"), var(AccessVar::request_time, "request_time"),
      var(AccessVar::upstream_status, "upstream_status"),
      var(AccessVar::upstream_connect_time, "upstream_connect_time"),
      var(AccessVar::http_header, "http_x_trace", "x-trace"), var(AccessVar::request_id, "request_id"),
      var(AccessVar::request, "request")};
  EXPECT_EQ(line(f, true, record(headers, tries)),
            "{\"remote_addr\":\"10.1.2.3\",\"remote_port\":5000,\"status\":200,\"request_time\":0.025,"
            "\"upstream_status\":[502,200],\"upstream_connect_time\":[0.003,0.000],\"http_x_trace\":\"t\\n1\","
            "\"request_id\":\"\",\"request\":\"GET /x?y=1 HTTP/1.1\"}");
}

TEST(AccessFields, WithoutPortOrTriesJsonSaysNullAndEmpty) {
  const std::vector<http::Header> headers;
  const UpstreamTries tries;
  AccessRecord r = record(headers, tries);
  r.remote_addr = "192.0.2.7";  // real_ip: no port
  r.upstream_addr = {};
  const std::vector<AccessField> f = {var(AccessVar::remote_port, "remote_port"),
                                      var(AccessVar::upstream_addr, "upstream_addr"),
                                      var(AccessVar::http_header, "http_referer", "referer")};
  EXPECT_EQ(line(f, true, r), "{\"remote_port\":null,\"upstream_addr\":[],\"http_referer\":\"\"}");
  const std::vector<AccessField> t = {var(AccessVar::remote_port, "remote_port"), lit(" "),
                                      var(AccessVar::upstream_addr, "upstream_addr")};
  EXPECT_EQ(line(t, false, r), "- -");
}

TEST(AccessFields, RecordWithoutTriesListsItsOneNode) {
  const std::vector<http::Header> headers;
  const UpstreamTries tries;
  const std::vector<AccessField> f = {var(AccessVar::upstream_addr, "upstream_addr"),
                                      var(AccessVar::upstream_status, "upstream_status"),
                                      var(AccessVar::upstream_header_time, "upstream_header_time")};
  EXPECT_EQ(line(f, true, record(headers, tries)),
            "{\"upstream_addr\":[\"10.0.0.2:80\"],\"upstream_status\":[200],\"upstream_header_time\":[null]}");
}

}  // namespace
}  // namespace turnpike::log
