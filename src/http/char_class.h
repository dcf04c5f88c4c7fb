// Byte classes of the HTTP and URI grammars as one 256-entry table, so the parsers' inner loops
// cost one load and one bit test per byte. Internal to tp_http.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace turnpike::http::detail {

enum CharClass : uint8_t {
  kTchar = 1u << 0,       // RFC 9110 §5.6.2 tchar: the bytes of a token (method, field name)
  kFieldByte = 1u << 1,   // RFC 9110 §5.5 field-value byte: VCHAR, obs-text, SP, HTAB
  kTargetByte = 1u << 2,  // request-target byte: VCHAR only (RFC 9112 §3.2; no obs-text, no SP)
  kHexDigit = 1u << 3,    // HEXDIG, either case
  kUnreserved = 1u << 4,  // RFC 3986 §2.3: ALPHA DIGIT - . _ ~
  kPcharRaw = 1u << 5,    // RFC 3986 §3.3 pchar minus pct-encoded: unreserved, sub-delims, : @
};

constexpr std::array<uint8_t, 256> make_char_classes() {
  std::array<uint8_t, 256> t{};
  auto add = [&t](const char* chars, uint8_t cls) {
    for (; *chars != '\0'; ++chars) t[static_cast<unsigned char>(*chars)] |= cls;
  };
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    const bool vchar = c >= 0x21 && c <= 0x7e;
    if (alpha || digit) t[c] |= kTchar | kUnreserved | kPcharRaw;
    if (vchar) t[c] |= kFieldByte | kTargetByte;
    if (c >= 0x80) t[c] |= kFieldByte;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) t[c] |= kHexDigit;
  }
  add(" \t", kFieldByte);
  add("!#$%&'*+-.^_`|~", kTchar);
  add("-._~", kUnreserved | kPcharRaw);
  add("!$&'()*+,;=:@", kPcharRaw);
  return t;
}

inline constexpr std::array<uint8_t, 256> kCharClasses = make_char_classes();

constexpr bool has_class(char c, uint8_t cls) noexcept {
  return (kCharClasses[static_cast<unsigned char>(c)] & cls) != 0;
}
constexpr bool is_tchar(char c) noexcept { return has_class(c, kTchar); }

constexpr bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace turnpike::http::detail
