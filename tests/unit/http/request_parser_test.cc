// Request head parser: valid requests of each kind, one test per ParseError, and feeding
// byte by byte giving the same answer as feeding at once.
#include <gtest/gtest.h>

#include <string>

#include "http_test_util.h"
#include "turnpike/http/parser.h"

namespace turnpike::http {
namespace {

using test::find_header;
using test::parse_request;
using test::parse_request_bytewise;
using test::request_error;

// ---------------------------------------------------------------------------------------------
// Valid requests
// ---------------------------------------------------------------------------------------------

TEST(RequestParser, ParsesSimpleGet) {
  const std::string msg = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n";
  const auto r = parse_request(msg);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.method, Method::get);
  EXPECT_EQ(r.head.method_name, "GET");
  EXPECT_EQ(r.head.target, "/index.html?q=1");
  EXPECT_EQ(r.head.version_minor, 1);
  EXPECT_EQ(r.head.host, "example.com");
  EXPECT_EQ(r.head.framing, BodyFraming::none);
  EXPECT_TRUE(r.head.keep_alive);
  EXPECT_FALSE(r.head.expect_continue);
  EXPECT_FALSE(r.head.upgrade);
  EXPECT_EQ(r.head.head_length, msg.size());
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].name, "Host");
}

TEST(RequestParser, ViewsPointIntoTheCallersBuffer) {
  const auto r = parse_request("PUT /a HTTP/1.1\r\nHost: h\r\nX-A: b\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  const std::string& msg = *r.input;
  const char* begin = msg.data();
  const char* end = msg.data() + msg.size();
  for (const Header& h : r.headers) {
    EXPECT_TRUE(h.name.data() >= begin && h.name.data() + h.name.size() <= end);
    EXPECT_TRUE(h.value.data() >= begin && h.value.data() + h.value.size() <= end);
  }
  EXPECT_EQ(r.head.target.data(), msg.data() + 4);
}

TEST(RequestParser, ReportsIncompleteUntilTheEmptyLine) {
  const std::string msg = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (size_t n = 0; n < msg.size(); ++n) {
    EXPECT_EQ(parse_request(msg.substr(0, n)).status, ParseStatus::incomplete) << n;
  }
}

TEST(RequestParser, HeadLengthStopsBeforeTheBody) {
  const std::string msg = "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET";
  const auto r = parse_request(msg);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.framing, BodyFraming::content_length);
  EXPECT_EQ(r.head.content_length, 5u);
  EXPECT_EQ(msg.substr(r.head.head_length), "helloGET");
}

TEST(RequestParser, ContentLengthZeroIsContentLengthFraming) {
  const auto r = parse_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.framing, BodyFraming::content_length);
  EXPECT_EQ(r.head.content_length, 0u);
}

TEST(RequestParser, AcceptsIdenticalContentLengthListAndRepeats) {
  auto r = parse_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7, 7 ,7\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.content_length, 7u);
  r = parse_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 07\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.content_length, 7u);
}

TEST(RequestParser, AcceptsLargestContentLength) {
  const auto r =
      parse_request("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.content_length, UINT64_MAX);
}

TEST(RequestParser, ChunkedTransferEncodingIsCaseInsensitive) {
  for (const char* te : {"chunked", "Chunked", "CHUNKED", "  chunked  "}) {
    const auto r = parse_request(std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") +
                                 te + "\r\n\r\n");
    ASSERT_EQ(r.status, ParseStatus::complete) << te;
    EXPECT_EQ(r.head.framing, BodyFraming::chunked) << te;
  }
}

TEST(RequestParser, Http10WithoutHostDefaultsToClose) {
  const auto r = parse_request("GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.version_minor, 0);
  EXPECT_EQ(r.head.host, "");
  EXPECT_FALSE(r.head.keep_alive);
}

TEST(RequestParser, Http10KeepAliveToken) {
  auto r = parse_request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.head.keep_alive);
  r = parse_request("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.keep_alive);
}

TEST(RequestParser, Http11ConnectionCloseAcrossFieldsAndLists) {
  auto r = parse_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.keep_alive);
  r = parse_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.keep_alive);
  r = parse_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.head.keep_alive);
}

TEST(RequestParser, UpgradeNeedsConnectionTokenAndUpgradeField) {
  auto r = parse_request(
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.head.upgrade);
  r = parse_request("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.upgrade);
  r = parse_request("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.upgrade);
}

TEST(RequestParser, ExpectContinueIsCaseInsensitive) {
  const auto r = parse_request(
      "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_TRUE(r.head.expect_continue);
  EXPECT_FALSE(r.head.unknown_expectation);
}

TEST(RequestParser, OtherExpectationIsFlaggedUnknown) {
  const auto r = parse_request("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.expect_continue);
  EXPECT_TRUE(r.head.unknown_expectation);
}

TEST(RequestParser, ExpectContinueIsIgnoredInHttp10) {
  const auto r = parse_request("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_FALSE(r.head.expect_continue);
}

TEST(RequestParser, AcceptsEveryTargetForm) {
  auto r = parse_request("GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.target, "http://example.com/a?b");
  r = parse_request("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.method, Method::connect);
  EXPECT_EQ(r.head.target, "example.com:443");
  r = parse_request("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.target, "*");
}

TEST(RequestParser, KeepsUnknownMethodSpelling) {
  const auto r = parse_request("PROPFIND /d HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.method, Method::other);
  EXPECT_EQ(r.head.method_name, "PROPFIND");
  EXPECT_EQ(parse_request("get / HTTP/1.1\r\nHost: a\r\n\r\n").head.method, Method::other);
}

TEST(RequestParser, TrimsOwsAroundValuesAndKeepsInnerSpace) {
  const auto r =
      parse_request("GET / HTTP/1.1\r\nHost:a\r\nX-A: \t one  two \t\r\nX-Empty:\r\nX-Sp:   \r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(find_header(r.headers, "Host"), "a");
  EXPECT_EQ(find_header(r.headers, "X-A"), "one  two");
  EXPECT_EQ(find_header(r.headers, "X-Empty"), "");
  EXPECT_EQ(find_header(r.headers, "X-Sp"), "");
}

TEST(RequestParser, AcceptsObsTextInValues) {
  const auto r = parse_request("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(find_header(r.headers, "X-Name"), "caf\xc3\xa9");
}

TEST(RequestParser, KeepsHeaderOrderAndCase) {
  const auto r = parse_request("GET / HTTP/1.1\r\nhOsT: a\r\nB: 1\r\nA: 2\r\nB: 3\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  ASSERT_EQ(r.headers.size(), 4u);
  EXPECT_EQ(r.headers[0].name, "hOsT");
  EXPECT_EQ(r.headers[1].value, "1");
  EXPECT_EQ(r.headers[2].name, "A");
  EXPECT_EQ(r.headers[3].value, "3");
}

TEST(RequestParser, SkipsEmptyLinesBeforeTheRequestLine) {
  const std::string msg = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const auto r = parse_request(msg);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.method, Method::get);
  EXPECT_EQ(r.head.head_length, msg.size());
  EXPECT_EQ(parse_request_bytewise(msg).head.head_length, msg.size());
}

TEST(RequestParser, AcceptsEmptyHostInHttp11) {
  // RFC 9112 §3.2: a client sends an empty Host when the target URI has no authority.
  const auto r = parse_request("GET / HTTP/1.1\r\nHost:\r\n\r\n");
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.host, "");
}

TEST(RequestParser, AcceptsHostWithPortAndIpLiterals) {
  for (const char* host : {"example.com:8080", "127.0.0.1", "[::1]:443", "[2001:db8::7]", "a_b"}) {
    const auto r = parse_request(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n");
    ASSERT_EQ(r.status, ParseStatus::complete) << host;
    EXPECT_EQ(r.head.host, host);
  }
}

TEST(RequestParser, ReusesTheHeadersVector) {
  std::vector<Header> headers;
  headers.reserve(16);
  const Header* storage = headers.data();
  RequestHead head;
  ParseError err;
  for (int i = 0; i < 3; ++i) {
    const std::string msg = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::to_string(i) + "\r\n\r\n";
    ParseState state;
    ASSERT_EQ(parse_request_head(msg.data(), msg.size(), {}, state, head, headers, err),
              ParseStatus::complete);
    EXPECT_EQ(headers.size(), 2u);
    EXPECT_EQ(headers.data(), storage);
  }
}

TEST(RequestParser, RepeatedCallAfterCompleteGivesTheSameHead) {
  const std::string msg = "GET /x HTTP/1.1\r\nHost: a\r\n\r\nbody";
  ParseState state;
  RequestHead head;
  std::vector<Header> headers;
  ParseError err;
  ASSERT_EQ(parse_request_head(msg.data(), msg.size(), {}, state, head, headers, err),
            ParseStatus::complete);
  const size_t first = head.head_length;
  ASSERT_EQ(parse_request_head(msg.data(), msg.size(), {}, state, head, headers, err),
            ParseStatus::complete);
  EXPECT_EQ(head.head_length, first);
  EXPECT_EQ(head.target, "/x");
}

// ---------------------------------------------------------------------------------------------
// One test per ParseError
// ---------------------------------------------------------------------------------------------

std::string with_host(const std::string& request_line) {
  return request_line + "\r\nHost: a\r\n\r\n";
}

TEST(RequestParserErrors, MalformedRequestLineIsBadRequestLine) {
  for (const char* line : {"GET  / HTTP/1.1", "GET /  HTTP/1.1", " GET / HTTP/1.1", "GET /",
                           "GET", "GET / HTTP/1.1 ", "GET\t/ HTTP/1.1", "GET / http/1.1",
                           "GET / HTTP/1.1 extra", "GET /a b HTTP/1.1"}) {
    EXPECT_EQ(request_error(with_host(line)), ParseError::bad_request_line) << line;
  }
}

TEST(RequestParserErrors, NonTokenMethodIsBadMethod) {
  for (const char* line : {"G(ET / HTTP/1.1", "GE@T / HTTP/1.1", "GET\x01 / HTTP/1.1",
                           "G\xc3\xa9T / HTTP/1.1"}) {
    EXPECT_EQ(request_error(with_host(line)), ParseError::bad_method) << line;
  }
}

TEST(RequestParserErrors, ControlOrNonAsciiTargetByteIsBadTarget) {
  for (const char* line : {"GET /a\x01 HTTP/1.1", "GET /a\tb HTTP/1.1", "GET /\x7f HTTP/1.1",
                           "GET /caf\xc3\xa9 HTTP/1.1", "GET /\x80 HTTP/1.1"}) {
    EXPECT_EQ(request_error(with_host(line)), ParseError::bad_target) << line;
  }
  EXPECT_EQ(request_error(with_host(std::string("GET /a\0b HTTP/1.1", 18))), ParseError::bad_target);
}

TEST(RequestParserErrors, OtherHttpVersionIsBadVersion) {
  for (const char* line : {"GET / HTTP/2.0", "GET / HTTP/1.2", "GET / HTTP/0.9", "GET / HTTP/11",
                           "GET / HTTP/1.10", "GET / HTTP/3"}) {
    EXPECT_EQ(request_error(with_host(line)), ParseError::bad_version) << line;
  }
}

TEST(RequestParserErrors, LongRequestLineIsUriTooLong) {
  const std::string long_line = "GET /" + std::string(9000, 'a') + " HTTP/1.1";
  EXPECT_EQ(request_error(with_host(long_line)), ParseError::uri_too_long);
  // Without its LF, too: the answer must not wait for bytes that may never come.
  const auto r = parse_request("GET /" + std::string(9000, 'a'));
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error, ParseError::uri_too_long);
  EXPECT_EQ(status_for(ParseError::uri_too_long), 414);
}

TEST(RequestParserErrors, HugeHeadWithoutEndIsHeaderSectionTooLarge) {
  std::string msg = "GET / HTTP/1.1\r\nHost: a\r\n";
  while (msg.size() < (1u << 20)) msg += "X-Filler: " + std::string(100, 'x') + "\r\n";
  ParserLimits limits;
  limits.max_headers = 1u << 20;
  const auto r = parse_request(msg, limits);
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error, ParseError::header_section_too_large);
  // Fed in pieces, it fails as soon as the limit is passed, not at the end.
  const auto b = parse_request_bytewise(msg, limits);
  EXPECT_EQ(b.error, ParseError::header_section_too_large);
  EXPECT_EQ(b.fed, limits.max_header_bytes);
  EXPECT_EQ(status_for(ParseError::header_section_too_large), 431);
}

TEST(RequestParserErrors, TooManyFieldsIsTooManyHeaders) {
  std::string msg = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 100; ++i) msg += "X: y\r\n";
  EXPECT_EQ(request_error(msg + "\r\n"), ParseError::too_many_headers);
  EXPECT_EQ(status_for(ParseError::too_many_headers), 431);
}

TEST(RequestParserErrors, NonTokenFieldNameIsBadHeaderName) {
  for (const char* field : {"Fo(o: x", ": x", "Foo x", "Foo", "Fo\"o: x", "F\xc3\xa9: x",
                            "Foo x: y", "X\x01: y"}) {
    EXPECT_EQ(request_error(std::string("GET / HTTP/1.1\r\nHost: a\r\n") + field + "\r\n\r\n"),
              ParseError::bad_header_name)
        << field;
  }
}

TEST(RequestParserErrors, ControlByteInValueIsBadHeaderValue) {
  for (std::string value : {std::string("a\0b", 3), std::string("a\x01"), std::string("\x7f"),
                            std::string("a\x1b[0m")}) {
    EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n"),
              ParseError::bad_header_value);
  }
}

TEST(RequestParserErrors, ValueBytesAreCheckedAtEveryPosition) {
  // Values are checked eight bytes at a time: put each byte at each offset of a long value.
  for (size_t at = 0; at < 24; ++at) {
    for (char bad : {'\0', '\x01', '\x1f', '\x7f', '\x0b'}) {
      std::string value(24, 'v');
      value[at] = bad;
      EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n"),
                ParseError::bad_header_value)
          << at << " " << int(bad);
    }
    for (char good : {'\t', ' ', '\x21', '\x7e', '\x80', '\xff'}) {
      std::string value(24, 'v');
      value[at] = good;
      const auto r = parse_request("GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n");
      EXPECT_EQ(r.status, ParseStatus::complete) << at << " " << int(good);
    }
    std::string value(24, 'v');
    value[at] = '\r';
    EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX: " + value + "\r\n\r\n"),
              ParseError::bare_cr);
  }
}

TEST(RequestParserErrors, WhitespaceBeforeColonIsSpaceBeforeColon) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), ParseError::space_before_colon);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX\t: b\r\n\r\n"),
            ParseError::space_before_colon);
}

TEST(RequestParserErrors, LineFoldingIsObsFold) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"), ParseError::obs_fold);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"), ParseError::obs_fold);
  // RFC 9112 §2.2: whitespace between the start line and the first field.
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), ParseError::obs_fold);
}

TEST(RequestParserErrors, CrWithoutLfIsBareCr) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), ParseError::bare_cr);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nX\r: a\r\n\r\n"), ParseError::bare_cr);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), ParseError::bare_cr);
  EXPECT_EQ(request_error("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), ParseError::bare_cr);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n"), ParseError::bare_cr);
}

TEST(RequestParserErrors, LfWithoutCrIsBareLf) {
  for (const char* msg : {"GET / HTTP/1.1\nHost: a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a\r\n\n", "\nGET / HTTP/1.1\r\n\r\n",
                          "GET / HTTP/1.1\n\n"}) {
    EXPECT_EQ(request_error(msg), ParseError::bare_lf) << msg;
  }
}

TEST(RequestParserErrors, Http11WithoutHostIsMissingHost) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nX: a\r\n\r\n"), ParseError::missing_host);
}

TEST(RequestParserErrors, SecondHostIsDuplicateHostEvenWhenIdentical) {
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
            ParseError::duplicate_host);
  EXPECT_EQ(request_error("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            ParseError::duplicate_host);
  EXPECT_EQ(request_error("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            ParseError::duplicate_host);
}

TEST(RequestParserErrors, InvalidHostValueIsBadHost) {
  for (const char* host : {"a b", "user@a", "a:", "a:99999", "a:8x", "[::g]", "[::1", "a/b",
                           "a%20b", "[v1.x]", "a,b", "a:1:2"}) {
    EXPECT_EQ(request_error(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n"),
              ParseError::bad_host)
        << host;
  }
}

TEST(RequestParserErrors, NonDecimalContentLengthIsBadContentLength) {
  for (const char* cl : {"abc", "", "-1", "+1", "1.0", "0x10", "1 2", "1,", ",1", "1,,1",
                         "18446744073709551616", "99999999999999999999999"}) {
    EXPECT_EQ(request_error(std::string("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ") + cl +
                            "\r\n\r\n"),
              ParseError::bad_content_length)
        << cl;
  }
}

TEST(RequestParserErrors, DifferingContentLengthsAreConflicting) {
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n"),
            ParseError::conflicting_content_length);
  EXPECT_EQ(
      request_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
      ParseError::conflicting_content_length);
}

TEST(RequestParserErrors, TransferEncodingWithContentLengthIsConflictingFraming) {
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                          "Content-Length: 5\r\n\r\n"),
            ParseError::conflicting_framing);
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"),
            ParseError::conflicting_framing);
}

TEST(RequestParserErrors, AnythingButOneFinalChunkedIsBadTransferEncoding) {
  for (const char* te : {"gzip", "chunked, gzip", "gzip, chunked", "chunked, chunked", "identity",
                         "", "chunked,", ", chunked", "chunked;x=1", "chunked x", "\"chunked\""}) {
    EXPECT_EQ(request_error(std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") + te +
                            "\r\n\r\n"),
              ParseError::bad_transfer_encoding)
        << te;
  }
  // Split across fields, the codings still count together.
  EXPECT_EQ(request_error("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"),
            ParseError::bad_transfer_encoding);
}

TEST(RequestParserErrors, TransferEncodingInHttp10IsTeInHttp10) {
  EXPECT_EQ(request_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::te_in_http10);
}

TEST(RequestParserErrors, StatusForRequestErrorsIs400) {
  for (ParseError e : {ParseError::bad_request_line, ParseError::bare_lf, ParseError::bad_host,
                       ParseError::conflicting_framing, ParseError::bad_version}) {
    EXPECT_EQ(status_for(e), 400) << to_string(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Feeding byte by byte
// ---------------------------------------------------------------------------------------------

TEST(RequestParser, BytewiseFeedingGivesTheSameHeadAsFeedingAtOnce) {
  const std::string messages[] = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "\r\nPOST /p?q HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\nX: y\r\n\r\nabc",
      "PATCH /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
  };
  for (const std::string& msg : messages) {
    const auto whole = parse_request(msg);
    const auto bytewise = parse_request_bytewise(msg);
    ASSERT_EQ(whole.status, ParseStatus::complete) << msg;
    ASSERT_EQ(bytewise.status, ParseStatus::complete) << msg;
    EXPECT_EQ(whole.head.head_length, bytewise.head.head_length);
    EXPECT_EQ(bytewise.fed, bytewise.head.head_length);
    EXPECT_EQ(whole.head.target, bytewise.head.target);
    EXPECT_EQ(whole.head.framing, bytewise.head.framing);
    EXPECT_EQ(whole.head.keep_alive, bytewise.head.keep_alive);
    ASSERT_EQ(whole.headers.size(), bytewise.headers.size());
    for (size_t i = 0; i < whole.headers.size(); ++i) {
      EXPECT_EQ(whole.headers[i].name, bytewise.headers[i].name);
      EXPECT_EQ(whole.headers[i].value, bytewise.headers[i].value);
    }
  }
}

TEST(RequestParser, IsHopByHopMatchesTheListCaseInsensitively) {
  for (const char* name : {"Connection", "keep-alive", "PROXY-CONNECTION", "te", "Transfer-Encoding",
                           "upgrade", "Trailer"}) {
    EXPECT_TRUE(is_hop_by_hop(name)) << name;
  }
  for (const char* name : {"Trailers", "Host", "Content-Length", "X-Connection", "", "t"}) {
    EXPECT_FALSE(is_hop_by_hop(name)) << name;
  }
}

}  // namespace
}  // namespace turnpike::http
