// Helpers for the http parser tests: parse a whole message at once or fed byte by byte.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "turnpike/http/parser.h"

namespace turnpike::http {
// Readable gtest failure output for the enums.
inline void PrintTo(ParseError e, std::ostream* os) { *os << to_string(e); }
inline void PrintTo(BodyFraming f, std::ostream* os) { *os << to_string(f); }
inline void PrintTo(ParseStatus s, std::ostream* os) {
  *os << (s == ParseStatus::complete ? "complete" : s == ParseStatus::incomplete ? "incomplete"
                                                                                 : "error");
}
}  // namespace turnpike::http

namespace turnpike::http::test {

// The results hold views into the parsed bytes, so each result keeps its own copy of them alive
// (a test may pass a temporary string).
struct ParsedRequest {
  std::shared_ptr<const std::string> input;
  ParseStatus status = ParseStatus::incomplete;
  ParseError error = ParseError::none;
  RequestHead head;
  std::vector<Header> headers;
  size_t fed = 0;  // bytes passed in the call that gave `status`
};

struct ParsedResponse {
  std::shared_ptr<const std::string> input;
  ParseStatus status = ParseStatus::incomplete;
  ParseError error = ParseError::none;
  ResponseHead head;
  std::vector<Header> headers;
  size_t fed = 0;
};

inline ParsedRequest parse_request(std::string_view msg_in, const ParserLimits& limits = {}) {
  ParsedRequest r;
  r.input = std::make_shared<const std::string>(msg_in);
  const std::string_view msg = *r.input;
  ParseState state;
  r.status = parse_request_head(msg.data(), msg.size(), limits, state, r.head, r.headers, r.error);
  r.fed = msg.size();
  return r;
}

// Passes every prefix of msg in turn, as a connection receiving one byte at a time would, and
// returns the first result that is not `incomplete`.
inline ParsedRequest parse_request_bytewise(std::string_view msg_in, const ParserLimits& limits = {}) {
  ParsedRequest r;
  r.input = std::make_shared<const std::string>(msg_in);
  const std::string_view msg = *r.input;
  ParseState state;
  for (size_t n = 1; n <= msg.size(); ++n) {
    r.status = parse_request_head(msg.data(), n, limits, state, r.head, r.headers, r.error);
    r.fed = n;
    if (r.status != ParseStatus::incomplete) break;
  }
  return r;
}

inline ParsedResponse parse_response(std::string_view msg_in, Method method = Method::get,
                                     const ParserLimits& limits = {}) {
  ParsedResponse r;
  r.input = std::make_shared<const std::string>(msg_in);
  const std::string_view msg = *r.input;
  ParseState state;
  r.status = parse_response_head(msg.data(), msg.size(), limits, state, method, r.head,
                                 r.headers, r.error);
  r.fed = msg.size();
  return r;
}

inline ParsedResponse parse_response_bytewise(std::string_view msg_in, Method method = Method::get,
                                              const ParserLimits& limits = {}) {
  ParsedResponse r;
  r.input = std::make_shared<const std::string>(msg_in);
  const std::string_view msg = *r.input;
  ParseState state;
  for (size_t n = 1; n <= msg.size(); ++n) {
    r.status = parse_response_head(msg.data(), n, limits, state, method, r.head, r.headers,
                                   r.error);
    r.fed = n;
    if (r.status != ParseStatus::incomplete) break;
  }
  return r;
}

// The error a request gives, checked to be the same whether fed at once or byte by byte.
inline ParseError request_error(std::string_view msg, const ParserLimits& limits = {}) {
  const ParsedRequest whole = parse_request(msg, limits);
  const ParsedRequest bytewise = parse_request_bytewise(msg, limits);
  EXPECT_EQ(whole.status, bytewise.status) << "input: " << msg;
  EXPECT_EQ(to_string(whole.error), to_string(bytewise.error)) << "input: " << msg;
  return whole.status == ParseStatus::error ? whole.error : ParseError::none;
}

inline ParseError response_error(std::string_view msg, Method method = Method::get,
                                 const ParserLimits& limits = {}) {
  const ParsedResponse whole = parse_response(msg, method, limits);
  const ParsedResponse bytewise = parse_response_bytewise(msg, method, limits);
  EXPECT_EQ(whole.status, bytewise.status) << "input: " << msg;
  EXPECT_EQ(to_string(whole.error), to_string(bytewise.error)) << "input: " << msg;
  return whole.status == ParseStatus::error ? whole.error : ParseError::none;
}

inline std::string_view find_header(const std::vector<Header>& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (h.name == name) return h.value;
  }
  return "<absent>";
}

}  // namespace turnpike::http::test

