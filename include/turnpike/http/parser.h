// Strict HTTP/1.1 message-head parsers (RFC 9112, RFC 9110) for requests and responses.
//
// The parsers are incremental in the simple sense: the caller passes everything received so far
// (from the start of the message) and gets `incomplete` until the whole head has arrived. The end
// of the head is searched from where the previous call stopped (`ParseState::scanned`), so feeding
// a head byte by byte costs linear time; the head is parsed once, when complete.
//
// Zero-copy: every string_view in the results points into the caller's buffer, which must stay
// unchanged while they are used. Nothing is allocated except by `headers` growing (callers keep and
// reuse it, so it stops allocating after warm-up).
//
// Anything ambiguous is an error, never guessed: request smuggling lives in the gaps between two
// lenient parsers. Hot path: no allocation after warm-up, no locks, no exceptions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "turnpike/http/types.h"

namespace turnpike::http {

// Every limit is inclusive: a head exactly at a limit is accepted, one byte (or field) over is not.
// The limits are enforced on incomplete input too, as soon as they cannot be met any more.
struct ParserLimits {
  size_t max_request_line = 8192;   // start line including its CRLF; longer → uri_too_long (414);
                                    // a longer response status line → header_section_too_large
  size_t max_header_bytes = 32768;  // whole head (start line + fields + CRLFs) larger → 431
  size_t max_headers = 100;         // more header fields → 431
};

enum class ParseStatus : uint8_t {
  complete,    // head parsed; see RequestHead/ResponseHead
  incomplete,  // need more bytes (limits not yet exceeded)
  error,       // see ParseError; the connection's framing is in doubt: answer and close
};

enum class ParseError : uint8_t {
  none,                       // no error
  bad_request_line,           // malformed request line (method, target, spacing)
  bad_method,                 // method is not a token
  bad_target,                 // request-target has bytes outside RFC 9112 §3.2 grammar
  bad_version,                // not HTTP/1.0 or HTTP/1.1
  uri_too_long,               // request line exceeds max_request_line (414)
  header_section_too_large,   // head exceeds max_header_bytes (431)
  too_many_headers,           // more than max_headers fields (431)
  bad_header_name,            // empty name or a byte that is not a tchar
  bad_header_value,           // a byte not allowed in field-value (CTL other than HTAB, NUL, ...)
  space_before_colon,         // whitespace between field name and ':' (RFC 9112 §5.1)
  obs_fold,                   // line folding (RFC 9112 §5.2): rejected
  bare_cr,                    // CR not followed by LF (RFC 9112 §2.2)
  bare_lf,                    // LF line ending without CR: rejected, lenient line ends aid smuggling
  missing_host,               // HTTP/1.1 request without Host (RFC 9112 §3.2)
  duplicate_host,             // more than one Host field
  bad_host,                   // Host value is not a valid uri-host[:port]
  bad_content_length,         // Content-Length not a plain decimal (or list of one repeated value)
  conflicting_content_length, // several Content-Length values that differ
  conflicting_framing,        // both Transfer-Encoding and Content-Length (RFC 9112 §6.3)
  bad_transfer_encoding,      // Transfer-Encoding where chunked is not final, or an unknown coding
  te_in_http10,               // Transfer-Encoding in an HTTP/1.0 message
  bad_status_line,            // response: malformed status line
  bad_status_code,            // response: status not three digits 100..599
};
std::string_view to_string(ParseError e) noexcept;
// The status a proxy answers a client with for a request parse error: 400, 414 or 431.
int status_for(ParseError e) noexcept;

// Scan position kept between calls for one message; reset (= {}) before a new message.
struct ParseState {
  size_t scanned = 0;     // bytes already searched for the end of the head
  size_t line_start = 0;  // offset of the line being scanned
  size_t head_start = 0;  // offset of the start line (requests skip leading empty lines)
  size_t fields = 0;      // field lines seen so far
};

struct RequestHead {
  Method method = Method::other;
  std::string_view method_name;  // as sent, e.g. "GET" or "PROPFIND"
  std::string_view target;       // request-target as sent (origin-, absolute-, authority- or asterisk-form)
  uint8_t version_minor = 1;     // 0 for HTTP/1.0, 1 for HTTP/1.1
  std::string_view host;         // Host field value, validated by split_authority (uri.h); empty
                                 // for HTTP/1.0 without Host or an empty Host (RFC 9112 §3.2)
  BodyFraming framing = BodyFraming::none;
  uint64_t content_length = 0;   // valid when framing == content_length (which may be 0)
  bool keep_alive = true;        // after Connection tokens and version defaults
  bool expect_continue = false;  // Expect: 100-continue in an HTTP/1.1 request (ignored in 1.0,
                                 // RFC 9110 §10.1.1)
  bool unknown_expectation = false;  // Expect with another value (answer 417)
  bool upgrade = false;          // Connection: upgrade + Upgrade present
  size_t head_length = 0;        // bytes of the head including the final CRLFCRLF (and any
                                 // leading empty lines skipped per RFC 9112 §2.2)
};

struct ResponseHead {
  int status = 0;
  std::string_view reason;
  uint8_t version_minor = 1;
  BodyFraming framing = BodyFraming::none;
  uint64_t content_length = 0;   // the Content-Length value when present, even when framing is
                                 // none (e.g. a response to HEAD); the body length only when
                                 // framing == content_length
  bool keep_alive = true;        // false when the upstream says close, HTTP/1.0 without keep-alive,
                                 // or framing == until_close
  size_t head_length = 0;
};

// Parses a request head from data[0..len). On `complete`, `out` and `headers` describe it and
// out.head_length bytes belong to it; the rest of data is body or the next message. On `error`,
// `err` tells why (status_for(err) is the answer); `out` and `headers` are then unspecified.
// Leading empty lines before the request line are skipped (RFC 9112 §2.2) and counted in
// head_length. Header names are not interpreted beyond Host, Content-Length, Transfer-Encoding,
// Connection, Upgrade and Expect; in absolute-form the caller must prefer the target's authority
// over Host (RFC 9112 §3.2.2). The request-target is only checked to be visible ASCII here;
// split_target and normalize_path (uri.h) apply the URI grammar.
ParseStatus parse_request_head(const char* data, size_t len, const ParserLimits& limits,
                               ParseState& state, RequestHead& out, std::vector<Header>& headers,
                               ParseError& err) noexcept;

// Parses a response head. `request_method` decides framing (a response to HEAD has no body, a
// 2xx to CONNECT starts a tunnel: framing none); 1xx, 204 and 304 have no body either. A missing Content-Length and Transfer-Encoding means
// until_close; so does a Transfer-Encoding whose final coding is not chunked (RFC 9112 §6.3).
// Content-Length and Transfer-Encoding are validated even when the status says there is no body.
// Any error makes the response unusable (the proxy answers 502). A 1xx head is complete on its
// own: reset the state and parse the next head after head_length.
ParseStatus parse_response_head(const char* data, size_t len, const ParserLimits& limits,
                                ParseState& state, Method request_method, ResponseHead& out,
                                std::vector<Header>& headers, ParseError& err) noexcept;

// True for the hop-by-hop fields a proxy must not forward (RFC 9110 §7.6.1): Connection,
// Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade and Trailer. Fields named in a
// Connection header are hop-by-hop too; the caller checks those.
bool is_hop_by_hop(std::string_view name) noexcept;

}  // namespace turnpike::http
