// Response head parser: status lines, the framing rules of RFC 9112 §6.3, keep-alive.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "http_test_util.h"
#include "turnpike/http/parser.h"

namespace turnpike::http {
namespace {

using test::parse_response;
using test::response_error;

// A parsed head together with the bytes its views point into.
struct OwnedHead : ResponseHead {
  std::shared_ptr<const std::string> input;
};

OwnedHead response_ok(const std::string& msg, Method method = Method::get) {
  const auto r = parse_response(msg, method);
  EXPECT_EQ(r.status, ParseStatus::complete) << msg << " → " << to_string(r.error);
  EXPECT_EQ(response_error(msg, method), ParseError::none);
  OwnedHead h;
  static_cast<ResponseHead&>(h) = r.head;
  h.input = r.input;
  return h;
}

TEST(ResponseParser, ParsesStatusLineAndFields) {
  const std::string msg = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX: y\r\n\r\nabc";
  const auto r = parse_response(msg);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(r.head.status, 404);
  EXPECT_EQ(r.head.reason, "Not Found");
  EXPECT_EQ(r.head.version_minor, 1);
  EXPECT_EQ(r.head.framing, BodyFraming::content_length);
  EXPECT_EQ(r.head.content_length, 3u);
  EXPECT_TRUE(r.head.keep_alive);
  EXPECT_EQ(msg.substr(r.head.head_length), "abc");
  EXPECT_EQ(r.headers.size(), 2u);
}

TEST(ResponseParser, AcceptsEmptyOrMissingReason) {
  EXPECT_EQ(response_ok("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n").reason, "");
  EXPECT_EQ(response_ok("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n").status, 200);
  EXPECT_EQ(response_ok("HTTP/1.1 200 Fine \tthanks\r\nContent-Length: 0\r\n\r\n").reason,
            "Fine \tthanks");
  EXPECT_EQ(response_ok("HTTP/1.1 200 \xc3\xa9\r\nContent-Length: 0\r\n\r\n").reason,
            "\xc3\xa9");
}

TEST(ResponseParser, ContentLengthFraming) {
  const auto h = response_ok("HTTP/1.1 200 OK\r\nContent-Length: 10, 10\r\n\r\n");
  EXPECT_EQ(h.framing, BodyFraming::content_length);
  EXPECT_EQ(h.content_length, 10u);
}

TEST(ResponseParser, NoLengthMeansUntilCloseAndNoKeepAlive) {
  const auto h = response_ok("HTTP/1.1 200 OK\r\n\r\n");
  EXPECT_EQ(h.framing, BodyFraming::until_close);
  EXPECT_FALSE(h.keep_alive);
}

TEST(ResponseParser, ChunkedFinalMeansChunked) {
  EXPECT_EQ(response_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").framing,
            BodyFraming::chunked);
  const auto h = response_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                             "Transfer-Encoding: Chunked\r\n\r\n");
  EXPECT_EQ(h.framing, BodyFraming::chunked);
  EXPECT_TRUE(h.keep_alive);
}

TEST(ResponseParser, OtherFinalCodingMeansUntilClose) {
  for (const char* te : {"gzip", "chunked, gzip", "gzip;level=1"}) {
    const auto h =
        response_ok(std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: ") + te + "\r\n\r\n");
    EXPECT_EQ(h.framing, BodyFraming::until_close) << te;
    EXPECT_FALSE(h.keep_alive) << te;
  }
}

TEST(ResponseParser, ResponseToHeadHasNoBody) {
  const auto h = response_ok("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", Method::head);
  EXPECT_EQ(h.framing, BodyFraming::none);
  EXPECT_EQ(h.content_length, 1234u);  // still reported, for the client's HEAD answer
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(response_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Method::head)
                .framing,
            BodyFraming::none);
}

TEST(ResponseParser, InformationalNoContentAndNotModifiedHaveNoBody) {
  for (int status : {100, 101, 103, 204, 304}) {
    const auto h = response_ok("HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: 5\r\n\r\n");
    EXPECT_EQ(h.framing, BodyFraming::none) << status;
    EXPECT_TRUE(h.keep_alive) << status;
  }
  EXPECT_EQ(response_ok("HTTP/1.1 204 No Content\r\n\r\n").framing, BodyFraming::none);
}

TEST(ResponseParser, SuccessfulResponseToConnectHasNoBody) {
  EXPECT_EQ(response_ok("HTTP/1.1 200 Connection Established\r\n\r\n", Method::connect).framing,
            BodyFraming::none);
  EXPECT_EQ(response_ok("HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", Method::connect)
                .framing,
            BodyFraming::content_length);
}

TEST(ResponseParser, InterimResponseEndsAtItsOwnHead) {
  const std::string msg = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  const auto first = parse_response(msg);
  ASSERT_EQ(first.status, ParseStatus::complete);
  EXPECT_EQ(first.head.status, 100);
  const auto second = parse_response(msg.substr(first.head.head_length));
  ASSERT_EQ(second.status, ParseStatus::complete);
  EXPECT_EQ(second.head.status, 200);
}

TEST(ResponseParser, KeepAliveFollowsVersionAndConnection) {
  EXPECT_FALSE(response_ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                   .keep_alive);
  EXPECT_FALSE(response_ok("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
  const auto h = response_ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.version_minor, 0);
}

TEST(ResponseParserErrors, MalformedStatusLineIsBadStatusLine) {
  for (const char* line : {"ICY 200 OK", "HTTP/1.1", "HTTP/1.1 ", "HTTP/1.1  200 OK",
                           "HTTP/1.1 200 O\x01K", "http/1.1 200 OK", " HTTP/1.1 200 OK"}) {
    EXPECT_EQ(response_error(std::string(line) + "\r\n\r\n"), ParseError::bad_status_line) << line;
  }
  // An empty first line is not skipped in a response.
  EXPECT_EQ(response_error("\r\nHTTP/1.1 200 OK\r\n\r\n"), ParseError::bad_status_line);
}

TEST(ResponseParserErrors, StatusNotThreeDigitsInRangeIsBadStatusCode) {
  for (const char* line : {"HTTP/1.1 99 X", "HTTP/1.1 099 X", "HTTP/1.1 600 X", "HTTP/1.1 2000 X",
                           "HTTP/1.1 20 X", "HTTP/1.1 2x0 X", "HTTP/1.1 200OK", "HTTP/1.1 20",
                           "HTTP/1.1 -200 X"}) {
    EXPECT_EQ(response_error(std::string(line) + "\r\n\r\n"), ParseError::bad_status_code) << line;
  }
}

TEST(ResponseParserErrors, OtherHttpVersionIsBadVersion) {
  EXPECT_EQ(response_error("HTTP/2 200 OK\r\n\r\n"), ParseError::bad_version);
  EXPECT_EQ(response_error("HTTP/1.2 200 OK\r\n\r\n"), ParseError::bad_version);
}

TEST(ResponseParserErrors, TransferEncodingWithContentLengthIsConflictingFraming) {
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Length: 3\r\n\r\n"),
            ParseError::conflicting_framing);
  // Even where the status says there is no body: the upstream's framing is not to be trusted.
  EXPECT_EQ(response_error("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Length: 3\r\n\r\n"),
            ParseError::conflicting_framing);
}

TEST(ResponseParserErrors, ChunkedTwiceIsBadTransferEncoding) {
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            ParseError::bad_transfer_encoding);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked;a=b\r\n\r\n"),
            ParseError::bad_transfer_encoding);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip;q=\"a,b\"\r\n\r\n"),
            ParseError::bad_transfer_encoding);
}

TEST(ResponseParserErrors, TransferEncodingInHttp10IsTeInHttp10) {
  EXPECT_EQ(response_error("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ParseError::te_in_http10);
}

TEST(ResponseParserErrors, ContentLengthErrorsMatchRequests) {
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            ParseError::bad_content_length);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            ParseError::conflicting_content_length);
}

TEST(ResponseParserErrors, FieldErrorsMatchRequests) {
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), ParseError::space_before_colon);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n"), ParseError::obs_fold);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\nX: y\r\n\r\n"), ParseError::bare_lf);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nX: y\rz\r\n\r\n"), ParseError::bare_cr);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n"), ParseError::bad_header_value);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nX(: y\r\n\r\n"), ParseError::bad_header_name);
}

TEST(ResponseParserErrors, LongStatusLineIsHeaderSectionTooLarge) {
  ParserLimits limits;
  limits.max_request_line = 64;
  const std::string line = "HTTP/1.1 200 " + std::string(100, 'x');
  EXPECT_EQ(response_error(line + "\r\n\r\n", Method::get, limits),
            ParseError::header_section_too_large);
  EXPECT_EQ(response_error(line, Method::get, limits), ParseError::header_section_too_large);
}

TEST(ResponseParserErrors, TooManyFieldsIsTooManyHeaders) {
  ParserLimits limits;
  limits.max_headers = 2;
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", Method::get, limits),
            ParseError::none);
  EXPECT_EQ(response_error("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Method::get, limits),
            ParseError::too_many_headers);
}

}  // namespace
}  // namespace turnpike::http
