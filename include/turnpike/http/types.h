// Protocol-neutral HTTP vocabulary: methods, header views, body framing.
//
// Header names and values are views into a buffer owned elsewhere (the connection's read buffer
// or a request arena); nothing here allocates.
#pragma once

#include <cstdint>
#include <string_view>

namespace turnpike::http {

enum class Method : uint8_t {
  get,      // GET
  head,     // HEAD
  post,     // POST
  put,      // PUT
  del,      // DELETE
  connect,  // CONNECT
  options,  // OPTIONS
  trace,    // TRACE
  patch,    // PATCH
  other,    // any other token; the original spelling is kept in RequestHead::method_name
};
inline constexpr int kMethodCount = 10;

std::string_view to_string(Method m) noexcept;
// Exact, case-sensitive match (RFC 9110 §9.1: methods are case-sensitive); unknown tokens → other.
Method parse_method(std::string_view token) noexcept;
// RFC 9110 §9.2.2.
bool is_idempotent(Method m) noexcept;
constexpr uint32_t method_bit(Method m) noexcept { return 1u << static_cast<unsigned>(m); }

struct Header {
  std::string_view name;   // as received (case preserved); compare with iequals
  std::string_view value;  // leading/trailing whitespace already removed
};

// How a message body is delimited on the wire (RFC 9112 §6).
enum class BodyFraming : uint8_t {
  none,            // no body (GET without CL/TE, 204, 304, response to HEAD, ...)
  content_length,  // exactly content_length bytes
  chunked,         // chunked transfer coding, ends with a zero-size chunk and trailers
  until_close,     // response only: body runs until the upstream closes the connection
};
std::string_view to_string(BodyFraming f) noexcept;

// Reason phrase for a status code ("Not Found"); "Unknown" for codes we do not know.
std::string_view reason_phrase(int status) noexcept;

// RFC 9110 §5.6.2: a token (field names, methods, the Via pseudonym).
bool is_token(std::string_view s) noexcept;
// RFC 9110 §5.5: a field value safe to send: no control characters but HTAB (CR, LF and NUL in
// particular would split or truncate the message: response splitting).
bool is_safe_field_value(std::string_view s) noexcept;
// Fields that describe the connection or the message framing (RFC 9110 §7.6.1, RFC 9112 §6): the
// proxy manages them itself, and neither header rules nor plugins may set them (that could
// desynchronize the framing between client, proxy and upstream).
bool is_proxy_managed_field(std::string_view name) noexcept;

}  // namespace turnpike::http
