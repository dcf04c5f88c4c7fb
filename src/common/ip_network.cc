// IP addresses and networks (include/turnpike/common/ip_network.h).
#include "turnpike/common/ip_network.h"

#include <arpa/inet.h>

#include <cstring>

namespace turnpike {

namespace {

// ::ffff:a.b.c.d → a.b.c.d (RFC 4291 §2.5.5.2).
IpAddress unmapped(const IpAddress& a) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a.family != 6 || std::memcmp(a.bytes.data(), kMapped, 12) != 0) return a;
  IpAddress v4;
  v4.family = 4;
  std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
  return v4;
}

}  // namespace

std::optional<IpAddress> parse_ip(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buf || text.find('\0') != std::string_view::npos) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
    a.family = 6;
    return a;
  }
  return std::nullopt;
}

std::optional<IpNetwork> parse_network(std::string_view text) {
  const size_t slash = text.find('/');
  std::optional<IpAddress> a = parse_ip(text.substr(0, slash));
  if (!a) return std::nullopt;
  const unsigned max = a->family == 4 ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3) return std::nullopt;
    prefix = 0;
    for (char c : p) {
      if (c < '0' || c > '9') return std::nullopt;
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > max) return std::nullopt;
  }
  IpNetwork net;
  net.base = *a;
  net.prefix = static_cast<uint8_t>(prefix);
  for (unsigned bit = prefix; bit < max; ++bit) net.base.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  return net;
}

std::string to_string(const IpAddress& a) {
  char out[INET6_ADDRSTRLEN];
  if (a.family == 4 && inet_ntop(AF_INET, a.bytes.data(), out, sizeof out)) return out;
  if (a.family == 6 && inet_ntop(AF_INET6, a.bytes.data(), out, sizeof out)) return out;
  return {};
}

bool contains(const IpNetwork& net, const IpAddress& address) {
  const IpAddress a = unmapped(address);
  if (a.family != net.base.family) return false;
  const unsigned whole = net.prefix / 8;
  if (std::memcmp(a.bytes.data(), net.base.bytes.data(), whole) != 0) return false;
  const unsigned rest = net.prefix % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff00u >> rest);
  return (a.bytes[whole] & mask) == net.base.bytes[whole];
}

bool contains_any(std::span<const IpNetwork> nets, const IpAddress& a) {
  for (const auto& n : nets) {
    if (contains(n, a)) return true;
  }
  return false;
}

}  // namespace turnpike
