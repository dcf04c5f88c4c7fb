// The PROXY protocol parser (proxy_protocol.h) and the IP networks of `trusted` (ip_network.h).
#include "turnpike/proxy/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace turnpike::proxy {
namespace {

ProxyParse parse(std::string_view bytes, ProxyHeader& h) {
  return parse_proxy_header({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, h);
}

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string v2(std::string body, char cmd = '\x21', char fam = '\x11') {
  std::string out = kSig;
  out += cmd;
  out += fam;
  out += static_cast<char>(body.size() >> 8);
  out += static_cast<char>(body.size() & 0xff);
  return out + body;
}

const std::string kAddr4("\xcb\x00\x71\x07\xc0\x00\x02\x01\xc8\x22\x00\x50", 12);  // 203.0.113.7 → 192.0.2.1, 51234 → 80

TEST(ProxyProtocolV1, Tcp4LineGivesAddressesPortsAndLength) {
  ProxyHeader h;
  const std::string line = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\n";
  ASSERT_EQ(parse(line + "GET / HTTP/1.1\r\n", h), ProxyParse::done);
  EXPECT_EQ(h.version, 1);
  EXPECT_EQ(h.length, line.size());
  EXPECT_FALSE(h.local);
  EXPECT_EQ(to_string(h.source), "203.0.113.7");
  EXPECT_EQ(h.source_port, 51234);
  EXPECT_EQ(to_string(h.destination), "192.0.2.1");
  EXPECT_EQ(h.destination_port, 80);
}

TEST(ProxyProtocolV1, Tcp6AndUnknown) {
  ProxyHeader h;
  ASSERT_EQ(parse("PROXY TCP6 2001:db8::7 ::1 1 65535\r\n", h), ProxyParse::done);
  EXPECT_EQ(to_string(h.source), "2001:db8::7");
  EXPECT_EQ(h.destination_port, 65535);
  ASSERT_EQ(parse("PROXY UNKNOWN whatever follows\r\n", h), ProxyParse::done);
  EXPECT_TRUE(h.local);
}

TEST(ProxyProtocolV1, PrefixesAreIncompleteAndNonsenseIsInvalidAtOnce) {
  ProxyHeader h;
  const std::string line = "PROXY TCP4 203.0.113.7 192.0.2.1 51234 80\r\n";
  for (size_t n = 0; n < line.size(); ++n) EXPECT_EQ(parse(line.substr(0, n), h), ProxyParse::incomplete) << n;
  EXPECT_EQ(parse("GET", h), ProxyParse::invalid);
  EXPECT_EQ(parse("PROXZ", h), ProxyParse::invalid);
}

TEST(ProxyProtocolV1, MalformedLinesAreInvalid) {
  ProxyHeader h;
  for (const char* bad : {"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n", "PROXY TCP4 ::1 192.0.2.1 1 2\r\n",
                          "PROXY TCP4 1.2.3.4 5.6.7.8 65536 1\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 1\r\n",
                          "PROXY TCP4 1.2.3.4 5.6.7.8 1 1\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 1\rX",
                          "PROXY TCP5 1.2.3.4 5.6.7.8 1 1\r\n", "PROXY TCP4  1.2.3.4 5.6.7.8 1 1\r\n",
                          "PROXY TCP6 [::1] [::1] 1 1\r\n", "PROXY UNKNOWNX\r\n"}) {
    EXPECT_EQ(parse(bad, h), ProxyParse::invalid) << bad;
    EXPECT_FALSE(h.error.empty());
  }
  EXPECT_EQ(parse("PROXY " + std::string(101, 'A'), h), ProxyParse::invalid);  // 107 bytes, no CRLF
}

TEST(ProxyProtocolV2, Tcp4WithTlvs) {
  std::string tlvs = std::string("\x02\x00\x0b", 3) + "api.example" + std::string("\x20\x00\x0f\x01\x00\x00\x00\x00", 8) +
                     std::string("\x21\x00\x07", 3) + "TLSv1.3";
  ProxyHeader h;
  const std::string header = v2(kAddr4 + tlvs);
  ASSERT_EQ(parse(header + "GET /", h), ProxyParse::done) << h.error;
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.length, header.size());
  EXPECT_EQ(to_string(h.source), "203.0.113.7");
  EXPECT_EQ(h.source_port, 51234);
  EXPECT_EQ(h.authority, "api.example");
  EXPECT_TRUE(h.ssl);
  EXPECT_EQ(h.ssl_version, "TLSv1.3");
  for (size_t n = 0; n < header.size(); ++n) EXPECT_EQ(parse(header.substr(0, n), h), ProxyParse::incomplete) << n;
}

TEST(ProxyProtocolV2, LocalAndUnixKeepTheConnectionsAddress) {
  ProxyHeader h;
  ASSERT_EQ(parse(v2("", '\x20', '\x00'), h), ProxyParse::done);
  EXPECT_TRUE(h.local);
  ASSERT_EQ(parse(v2(std::string(216, '\0'), '\x21', '\x31'), h), ProxyParse::done);
  EXPECT_TRUE(h.local);
}

TEST(ProxyProtocolV2, Crc32cIsChecked) {
  // A header whose CRC32C TLV is zero, then patched with the value computed over it (RFC 3720's
  // check value for "123456789" is 0xE3069283: the same polynomial, tested through a header).
  std::string header = v2(kAddr4 + std::string("\x03\x00\x04\x00\x00\x00\x00", 7));
  ProxyHeader h;
  EXPECT_EQ(parse(header, h), ProxyParse::invalid);
  EXPECT_EQ(h.error, "v2: CRC32C mismatch");
  uint32_t crc = ~0u;
  for (unsigned char c : header) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  crc = ~crc;
  for (int i = 0; i < 4; ++i) header[header.size() - 4 + i] = static_cast<char>(crc >> (24 - 8 * i));
  EXPECT_EQ(parse(header, h), ProxyParse::done) << h.error;
}

TEST(ProxyProtocolV2, MalformedHeadersAreInvalid) {
  ProxyHeader h;
  EXPECT_EQ(parse(v2(kAddr4, '\x31'), h), ProxyParse::invalid);                      // version 3
  EXPECT_EQ(parse(v2(kAddr4, '\x22'), h), ProxyParse::invalid);                      // command 2
  EXPECT_EQ(parse(v2(kAddr4.substr(0, 8)), h), ProxyParse::invalid);                 // addresses cut short
  EXPECT_EQ(parse(v2(kAddr4, '\x21', '\x12'), h), ProxyParse::invalid);              // UDP
  EXPECT_EQ(parse(v2(kAddr4, '\x21', '\x41'), h), ProxyParse::invalid);              // family 4
  EXPECT_EQ(parse(v2(kAddr4 + std::string("\x02\x00\x09" "ab", 5)), h), ProxyParse::invalid);  // TLV overrun
  EXPECT_EQ(parse(v2(kAddr4 + std::string("\x02\x00", 2)), h), ProxyParse::invalid);         // TLV head cut
  EXPECT_EQ(parse(v2(kAddr4 + std::string("\x20\x00\x04\x01\x00\x00\x00", 7)), h), ProxyParse::invalid);  // SSL < 5
  EXPECT_EQ(parse(v2(kAddr4 + std::string("\x05\x00\x81", 3) + std::string(129, 'x')), h), ProxyParse::invalid);
  EXPECT_EQ(parse(kSig + std::string("\x21\x11\x04\x00", 4), h), ProxyParse::invalid);  // over the 1024-byte cap
}

TEST(IpNetwork, ParsesAndMatches) {
  auto net = parse_network("10.0.0.0/8");
  ASSERT_TRUE(net);
  EXPECT_TRUE(contains(*net, *parse_ip("10.255.1.2")));
  EXPECT_FALSE(contains(*net, *parse_ip("11.0.0.1")));
  // A dual-stack socket's IPv4-mapped peer matches IPv4 networks.
  EXPECT_TRUE(contains(*net, *parse_ip("::ffff:10.1.2.3")));
  auto odd = parse_network("192.168.1.128/25");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(contains(*odd, *parse_ip("192.168.1.200")));
  EXPECT_FALSE(contains(*odd, *parse_ip("192.168.1.100")));
  auto host = parse_network("2001:db8::1");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->prefix, 128);
  EXPECT_TRUE(contains(*host, *parse_ip("[2001:db8::1]")));
  EXPECT_FALSE(contains(*host, *parse_ip("2001:db8::2")));
  EXPECT_TRUE(contains(*parse_network("0.0.0.0/0"), *parse_ip("1.2.3.4")));
  for (const char* bad : {"10.0.0.0/33", "10.0.0.0/", "10.0.0/8", "example.com", "::/129", "10.0.0.0/8x", ""}) {
    EXPECT_FALSE(parse_network(bad)) << bad;
  }
  EXPECT_FALSE(parse_ip(std::string_view("1.2.3.4\0x", 9)));
}

}  // namespace
}  // namespace turnpike::proxy
