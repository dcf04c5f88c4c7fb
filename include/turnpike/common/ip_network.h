// IP addresses and networks in binary form: the trusted sources of PROXY protocol headers and of
// X-Forwarded-For hops (listeners' `trusted`). Standard library only (the PROXY parser's fuzz
// target builds it with clang alone).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace turnpike {

struct IpAddress {
  uint8_t family = 0;             // 4 or 6; 0: none
  std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4 bytes
  bool operator==(const IpAddress&) const = default;
};

// "10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 (/128).
struct IpNetwork {
  IpAddress base;  // host bits cleared
  uint8_t prefix = 0;
  bool operator==(const IpNetwork&) const = default;
};

// An IPv4 or IPv6 literal ("[::1]" too); nullopt when `text` is not one.
std::optional<IpAddress> parse_ip(std::string_view text);
std::optional<IpNetwork> parse_network(std::string_view text);
// "10.1.2.3", "2001:db8::1" (no brackets).
std::string to_string(const IpAddress& a);

// An IPv4-mapped IPv6 address (::ffff:10.0.0.1, what a dual-stack socket reports) matches IPv4
// networks as the IPv4 address it carries.
bool contains(const IpNetwork& net, const IpAddress& a);
bool contains_any(std::span<const IpNetwork> nets, const IpAddress& a);

}  // namespace turnpike
