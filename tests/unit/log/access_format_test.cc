// Access log formatting: the text line, and JSON that stays valid whatever bytes a client sends.
#include "access_format.h"

#include <gtest/gtest.h>

namespace turnpike::log {
namespace {

using namespace std::chrono;

std::string text(const AccessRecord& r) {
  fmt::memory_buffer b;
  detail::format_access_text(r, b);
  return fmt::to_string(b);
}

std::string json(const AccessRecord& r) {
  fmt::memory_buffer b;
  detail::format_access_json(r, b);
  return fmt::to_string(b);
}

std::string json_string(std::string_view s) {
  fmt::memory_buffer b;
  detail::append_json_string(s, b);
  return fmt::to_string(b);
}

// 2026-11-23T10:00:00.123Z
system_clock::time_point sample_time() {
  return system_clock::time_point(seconds(1795428000)) + milliseconds(123);
}

AccessRecord proxied() {
  AccessRecord r;
  r.remote_addr = "127.0.0.1:5000";
  r.start = sample_time();
  r.method = "GET";
  r.target = "/x";
  r.protocol = "HTTP/1.1";
  r.host = "api.example.com";
  r.status = 200;
  r.request_bytes = 3;
  r.response_bytes = 12;
  r.duration_us = 1500;
  r.route = "api";
  r.upstream_addr = "127.0.0.1:9001";
  r.upstream_status = 200;
  r.upstream_duration_us = 1200;
  r.user_agent = "ua";
  r.referer = "referer";
  return r;
}

TEST(AccessText, ProxiedRequest) {
  EXPECT_EQ(text(proxied()),
            "127.0.0.1:5000 - [2026-11-23T10:00:00.123Z] \"GET /x HTTP/1.1\" 200 12 \"referer\" "
            "\"ua\" rt=0.001 route=api upstream=127.0.0.1:9001 ustatus=200 urt=0.001 err=-");
}

TEST(AccessText, EmptyFieldsPrintAsDash) {
  AccessRecord r;
  r.start = sample_time();
  r.status = 400;
  r.duration_us = 2'345'678;
  r.error = "bad_request";
  EXPECT_EQ(text(r),
            "- - [2026-11-23T10:00:00.123Z] \"-\" 400 0 \"-\" \"-\" rt=2.345 route=- upstream=- "
            "ustatus=- urt=- err=bad_request");
}

TEST(AccessText, ClientBytesCannotForgeLinesOrFields) {
  AccessRecord r = proxied();
  r.target = "/a\"b\\c\r\nd\xff";
  r.user_agent = "x\" rt=9";
  std::string line = text(r);
  EXPECT_NE(line.find("\"GET /a\\x22b\\x5cc\\x0d\\x0ad\\xff HTTP/1.1\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"x\\x22 rt=9\""), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(AccessJson, ProxiedRequest) {
  EXPECT_EQ(json(proxied()),
            "{\"time\":\"2026-11-23T10:00:00.123Z\",\"remote_addr\":\"127.0.0.1:5000\","
            "\"client_ip\":\"127.0.0.1\",\"client_port\":5000,\"method\":\"GET\",\"target\":\"/x\",\"protocol\":\"HTTP/1.1\","
            "\"host\":\"api.example.com\",\"status\":200,\"request_bytes\":3,"
            "\"response_bytes\":12,\"duration_us\":1500,\"route\":\"api\","
            "\"upstream_addr\":\"127.0.0.1:9001\",\"upstream_status\":200,\"upstream_statuses\":\"200\","
            "\"upstream_duration_us\":1200,\"user_agent\":\"ua\",\"referer\":\"referer\","
            "\"error\":\"\"}");
}

// Every node a request tried, like nginx's $upstream_addr and $upstream_status: a node that
// refused the connection (502), one that timed out (504), then the one that answered.
AccessRecord retried(const UpstreamTries& tries) {
  AccessRecord r = proxied();
  r.upstream_addr = "10.0.0.3:80";
  r.upstream_tries = tries.view();
  return r;
}

UpstreamTries three_tries() {
  UpstreamTries t;
  t.begin("10.0.0.1:80");
  t.end(502);
  t.begin("10.0.0.2:80");
  t.end(504);
  t.begin("10.0.0.3:80");
  t.end(200);
  return t;
}

// The client's address and port as separate fields; an address without a port (real_ip) has no
// client_port, and an IPv6 address is not split at one of its own colons.
TEST(AccessJson, ClientAddressAndPortAreSeparateFields) {
  AccessRecord r = proxied();
  auto has = [&](const char* addr, const char* want) {
    r.remote_addr = addr;
    const std::string line = json(r);
    EXPECT_NE(line.find(want), std::string::npos) << line;
    return line;
  };
  EXPECT_NE(has("2001:db8::7:51234", "\"client_ip\":\"2001:db8::7\",\"client_port\":51234,").size(), 0u);
  EXPECT_EQ(has("198.51.100.9", "\"client_ip\":\"198.51.100.9\",\"method\"").find("client_port"), std::string::npos);
  EXPECT_EQ(has("2001:db8::1", "\"client_ip\":\"2001:db8::1\",\"method\"").find("client_port"), std::string::npos);
}

TEST(AccessText, EveryUpstreamTryIsListed) {
  const UpstreamTries tries = three_tries();
  std::string line = text(retried(tries));
  EXPECT_NE(line.find(" upstream=10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 ustatus=502,504,200 urt=0.001 "),
            std::string::npos)
      << line;
}

TEST(AccessJson, EveryUpstreamTryIsListed) {
  const UpstreamTries tries = three_tries();
  std::string line = json(retried(tries));
  EXPECT_NE(line.find("\"upstream_addr\":\"10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:80\",\"upstream_status\":200,"
                      "\"upstream_statuses\":\"502, 504, 200\","),
            std::string::npos)
      << line;
}

TEST(AccessText, ATryWithoutOutcomePrintsAsDash) {
  UpstreamTries tries;
  tries.begin("10.0.0.1:80");
  tries.end(502);
  tries.begin("10.0.0.2:80");  // the client left before this one ended
  AccessRecord r = retried(tries);
  r.upstream_status = 0;
  EXPECT_NE(text(r).find(" upstream=10.0.0.1:80,10.0.0.2:80 ustatus=502,- "), std::string::npos) << text(r);
}

TEST(UpstreamTriesList, KeepsTheLastTryWhenFull) {
  UpstreamTries tries;
  for (size_t i = 0; i < UpstreamTries::kCapacity + 3; ++i) {
    tries.begin(i + 1 == UpstreamTries::kCapacity + 3 ? "last:1" : "node:1");
    tries.end(502);
  }
  tries.end(200);
  ASSERT_EQ(tries.size(), UpstreamTries::kCapacity);
  EXPECT_EQ(tries.view().back().addr, "last:1");
  EXPECT_EQ(tries.view().back().status, 200);
  EXPECT_EQ(tries.view().front().addr, "node:1");
  tries = {};
  EXPECT_EQ(tries.size(), 0u);
}

TEST(JsonEscape, QuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(json_string("a\"b\\c"), R"("a\"b\\c")");
  EXPECT_EQ(json_string("\n\r\t\b\f"), R"("\n\r\t\b\f")");
  EXPECT_EQ(json_string(std::string_view("\x00\x01\x1f\x7f", 4)), R"("\u0000\u0001\u001f\u007f")");
  EXPECT_EQ(json_string(""), R"("")");
  EXPECT_EQ(json_string("/path?q=1&b=<x>"), R"("/path?q=1&b=<x>")");
}

TEST(JsonEscape, ValidUtf8PassesThrough) {
  EXPECT_EQ(json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");               // é
  EXPECT_EQ(json_string("\xe2\x82\xac"), "\"\xe2\x82\xac\"");              // €
  EXPECT_EQ(json_string("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");      // U+1F600
  EXPECT_EQ(json_string("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"");      // U+10FFFF
}

TEST(JsonEscape, InvalidUtf8BytesAreEscapedOneByOne) {
  EXPECT_EQ(json_string("\xff"), R"("\u00ff")");
  EXPECT_EQ(json_string("a\x80z"), R"("a\u0080z")");                     // lone continuation
  EXPECT_EQ(json_string("\xc3"), R"("\u00c3")");                         // truncated
  EXPECT_EQ(json_string("\xc0\xaf"), R"("\u00c0\u00af")");               // overlong '/'
  EXPECT_EQ(json_string("\xe0\x80\xaf"), R"("\u00e0\u0080\u00af")");     // overlong
  EXPECT_EQ(json_string("\xed\xa0\x80"), R"("\u00ed\u00a0\u0080")");     // surrogate
  EXPECT_EQ(json_string("\xf4\x90\x80\x80"), R"("\u00f4\u0090\u0080\u0080")");  // > U+10FFFF
  EXPECT_EQ(json_string("\xc3\xa9\xff\xc3\xa9"), "\"\xc3\xa9\\u00ff\xc3\xa9\"");
}

TEST(IsoTime, UtcWithMilliseconds) {
  fmt::memory_buffer b;
  detail::append_iso_time(system_clock::time_point(seconds(0)), b);
  b.push_back(' ');
  detail::append_iso_time(sample_time() + milliseconds(5), b);
  EXPECT_EQ(fmt::to_string(b), "1970-01-01T00:00:00.000Z 2026-11-23T10:00:00.128Z");
}

}  // namespace
}  // namespace turnpike::log
