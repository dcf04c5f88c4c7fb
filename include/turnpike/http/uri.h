// Request-target handling: splitting into parts and normalizing the path for routing.
//
// The router and the upstream see the same normalized path, so a path that the matcher
// accepted cannot be re-interpreted differently by the origin (e.g. "/admin/../public").
#pragma once

#include <string>
#include <string_view>

namespace turnpike::http {

struct TargetParts {
  std::string_view scheme;     // absolute-form only ("http"), else empty
  std::string_view authority;  // absolute-form/authority-form only, else empty
  std::string_view path;       // starts with '/', or "*" for asterisk-form; empty for authority-form
  std::string_view query;      // after '?', without it; empty when absent
  bool has_query = false;      // distinguishes "/a?" from "/a"
};

enum class TargetForm : uint8_t { origin, absolute, authority, asterisk, invalid };

// Splits a request-target (RFC 9112 §3.2). Returns invalid for anything outside the four forms:
//  - origin-form: "/" path [ "?" query ];
//  - absolute-form: scheme "://" authority path-abempty [ "?" query ]; the authority is checked
//    with split_authority (userinfo is refused, RFC 9110 §4.2.4) and an empty path is reported as
//    "/" (a static string, RFC 9112 §3.2.1);
//  - authority-form: uri-host ":" port, port required (RFC 9112 §3.2.3; the caller checks that the
//    method is CONNECT);
//  - asterisk-form: exactly "*" (the caller checks that the method is OPTIONS).
// A '#' anywhere is invalid (fragments are not sent, RFC 9112 §3.2). Path bytes are not checked
// here beyond that; normalize_path does it.
TargetForm split_target(std::string_view target, TargetParts& out) noexcept;
std::string_view to_string(TargetForm f) noexcept;

struct NormalizeOptions {
  bool merge_slashes = true;  // "//a///b" → "/a/b"
};

// Normalizes an origin-form path (no query) into `out` (cleared first):
//  - percent-encoded unreserved bytes (ALPHA DIGIT - . _ ~) are decoded (RFC 3986 §6.2.2.2),
//    other escapes are kept with upper-case hex digits (RFC 3986 §6.2.2.1);
//  - dot-segments are removed (RFC 3986 §5.2.4), including ones that were percent-encoded;
//  - repeated slashes are merged when options.merge_slashes.
// Returns false (→ 400) for a path not starting with '/', a malformed escape, an encoded NUL
// ("%00"), or a byte outside RFC 3986 pchar / '/' (so '\', raw non-ASCII and '#' are refused).
// Also refused: a "." or ".." segment followed by ';' (e.g. "/a/..;/b"), which some origins treat
// as a dot-segment with path parameters, so it would route differently than it resolves.
// "/.." cannot climb above the root: "/../a" → "/a". Encoded '/' ("%2F") stays encoded and
// never separates segments. The output is never longer than the input.
// Hot path: `out` keeps its capacity across calls, so it stops allocating after warm-up.
bool normalize_path(std::string_view path, const NormalizeOptions& options, std::string& out);

// Validates a Host / :authority value (uri-host [":" port], RFC 9110 §7.2) without allocating:
// `host` and `port` are views into `authority` (port empty when absent). Stricter than RFC 3986
// §3.2.2 on purpose: a reg-name may only hold ALPHA DIGIT - . _ ~ (no pct-encoding or
// sub-delims, which no DNS name needs), at most 255 bytes; an IP-literal must be a valid
// "[IPv6address]" (no IPvFuture, no zone); a port is 1-5 digits up to 65535 (":" alone is
// refused). Userinfo ("user@host") and an empty authority are refused.
bool split_authority(std::string_view authority, std::string_view& host,
                     std::string_view& port) noexcept;

// Validates a Host / :authority value like split_authority and returns the host part lower-cased
// into `host_out` without the port (an IPv6 literal keeps its brackets: "[::1]"); false when
// invalid or empty. A trailing dot is kept. `host_out` keeps its capacity across calls.
bool parse_authority(std::string_view authority, std::string& host_out);

}  // namespace turnpike::http
