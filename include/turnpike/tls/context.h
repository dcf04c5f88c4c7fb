// TLS contexts built from the config, immutable once built, shared by every worker.
//
// A ServerContext serves one listener: one OpenSSL context per certificate, the one for the
// client's SNI name picked during the handshake (exact name, then "*.parent", then the default),
// ALPN, and session tickets encrypted with process-wide keys that rotate on a schedule (so a
// ticket stays valid across workers and across reloads). A ClientContext does the same for
// connections to an upstream: verification against a CA bundle, SNI, an optional client
// certificate, and session resumption.
//
// Contexts are rebuilt on every reload: new handshakes use the new certificates, while open
// connections keep the SSL objects (and contexts, by reference count) they started with.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "turnpike/config/config.h"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_session_st SSL_SESSION;

namespace turnpike::tls {

class ServerContext {
 public:
  // Loads and checks every certificate/key pair (a missing file, a bad PEM, a key that does not
  // match its certificate are reported as `file:line: ...` of the certificate entry). Null on error.
  static std::shared_ptr<const ServerContext> build(const config::ListenerConfig& listener,
                                                    std::vector<config::ConfigError>& errors);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  // A new server-side SSL object for an accepted connection (accept state set), or null.
  SSL* new_session() const;
  // ALPN: the protocols offered, in wire format (length-prefixed), server preference first.
  const std::string& alpn_wire() const { return alpn_wire_; }
  // The context serving `server_name` (lower-case), or the default one.
  SSL_CTX* context_for(std::string_view server_name) const;
  const config::ListenerTlsConfig& config() const { return config_; }

 private:
  ServerContext() = default;
  config::ListenerTlsConfig config_;
  std::vector<SSL_CTX*> contexts_;                     // one per certificate, config order
  std::unordered_map<std::string, SSL_CTX*> exact_;    // "api.example.com"
  std::unordered_map<std::string, SSL_CTX*> wildcard_; // "example.com" for "*.example.com"
  std::string alpn_wire_;
};

class ClientContext {
 public:
  static std::shared_ptr<const ClientContext> build(const config::UpstreamConfig& upstream,
                                                    std::vector<config::ConfigError>& errors);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  // A new client-side SSL object (connect state) for a connection to `host` (SNI and the name
  // verified: the configured sni, else `host` when it is a name). `alpn` in wire format or empty.
  // `resume` is a session to offer for resumption (may be null).
  SSL* new_session(std::string_view host, std::string_view alpn, SSL_SESSION* resume) const;
  const config::UpstreamTlsConfig& config() const { return config_; }

 private:
  ClientContext() = default;
  config::UpstreamTlsConfig config_;
  SSL_CTX* ctx_ = nullptr;
};

// Process-wide ticket key ring (all workers, all listeners, across reloads). Keys rotate every
// `rotation`; a ticket made with one of the last three keys is still accepted.
void set_ticket_key_rotation(std::chrono::milliseconds rotation);

// Session tickets and handshakes counted for the exit summary and tests.
struct TlsStats {
  uint64_t tickets_issued;
  uint64_t tickets_decrypted;
  uint64_t ticket_keys_rotated;
};
TlsStats tls_stats();

}  // namespace turnpike::tls
