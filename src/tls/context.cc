// Building OpenSSL contexts from the config; SNI, ALPN and ticket-key callbacks.
#include "turnpike/tls/context.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "turnpike/common/strings.h"

namespace turnpike::tls {

namespace {

// Modern TLS 1.2 suites (forward secrecy, AEAD only); TLS 1.3 suites are OpenSSL's defaults.
constexpr const char* kDefaultCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

bool readable(const std::string& path, std::string& why) {
  if (::access(path.c_str(), R_OK) == 0) return true;
  why = std::string(std::strerror(errno));
  return false;
}

// ---- session ticket keys: process-wide, rotating ----

struct TicketKey {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
  std::chrono::steady_clock::time_point created;
};

class TicketKeyRing {
 public:
  void set_rotation(std::chrono::milliseconds r) {
    std::lock_guard lock(mu_);
    rotation_ = r;
  }
  // The key to encrypt new tickets with (rotating when it is due).
  bool current(TicketKey& out) {
    std::lock_guard lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (keys_.empty() || now - keys_.front().created >= rotation_) {
      TicketKey k;
      if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
          RAND_bytes(k.hmac, sizeof k.hmac) != 1) {
        return false;
      }
      k.created = now;
      keys_.insert(keys_.begin(), k);
      if (keys_.size() > 3) keys_.pop_back();
      if (keys_.size() > 1) rotated_.fetch_add(1, std::memory_order_relaxed);
    }
    out = keys_.front();
    return true;
  }
  // The key named `name`; `is_current` tells whether tickets made with it should be renewed.
  bool find(const unsigned char* name, TicketKey& out, bool& is_current) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (std::memcmp(keys_[i].name, name, sizeof keys_[i].name) == 0) {
        out = keys_[i];
        is_current = i == 0 && std::chrono::steady_clock::now() - keys_[i].created < rotation_;
        return true;
      }
    }
    return false;
  }
  std::atomic<uint64_t> issued{0}, decrypted{0}, rotated_{0};

 private:
  std::mutex mu_;  // taken once per handshake that issues or uses a ticket, never per request
  std::chrono::milliseconds rotation_{3'600'000};
  std::vector<TicketKey> keys_;  // newest first
};

TicketKeyRing& ticket_keys() {
  static TicketKeyRing ring;
  return ring;
}

bool set_ticket_hmac(EVP_MAC_CTX* hctx, const TicketKey& k) {
  OSSL_PARAM params[3];
  params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, const_cast<unsigned char*>(k.hmac), sizeof k.hmac);
  params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0);
  params[2] = OSSL_PARAM_construct_end();
  return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

// OpenSSL's ticket callback: enc=1 make a ticket, enc=0 open one. Returns -1 error, 0 unknown key
// (full handshake), 1 ok, 2 ok but issue a fresh ticket (made with an older key).
int ticket_key_cb(SSL*, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cctx, EVP_MAC_CTX* hctx,
                  int enc) {
  TicketKeyRing& ring = ticket_keys();
  TicketKey k;
  if (enc == 1) {
    if (!ring.current(k)) return -1;
    if (RAND_bytes(iv, EVP_CIPHER_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(key_name, k.name, sizeof k.name);
    if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
    if (!set_ticket_hmac(hctx, k)) return -1;
    ring.issued.fetch_add(1, std::memory_order_relaxed);
    return 1;
  }
  bool is_current = false;
  if (!ring.find(key_name, k, is_current)) return 0;
  if (!set_ticket_hmac(hctx, k)) return -1;
  if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), nullptr, k.aes, iv) != 1) return -1;
  ring.decrypted.fetch_add(1, std::memory_order_relaxed);
  return is_current ? 1 : 2;
}

// ---- SNI and ALPN ----

int servername_cb(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  std::string lower = to_lower_copy(name);
  SSL_CTX* ctx = self->context_for(lower);
  if (ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, ctx);
  return SSL_TLSEXT_ERR_OK;
}

int alpn_select_cb(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
                   void* arg) {
  const auto* self = static_cast<const ServerContext*>(arg);
  const std::string& ours = self->alpn_wire();
  unsigned char* selected = nullptr;
  // SSL_select_next_proto walks our list first: server preference wins.
  if (SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(ours.data()),
                            static_cast<unsigned>(ours.size()), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no common protocol: carry on without ALPN (HTTP/1.1)
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// The DNS names a certificate is for: subjectAltName DNS entries, else the subject CN.
std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const auto* s = gn->d.dNSName;
      names.push_back(to_lower_copy(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                                     static_cast<size_t>(ASN1_STRING_length(s)))));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0) {
      names.push_back(to_lower_copy(cn));
    }
  }
  return names;
}

std::string alpn_wire_format(const std::vector<std::string>& protos) {
  std::string wire;
  for (const auto& p : protos) {
    wire.push_back(static_cast<char>(p.size()));
    wire += p;
  }
  return wire;
}

}  // namespace

void set_ticket_key_rotation(std::chrono::milliseconds rotation) { ticket_keys().set_rotation(rotation); }

TlsStats tls_stats() {
  auto& r = ticket_keys();
  return {r.issued.load(), r.decrypted.load(), r.rotated_.load()};
}

// ---------------------------------------------------------------------------------------------
// ServerContext
// ---------------------------------------------------------------------------------------------

std::shared_ptr<const ServerContext> ServerContext::build(const config::ListenerConfig& listener,
                                                          std::vector<config::ConfigError>& errors) {
  const size_t errors_before = errors.size();
  std::shared_ptr<ServerContext> self(new ServerContext());
  self->config_ = *listener.tls;
  const auto& cfg = self->config_;
  std::vector<std::string> alpn;
  for (const auto& p : cfg.alpn) {
    if (p == "h2" && !listener.http2.enabled) continue;
    alpn.push_back(p);
  }
  if (alpn.empty()) alpn.push_back("http/1.1");
  self->alpn_wire_ = alpn_wire_format(alpn);
  set_ticket_key_rotation(cfg.ticket_key_rotation);

  auto fail = [&](const config::SourceRef& at, std::string message) {
    errors.push_back({at.file, at.line, "listener \"" + listener.name + "\": tls: " + std::move(message)});
  };
  for (const auto& cert : cfg.certificates) {
    std::string why;
    if (!readable(cert.cert_file, why)) {
      fail(cert.source, "cannot read certificate " + cert.cert_file + ": " + why);
      continue;
    }
    if (!readable(cert.key_file, why)) {
      fail(cert.source, "cannot read key " + cert.key_file + ": " + why);
      continue;
    }
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
      fail(cert.source, "cannot create a TLS context: " + openssl_errors());
      continue;
    }
    self->contexts_.push_back(ctx);  // freed by the destructor, whatever happens next
    SSL_CTX_set_min_proto_version(ctx, cfg.min_version == "TLSv1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    // Release read/write buffers while a connection is idle: small idle TLS connections.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read as much as the socket has in one call, not a record header and then its body (two
    // syscalls per record otherwise).
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, cfg.ciphers.empty() ? kDefaultCiphers : cfg.ciphers.c_str()) != 1) {
      fail(cert.source, "invalid ciphers \"" + cfg.ciphers + "\": " + openssl_errors());
    }
    if (!cfg.ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, cfg.ciphersuites.c_str()) != 1) {
      fail(cert.source, "invalid ciphersuites \"" + cfg.ciphersuites + "\": " + openssl_errors());
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.cert_file.c_str()) != 1) {
      fail(cert.source, "cannot load certificate " + cert.cert_file + ": " + openssl_errors());
      continue;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cert.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        fail(cert.source, "key " + cert.key_file + " does not match certificate " + cert.cert_file);
      } else {
        fail(cert.source, "cannot load key " + cert.key_file + ": " + openssl_errors());
      }
      continue;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      fail(cert.source, "key " + cert.key_file + " does not match certificate " + cert.cert_file);
      continue;
    }
    // Stateless resumption: tickets only, so any worker (and the next config) can resume a session.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (cfg.session_tickets) {
      SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
      SSL_CTX_set_num_tickets(ctx, 1);
    } else {
      SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, self.get());
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, self.get());

    std::vector<std::string> names = cert.server_names;
    if (names.empty()) names = certificate_names(SSL_CTX_get0_certificate(ctx));
    for (const auto& n : names) {
      if (n.starts_with("*.")) {
        self->wildcard_.emplace(n.substr(2), ctx);  // first certificate listed wins
      } else {
        self->exact_.emplace(n, ctx);
      }
    }
  }
  if (errors.size() != errors_before || self->contexts_.empty()) return nullptr;
  return self;
}

ServerContext::~ServerContext() {
  for (SSL_CTX* c : contexts_) SSL_CTX_free(c);
}

SSL_CTX* ServerContext::context_for(std::string_view name) const {
  if (auto it = exact_.find(std::string(name)); it != exact_.end()) return it->second;
  if (size_t dot = name.find('.'); dot != std::string_view::npos) {
    if (auto it = wildcard_.find(std::string(name.substr(dot + 1))); it != wildcard_.end()) return it->second;
  }
  return contexts_.front();
}

SSL* ServerContext::new_session() const {
  SSL* ssl = SSL_new(contexts_.front());
  if (ssl) SSL_set_accept_state(ssl);
  return ssl;
}

// ---------------------------------------------------------------------------------------------
// ClientContext
// ---------------------------------------------------------------------------------------------

std::shared_ptr<const ClientContext> ClientContext::build(const config::UpstreamConfig& upstream,
                                                          std::vector<config::ConfigError>& errors) {
  std::shared_ptr<ClientContext> self(new ClientContext());
  self->config_ = upstream.tls;
  const auto& cfg = self->config_;
  auto fail = [&](std::string message) {
    errors.push_back({upstream.source.file, upstream.source.line,
                      "upstream \"" + upstream.name + "\": tls: " + std::move(message)});
    return nullptr;
  };
  ERR_clear_error();
  self->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!self->ctx_) return fail("cannot create a TLS context: " + openssl_errors());
  SSL_CTX* ctx = self->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (cfg.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    std::string why;
    if (!cfg.ca_file.empty()) {
      if (!readable(cfg.ca_file, why)) return fail("cannot read ca_file " + cfg.ca_file + ": " + why);
      if (SSL_CTX_load_verify_locations(ctx, cfg.ca_file.c_str(), nullptr) != 1) {
        return fail("cannot load ca_file " + cfg.ca_file + ": " + openssl_errors());
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return fail("cannot load the system CA bundle: " + openssl_errors());
    }
  }
  if (!cfg.cert_file.empty()) {
    std::string why;
    if (!readable(cfg.cert_file, why)) return fail("cannot read cert " + cfg.cert_file + ": " + why);
    if (!readable(cfg.key_file, why)) return fail("cannot read key " + cfg.key_file + ": " + why);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg.cert_file.c_str()) != 1) {
      return fail("cannot load cert " + cfg.cert_file + ": " + openssl_errors());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
        ERR_clear_error();
        return fail("key " + cfg.key_file + " does not match certificate " + cfg.cert_file);
      }
      return fail("cannot load key " + cfg.key_file + ": " + openssl_errors());
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      return fail("key " + cfg.key_file + " does not match certificate " + cfg.cert_file);
    }
  }
  return self;
}

ClientContext::~ClientContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

SSL* ClientContext::new_session(std::string_view host, std::string_view alpn, SSL_SESSION* resume) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl);
  std::string name = config_.sni.empty() ? std::string(host) : config_.sni;
  unsigned char addr[16];
  const bool is_ip = inet_pton(AF_INET, name.c_str(), addr) == 1 || inet_pton(AF_INET6, name.c_str(), addr) == 1;
  if (!is_ip && !name.empty()) SSL_set_tlsext_host_name(ssl, name.c_str());
  if (config_.verify && !name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    }
  }
  if (!alpn.empty()) {
    SSL_set_alpn_protos(ssl, reinterpret_cast<const unsigned char*>(alpn.data()), static_cast<unsigned>(alpn.size()));
  }
  if (resume && config_.session_reuse) SSL_set_session(ssl, resume);
  return ssl;
}

}  // namespace turnpike::tls
