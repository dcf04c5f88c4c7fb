// PROXY protocol v1 and v2 parsing (include/turnpike/proxy/proxy_protocol.h). Section numbers
// refer to HAProxy's doc/proxy-protocol.txt. Every length read from the wire is checked against
// what remains before it is used.
#include "turnpike/proxy/proxy_protocol.h"

#include <cstring>

namespace turnpike::proxy {

namespace {

constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view kV1Prefix = "PROXY ";

ProxyParse fail(ProxyHeader& out, std::string_view why) {
  out.error = why;
  return ProxyParse::invalid;
}

// ---- version 1 (§2.1): "PROXY TCP4 src dst sport dport\r\n" ----

// Splits off the next space-terminated field of `line`.
bool next_field(std::string_view& line, std::string_view& field, bool last) {
  const size_t sp = line.find(' ');
  if (last) {
    if (sp != std::string_view::npos) return false;
    field = line;
    line = {};
  } else {
    if (sp == std::string_view::npos) return false;
    field = line.substr(0, sp);
    line.remove_prefix(sp + 1);
  }
  return !field.empty();
}

// §2.1: ports are decimal 0..65535 without leading zeros.
bool parse_port(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

ProxyParse parse_v1(std::string_view in, ProxyHeader& out) {
  const std::string_view window = in.substr(0, kProxyV1MaxLength);
  // The first CR or LF ends the line, and must be a CRLF: so any prefix of a valid line is
  // incomplete, never invalid.
  const size_t cr = window.find_first_of("\r\n");
  if (cr == std::string_view::npos) {
    if (in.size() >= kProxyV1MaxLength) return fail(out, "v1 line longer than 107 bytes");
    return ProxyParse::incomplete;
  }
  if (window[cr] == '\n') return fail(out, "v1 line ends without CR");
  if (cr + 1 >= window.size()) {
    return window.size() < kProxyV1MaxLength ? ProxyParse::incomplete : fail(out, "v1 line longer than 107 bytes");
  }
  if (window[cr + 1] != '\n') return fail(out, "v1 line: CR without LF");
  out.version = 1;
  out.length = cr + 2;
  std::string_view line = window.substr(kV1Prefix.size(), cr - kV1Prefix.size());
  std::string_view proto, src, dst, sport, dport;
  if (line.substr(0, 7) == "UNKNOWN") {
    // §2.1: the receiver must ignore whatever follows UNKNOWN up to the CRLF.
    if (line.size() > 7 && line[7] != ' ') return fail(out, "v1: unknown protocol");
    out.local = true;
    return ProxyParse::done;
  }
  if (!next_field(line, proto, false) || !next_field(line, src, false) || !next_field(line, dst, false) ||
      !next_field(line, sport, false) || !next_field(line, dport, true)) {
    return fail(out, "v1: expected \"PROXY TCP4|TCP6 src dst sport dport\"");
  }
  const uint8_t family = proto == "TCP4" ? 4 : proto == "TCP6" ? 6 : 0;
  if (family == 0) return fail(out, "v1: unknown protocol");
  auto s = parse_ip(src), d = parse_ip(dst);
  // Brackets are not part of v1 addresses.
  if (!s || !d || s->family != family || d->family != family || src.front() == '[' || dst.front() == '[') {
    return fail(out, "v1: address does not match the protocol");
  }
  if (!parse_port(sport, out.source_port) || !parse_port(dport, out.destination_port)) {
    return fail(out, "v1: invalid port");
  }
  out.source = *s;
  out.destination = *d;
  return ProxyParse::done;
}

// ---- version 2 (§2.2): 16 bytes, then addresses and TLVs ----

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// CRC-32C (Castagnoli, reflected 0x82F63B78), bitwise: it runs only when a balancer sends the
// optional PP2_TYPE_CRC32C, once per connection.
uint32_t crc32c(const uint8_t* p, size_t n, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

enum : uint8_t {
  kTypeAlpn = 0x01,
  kTypeAuthority = 0x02,
  kTypeCrc32c = 0x03,
  kTypeUniqueId = 0x05,
  kTypeSsl = 0x20,
  kSubtypeSslVersion = 0x21,
  kSubtypeSslCipher = 0x23,
  kClientSsl = 0x01,
};

std::string_view text(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// §2.2.7: PP2_TYPE_SSL's value: client flags (1), verify (4), then sub-TLVs.
bool parse_ssl(const uint8_t* p, size_t n, ProxyHeader& out) {
  if (n < 5) return false;
  out.ssl = (p[0] & kClientSsl) != 0;
  size_t i = 5;
  while (i < n) {
    if (n - i < 3) return false;
    const uint8_t type = p[i];
    const size_t len = be16(p + i + 1);
    i += 3;
    if (len > n - i) return false;
    if (type == kSubtypeSslVersion) out.ssl_version = text(p + i, len);
    if (type == kSubtypeSslCipher) out.ssl_cipher = text(p + i, len);
    i += len;
  }
  return true;
}

// The TLVs after the addresses; `header` is the whole header (for the CRC).
ProxyParse parse_tlvs(const uint8_t* header, size_t total, size_t i, ProxyHeader& out) {
  while (i < total) {
    if (total - i < 3) return fail(out, "v2: truncated TLV");
    const uint8_t type = header[i];
    const size_t len = be16(header + i + 1);
    const size_t value = i + 3;
    if (len > total - value) return fail(out, "v2: TLV longer than the header");
    const uint8_t* v = header + value;
    switch (type) {
      case kTypeAlpn: out.alpn = text(v, len); break;
      case kTypeAuthority: out.authority = text(v, len); break;
      case kTypeUniqueId:
        if (len > 128) return fail(out, "v2: unique id longer than 128 bytes");  // §2.2.5
        out.unique_id = text(v, len);
        break;
      case kTypeSsl:
        if (!parse_ssl(v, len, out)) return fail(out, "v2: malformed SSL TLV");
        break;
      case kTypeCrc32c: {
        // §2.2.4: the checksum of the whole header with this field's value taken as zero.
        if (len != 4) return fail(out, "v2: CRC32C TLV is not 4 bytes");
        const uint32_t sent = static_cast<uint32_t>(v[0]) << 24 | static_cast<uint32_t>(v[1]) << 16 |
                              static_cast<uint32_t>(v[2]) << 8 | v[3];
        static constexpr uint8_t kZero[4] = {0, 0, 0, 0};
        uint32_t crc = crc32c(header, value, 0);
        crc = crc32c(kZero, 4, crc);
        crc = crc32c(v + 4, total - value - 4, crc);
        if (crc != sent) return fail(out, "v2: CRC32C mismatch");
        break;
      }
      default: break;  // §2.2: unknown types are skipped
    }
    i = value + len;
  }
  return ProxyParse::done;
}

ProxyParse parse_v2(std::span<const uint8_t> in, ProxyHeader& out) {
  if (in.size() < 16) return ProxyParse::incomplete;
  const uint8_t ver_cmd = in[12];
  if ((ver_cmd >> 4) != 2) return fail(out, "v2: unsupported version");
  const uint8_t command = ver_cmd & 0x0F;
  if (command > 1) return fail(out, "v2: unknown command");
  const size_t total = 16 + static_cast<size_t>(be16(in.data() + 14));
  if (total > kProxyMaxLength) return fail(out, "v2: header longer than 1024 bytes");
  if (in.size() < total) return ProxyParse::incomplete;
  out.version = 2;
  out.length = total;
  const uint8_t family = in[13] >> 4, transport = in[13] & 0x0F;
  if (family > 3 || transport > 2) return fail(out, "v2: unknown address family or transport");
  size_t addresses = 0;
  if (family == 1) addresses = 12;       // AF_INET: 4 + 4 + 2 + 2
  else if (family == 2) addresses = 36;  // AF_INET6: 16 + 16 + 2 + 2
  else if (family == 3) addresses = 216; // AF_UNIX: 108 + 108
  if (total - 16 < addresses) return fail(out, "v2: address block shorter than its family needs");
  // §2.2: LOCAL (the balancer's own health checks) and families other than TCP over IP keep the
  // connection's address.
  if (command == 0 || family == 0 || family == 3) {
    out.local = true;
  } else {
    if (transport != 1) return fail(out, "v2: not a stream (TCP) connection");
    const uint8_t* a = in.data() + 16;
    const size_t n = family == 1 ? 4 : 16;
    out.source.family = out.destination.family = family == 1 ? 4 : 6;
    std::memcpy(out.source.bytes.data(), a, n);
    std::memcpy(out.destination.bytes.data(), a + n, n);
    out.source_port = be16(a + 2 * n);
    out.destination_port = be16(a + 2 * n + 2);
  }
  return parse_tlvs(in.data(), total, 16 + addresses, out);
}

}  // namespace

std::string_view to_string(ProxyParse p) noexcept {
  switch (p) {
    case ProxyParse::incomplete: return "incomplete";
    case ProxyParse::done: return "done";
    case ProxyParse::invalid: return "invalid";
  }
  return "unknown";
}

ProxyParse parse_proxy_header(std::span<const uint8_t> in, ProxyHeader& out) {
  out = ProxyHeader{};
  if (in.empty()) return ProxyParse::incomplete;
  // Which version, from as many bytes as there are: a mismatching prefix is refused at once.
  const size_t v2n = std::min(in.size(), sizeof kV2Signature);
  if (std::memcmp(in.data(), kV2Signature, v2n) == 0) {
    return in.size() < sizeof kV2Signature ? ProxyParse::incomplete : parse_v2(in, out);
  }
  const size_t v1n = std::min(in.size(), kV1Prefix.size());
  if (std::memcmp(in.data(), kV1Prefix.data(), v1n) == 0) {
    if (in.size() < kV1Prefix.size()) return ProxyParse::incomplete;
    return parse_v1(text(in.data(), in.size()), out);
  }
  return fail(out, "no PROXY protocol header");
}

}  // namespace turnpike::proxy
