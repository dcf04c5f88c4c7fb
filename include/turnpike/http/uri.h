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

// Splits a request-target (RFC 9112 §3.2). Returns invalid for anything outside the four forms.
TargetForm split_target(std::string_view target, TargetParts& out) noexcept;

struct NormalizeOptions {
  bool merge_slashes = true;  // "//a///b" → "/a/b"
};

// Normalizes an origin-form path (no query) into `out` (cleared first):
//  - percent-encoded unreserved bytes (ALPHA DIGIT - . _ ~) are decoded (RFC 3986 §6.2.2.2),
//    other escapes are kept with upper-case hex digits (RFC 3986 §6.2.2.1);
//  - dot-segments are removed (RFC 3986 §5.2.4), including ones that were percent-encoded;
//  - repeated slashes are merged when options.merge_slashes.
// Returns false (→ 400) for a path not starting with '/', a malformed escape, an encoded NUL
// ("%00"), or a byte outside RFC 3986 pchar / '/'.
// Hot path: `out` keeps its capacity across calls, so it stops allocating after warm-up.
bool normalize_path(std::string_view path, const NormalizeOptions& options, std::string& out);

// Validates a Host / :authority value (uri-host [":" port], RFC 9110 §7.2) and returns the host
// part lower-cased into `host_out` without the port; false when invalid.
bool parse_authority(std::string_view authority, std::string& host_out);

}  // namespace turnpike::http
