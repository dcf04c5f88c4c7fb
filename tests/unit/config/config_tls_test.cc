// TLS, HTTP/2 and upstream-protocol settings: what valid YAML turns into, and the errors (with
// their lines) for the mistakes people make.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "turnpike/config/config.h"

namespace turnpike::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

std::vector<std::string> errors_of(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "/etc/tp/test.yaml");
  std::vector<std::string> out;
  for (const ConfigError& e : r.errors) out.push_back(e.to_string());
  return out;
}

std::shared_ptr<const Config> load_ok(const std::string& yaml) {
  LoadResult r = load_config_string(yaml, "/etc/tp/test.yaml");
  EXPECT_THAT(r.errors, SizeIs(0)) << (r.errors.empty() ? "" : r.errors[0].to_string());
  return r.config;
}

TEST(ConfigTls, ListenerTlsDefaultsAndRelativePaths) {
  auto cfg = load_ok(
      "listeners:\n"
      "  - name: https\n"
      "    port: 443\n"
      "    tls:\n"
      "      certificates:\n"
      "        - {cert: certs/a.pem, key: /abs/a.key}\n"
      "        - {cert: b.pem, key: b.key, server_names: [\"API.example.com\", \"*.example.com\"]}\n");
  ASSERT_TRUE(cfg);
  const auto& l = cfg->listeners[0];
  ASSERT_TRUE(l.tls);
  ASSERT_THAT(l.tls->certificates, SizeIs(2));
  EXPECT_EQ(l.tls->certificates[0].cert_file, "/etc/tp/certs/a.pem");  // relative to the config file
  EXPECT_EQ(l.tls->certificates[0].key_file, "/abs/a.key");
  EXPECT_EQ(l.tls->certificates[0].source.line, 6);
  EXPECT_THAT(l.tls->certificates[1].server_names, ElementsAre("api.example.com", "*.example.com"));
  EXPECT_EQ(l.tls->min_version, "TLSv1.2");
  EXPECT_THAT(l.tls->alpn, ElementsAre("h2", "http/1.1"));
  EXPECT_EQ(l.tls->handshake_timeout, Duration(10'000));
  EXPECT_TRUE(l.tls->session_tickets);
  EXPECT_TRUE(l.http2.enabled);
}

TEST(ConfigTls, CleartextListenerHasNoTls) {
  auto cfg = load_ok("listeners:\n  - {name: a, port: 80}\n");
  ASSERT_TRUE(cfg);
  EXPECT_FALSE(cfg->listeners[0].tls);
}

TEST(ConfigTls, ListenerTlsErrorsAreReportedWithLines) {
  EXPECT_THAT(errors_of("listeners:\n"
                        "  - name: https\n"
                        "    port: 443\n"
                        "    tls:\n"
                        "      min_version: TLSv1.0\n"
                        "      alpn: [h3]\n"
                        "      certificates:\n"
                        "        - {cert: a.pem}\n"
                        "        - {cert: b.pem, key: b.key, server_names: [\"*.*.example.com\"]}\n"
                        "      handshake_timeout: soon\n"),
              ElementsAre(HasSubstr("test.yaml:5: listener \"https\": tls.min_version: \"TLSv1.0\" is not supported"),
                          HasSubstr("test.yaml:6: listener \"https\": tls.alpn: \"h3\" is not supported"),
                          HasSubstr("test.yaml:6: listener \"https\": tls.alpn: at least one protocol is required"),
                          HasSubstr("test.yaml:8: listener \"https\": tls.certificates[1]: \"key\" is required"),
                          HasSubstr("test.yaml:9: listener \"https\": tls.certificates[2].server_names: "
                                    "\"*.*.example.com\" is not a host name"),
                          HasSubstr("test.yaml:10: listener \"https\": tls.handshake_timeout:")));
}

TEST(ConfigTls, TlsWithoutCertificatesIsAnError) {
  EXPECT_THAT(errors_of("listeners:\n  - name: https\n    port: 443\n    tls: {min_version: TLSv1.3}\n"),
              ElementsAre(HasSubstr("test.yaml:4: listener \"https\": tls: \"certificates\" is required")));
}

TEST(ConfigTls, Http2LimitsAreReadAndChecked) {
  auto cfg = load_ok(
      "listeners:\n"
      "  - name: a\n"
      "    port: 80\n"
      "    http2: {max_concurrent_streams: 50, max_header_list_size: 32k, max_resets_per_second: 20,\n"
      "            idle_timeout: 30s}\n");
  ASSERT_TRUE(cfg);
  const auto& h = cfg->listeners[0].http2;
  EXPECT_EQ(h.max_concurrent_streams, 50u);
  EXPECT_EQ(h.max_header_list_size, 32768u);
  EXPECT_EQ(h.max_resets_per_second, 20u);
  EXPECT_EQ(h.idle_timeout, Duration(30'000));
  EXPECT_THAT(errors_of("listeners:\n  - name: a\n    port: 80\n    http2: {max_frame_size: 1k, streams: 3}\n"),
              ElementsAre(HasSubstr("test.yaml:4: listener \"a\": http2: unknown key \"streams\""),
                          HasSubstr("test.yaml:4: listener \"a\": http2.max_frame_size: 1k is out of range")));
}

TEST(ConfigTls, UpstreamProtocolAndTls) {
  auto cfg = load_ok(
      "listeners: [{name: a, port: 80}]\n"
      "upstreams:\n"
      "  - {name: plain, nodes: [\"10.0.0.1:80\"]}\n"
      "  - {name: grpc, nodes: [\"10.0.0.2:50051\"], protocol: h2c, h2_max_streams_per_connection: 10}\n"
      "  - {name: secure, nodes: [\"api.internal:443\"], protocol: h2}\n"
      "  - name: mtls\n"
      "    nodes: [\"10.0.0.3:443\"]\n"
      "    tls: {sni: api.internal, ca_file: ca.pem, cert: c.pem, key: c.key, verify: true}\n");
  ASSERT_TRUE(cfg);
  EXPECT_EQ(cfg->upstreams[0].protocol, UpstreamProtocol::http1);
  EXPECT_FALSE(cfg->upstreams[0].tls.enabled);
  EXPECT_EQ(cfg->upstreams[1].protocol, UpstreamProtocol::h2c);
  EXPECT_EQ(cfg->upstreams[1].h2_max_streams_per_connection, 10u);
  EXPECT_EQ(cfg->upstreams[2].protocol, UpstreamProtocol::h2);
  EXPECT_TRUE(cfg->upstreams[2].tls.enabled);  // h2 means TLS
  const auto& t = cfg->upstreams[3].tls;
  EXPECT_TRUE(t.enabled);
  EXPECT_EQ(t.sni, "api.internal");
  EXPECT_EQ(t.ca_file, "/etc/tp/ca.pem");
  EXPECT_EQ(t.cert_file, "/etc/tp/c.pem");
}

TEST(ConfigTls, UpstreamProtocolErrors) {
  EXPECT_THAT(errors_of("listeners: [{name: a, port: 80}]\n"
                        "upstreams:\n"
                        "  - {name: x, nodes: [\"10.0.0.1:80\"], protocol: spdy}\n"
                        "  - {name: y, nodes: [\"10.0.0.1:81\"], protocol: h2c, tls: {}}\n"
                        "  - {name: z, nodes: [\"10.0.0.1:82\"], tls: {cert: c.pem}}\n"),
              ElementsAre(HasSubstr("test.yaml:3: upstream \"x\": protocol: \"spdy\" is not a protocol"),
                          HasSubstr("test.yaml:4: upstream \"y\": protocol: \"h2c\" is cleartext"),
                          HasSubstr("test.yaml:5: upstream \"z\": tls: a client certificate needs both")));
}

}  // namespace
}  // namespace turnpike::config
