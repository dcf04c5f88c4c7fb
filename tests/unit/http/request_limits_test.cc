// Parser limits: exactly at each limit passes, one over fails, and the failure comes as soon as
// the limit cannot be met, before the head is complete.
#include <gtest/gtest.h>

#include <string>

#include "http_test_util.h"
#include "turnpike/http/parser.h"

namespace turnpike::http {
namespace {

using test::parse_request;
using test::parse_request_bytewise;
using test::request_error;

// A request line of exactly `length` bytes including its CRLF.
std::string request_line_of(size_t length) {
  const std::string fixed = "GET / HTTP/1.1\r\n";
  return "GET /" + std::string(length - fixed.size(), 'a') + " HTTP/1.1\r\n";
}

// A complete request head of exactly `length` bytes.
std::string head_of(size_t length) {
  const std::string start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  const std::string end = "\r\n\r\n";
  return start + std::string(length - start.size() - end.size(), 'v') + end;
}

TEST(RequestLimits, RequestLineAtTheLimitPasses) {
  ParserLimits limits;
  limits.max_request_line = 100;
  const std::string line = request_line_of(100);
  ASSERT_EQ(line.size(), 100u);
  EXPECT_EQ(request_error(line + "Host: a\r\n\r\n", limits), ParseError::none);
}

TEST(RequestLimits, RequestLineOneOverIsUriTooLong) {
  ParserLimits limits;
  limits.max_request_line = 100;
  EXPECT_EQ(request_error(request_line_of(101) + "Host: a\r\n\r\n", limits),
            ParseError::uri_too_long);
}

TEST(RequestLimits, IncompleteRequestLineFailsOnceItCannotFit) {
  ParserLimits limits;
  limits.max_request_line = 100;
  const std::string line = request_line_of(200);
  // 99 bytes: the LF could still be byte 100.
  EXPECT_EQ(parse_request(line.substr(0, 99), limits).status, ParseStatus::incomplete);
  const auto r = parse_request(line.substr(0, 100), limits);
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error, ParseError::uri_too_long);
  EXPECT_EQ(parse_request_bytewise(line, limits).fed, 100u);
}

TEST(RequestLimits, DefaultRequestLineLimitRejects9000BytesWithoutLf) {
  const auto r = parse_request("GET /" + std::string(8995, 'a'));
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error, ParseError::uri_too_long);
}

TEST(RequestLimits, LeadingEmptyLinesDoNotCountTowardsTheRequestLine) {
  ParserLimits limits;
  limits.max_request_line = 100;
  EXPECT_EQ(request_error("\r\n\r\n" + request_line_of(100) + "Host: a\r\n\r\n", limits),
            ParseError::none);
}

TEST(RequestLimits, HeadAtTheLimitPasses) {
  ParserLimits limits;
  limits.max_header_bytes = 200;
  const std::string head = head_of(200);
  ASSERT_EQ(head.size(), 200u);
  EXPECT_EQ(request_error(head, limits), ParseError::none);
  // Body bytes after the head do not count.
  const auto r = parse_request(head + std::string(1000, 'b'), limits);
  EXPECT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.head_length, 200u);
}

TEST(RequestLimits, HeadOneOverIsHeaderSectionTooLarge) {
  ParserLimits limits;
  limits.max_header_bytes = 200;
  EXPECT_EQ(request_error(head_of(201), limits), ParseError::header_section_too_large);
}

TEST(RequestLimits, IncompleteHeadFailsOnceItCannotFit) {
  ParserLimits limits;
  limits.max_header_bytes = 200;
  const std::string head = head_of(300);
  EXPECT_EQ(parse_request(head.substr(0, 199), limits).status, ParseStatus::incomplete);
  const auto r = parse_request(head.substr(0, 200), limits);
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error, ParseError::header_section_too_large);
}

TEST(RequestLimits, LeadingEmptyLinesCountTowardsTheHead) {
  ParserLimits limits;
  limits.max_header_bytes = 200;
  std::string crlfs;
  for (int i = 0; i < 100; ++i) crlfs += "\r\n";
  EXPECT_EQ(request_error(crlfs + "GET / HTTP/1.1\r\nHost: a\r\n\r\n", limits),
            ParseError::header_section_too_large);
}

std::string request_with_fields(size_t count) {
  std::string msg = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (size_t i = 1; i < count; ++i) msg += "X-" + std::to_string(i) + ": v\r\n";
  return msg + "\r\n";
}

TEST(RequestLimits, FieldCountAtTheLimitPasses) {
  const auto r = parse_request(request_with_fields(100));
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.headers.size(), 100u);
}

TEST(RequestLimits, FieldCountOneOverIsTooManyHeaders) {
  EXPECT_EQ(request_error(request_with_fields(101)), ParseError::too_many_headers);
  ParserLimits limits;
  limits.max_headers = 3;
  EXPECT_EQ(request_error(request_with_fields(3), limits), ParseError::none);
  EXPECT_EQ(request_error(request_with_fields(4), limits), ParseError::too_many_headers);
}

TEST(RequestLimits, TooManyFieldsFailsBeforeTheHeadEnds) {
  ParserLimits limits;
  limits.max_headers = 3;
  const std::string msg = request_with_fields(10);
  const auto r = parse_request_bytewise(msg, limits);
  EXPECT_EQ(r.error, ParseError::too_many_headers);
  EXPECT_LT(r.fed, msg.size());
}

}  // namespace
}  // namespace turnpike::http
