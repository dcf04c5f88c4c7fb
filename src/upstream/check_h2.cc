// HTTP/2 and gRPC checks (probe.h): one nghttp2 client session per node, kept from check to check
// (a new stream per check), over cleartext (h2c, prior knowledge) or, when the upstream has TLS
// settings, over TLS with ALPN h2.
//
//   type: h2    an HTTP request (method, path, host; expected statuses and body match as for http)
//   type: grpc  grpc.health.v1.Health/Check with HealthCheckRequest{service}; healthy when the
//               answer is grpc-status 0 with HealthCheckResponse{status: SERVING}
//
// A kept session the node closed (or sent GOAWAY on) meanwhile is replaced once, without counting
// as a failure, as for HTTP/1.1 checks.
#include <nghttp2/nghttp2.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <tuple>
#include <vector>

#include "probe.h"
#include "turnpike/tls/transport.h"

namespace turnpike::upstream {

namespace {

constexpr std::string_view kAlpnH2 = "\x02h2";
constexpr std::string_view kGrpcPath = "/grpc.health.v1.Health/Check";
constexpr size_t kMaxBody = 64 * 1024;  // a check keeps at most this much of a response body

// grpc.health.v1.HealthCheckResponse.ServingStatus, by value.
std::string_view serving_status_name(uint64_t v) {
  switch (v) {
    case 0: return "UNKNOWN";
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
  }
  return "unknown value";
}

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

bool get_varint(std::string_view& in, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto b = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    v |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// The gRPC message carrying HealthCheckRequest{service} (field 1, a string): the 5-byte
// length prefix (uncompressed), then the protobuf bytes.
std::string grpc_health_request(std::string_view service) {
  std::string msg;
  if (!service.empty()) {
    msg.push_back(0x0a);  // field 1, length-delimited
    put_varint(msg, service.size());
    msg.append(service);
  }
  std::string out(5, '\0');
  const auto n = static_cast<uint32_t>(msg.size());
  out[1] = static_cast<char>(n >> 24);
  out[2] = static_cast<char>(n >> 16);
  out[3] = static_cast<char>(n >> 8);
  out[4] = static_cast<char>(n);
  return out + msg;
}

// HealthCheckResponse.status (field 1, a varint; 0 when absent) from the first gRPC message of
// `body`; false when the body holds no well-formed uncompressed message.
bool grpc_serving_status(std::string_view body, uint64_t& status, std::string& why) {
  if (body.size() < 5) {
    why = "grpc: no response message";
    return false;
  }
  if (body[0] != 0) {
    why = "grpc: compressed response message";
    return false;
  }
  const uint32_t n = (uint32_t{static_cast<uint8_t>(body[1])} << 24) | (uint32_t{static_cast<uint8_t>(body[2])} << 16) |
                     (uint32_t{static_cast<uint8_t>(body[3])} << 8) | uint32_t{static_cast<uint8_t>(body[4])};
  if (body.size() - 5 < n) {
    why = "grpc: truncated response message";
    return false;
  }
  std::string_view msg = body.substr(5, n);
  status = 0;  // proto3: an absent field is its default, UNKNOWN
  bool well_formed = true;
  while (!msg.empty() && well_formed) {
    uint64_t key = 0;
    uint64_t v = 0;
    well_formed = get_varint(msg, key);
    const uint64_t wire = key & 7;
    if (!well_formed) {
    } else if (wire == 0) {  // varint: field 1 is the status
      well_formed = get_varint(msg, v);
      if (well_formed && (key >> 3) == 1) status = v;
    } else if (wire == 2) {  // length-delimited: skipped
      well_formed = get_varint(msg, v) && v <= msg.size();
      if (well_formed) msg.remove_prefix(v);
    } else if (wire == 1 || wire == 5) {  // fixed64, fixed32: skipped
      const size_t skip = wire == 1 ? 8 : 4;
      well_formed = msg.size() >= skip;
      if (well_formed) msg.remove_prefix(skip);
    } else {
      well_formed = false;
    }
  }
  if (!well_formed) why = "grpc: malformed HealthCheckResponse";
  return well_formed;
}

}  // namespace

// One node's HTTP/2 check connection and the stream of the check in flight.
class H2Check {
 public:
  explicit H2Check(asio::io_context& ioc) : io(std::make_shared<tls::Transport>(tcp::socket(ioc))) {}
  ~H2Check() {
    if (session) nghttp2_session_del(session);
    io->close();
  }
  H2Check(const H2Check&) = delete;
  H2Check& operator=(const H2Check&) = delete;

  bool usable() const { return session && !goaway && io->socket().is_open(); }
  bool start_session();
  bool submit(const HealthChecker::Probe& p, const HealthChecker::Spec& spec);
  asio::awaitable<boost::system::error_code> flush();

  std::shared_ptr<tls::Transport> io;  // shared with a check's deadline handler
  nghttp2_session* session = nullptr;
  bool goaway = false;  // the node sent GOAWAY: no new streams on this session
  // The check's stream.
  int32_t stream_id = -1;
  int status = 0;               // :status; 0 until the head came
  bool have_grpc_status = false;
  std::string grpc_status;      // from the trailers (or a trailers-only head)
  std::string grpc_message;
  std::string body;             // at most kMaxBody
  bool closed = false;          // the stream ended (error_code says how)
  uint32_t error_code = 0;
  std::string request_body;     // gRPC: the request message
  size_t body_sent = 0;

  // ---- nghttp2 callbacks ----
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* c = static_cast<H2Check*>(user);
    if (frame->hd.stream_id != c->stream_id) return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int s = 0;
      for (char ch : v) s = (ch >= '0' && ch <= '9' && s < 1000) ? s * 10 + (ch - '0') : 1000;
      c->status = s < 1000 ? s : 0;
    } else if (n == "grpc-status") {
      c->have_grpc_status = true;
      c->grpc_status.assign(v.substr(0, 16));
    } else if (n == "grpc-message") {
      c->grpc_message.assign(v.substr(0, 200));
    }
    return 0;
  }
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user) {
    auto* c = static_cast<H2Check*>(user);
    if (stream_id == c->stream_id && c->body.size() < kMaxBody) {
      c->body.append(reinterpret_cast<const char*>(data), std::min(len, kMaxBody - c->body.size()));
    }
    return 0;
  }
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_GOAWAY) static_cast<H2Check*>(user)->goaway = true;
    return 0;
  }
  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    auto* c = static_cast<H2Check*>(user);
    if (stream_id == c->stream_id) {
      c->closed = true;
      c->error_code = error_code;
    }
    return 0;
  }
  static ssize_t read_body(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                           nghttp2_data_source*, void* user) {
    auto* c = static_cast<H2Check*>(user);
    const size_t n = std::min(length, c->request_body.size() - c->body_sent);
    std::memcpy(buf, c->request_body.data() + c->body_sent, n);
    c->body_sent += n;
    if (c->body_sent == c->request_body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

void H2CheckDelete::operator()(H2Check* c) const noexcept { delete c; }

void close_h2(HealthChecker::Probe& p) { p.h2.reset(); }

bool H2Check::start_session() {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return false;
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  const int rv = nghttp2_session_client_new(&session, cbs, this);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) {
    session = nullptr;
    return false;
  }
  // One stream at a time, small answers: the defaults' windows are plenty; no server push.
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                             {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1}};
  return nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings)) == 0;
}

bool H2Check::submit(const HealthChecker::Probe& p, const HealthChecker::Spec& spec) {
  const config::ActiveHealthConfig& a = spec.health->active;
  const bool grpc = a.type == config::HealthCheckType::grpc;
  status = 0;
  have_grpc_status = false;
  grpc_status.clear();
  grpc_message.clear();
  body.clear();
  closed = false;
  error_code = 0;
  body_sent = 0;
  const std::string authority =
      !a.host.empty() ? a.host : p.host + ":" + std::to_string(p.endpoint.port());
  const std::string_view scheme = io->is_tls() ? "https" : "http";
  const std::string timeout = std::to_string(std::max<int64_t>(1, a.timeout.count())) + "m";  // grpc-timeout, ms
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE};
  };
  std::vector<nghttp2_nv> head;
  head.reserve(8);
  head.push_back(nv(":method", grpc ? std::string_view("POST") : std::string_view(a.method)));
  head.push_back(nv(":scheme", scheme));
  head.push_back(nv(":path", grpc ? kGrpcPath : std::string_view(a.path)));
  head.push_back(nv(":authority", authority));
  head.push_back(nv("user-agent", "turnpike-health-check"));
  nghttp2_data_provider provider{};
  if (grpc) {
    head.push_back(nv("content-type", "application/grpc"));
    head.push_back(nv("te", "trailers"));
    head.push_back(nv("grpc-timeout", timeout));
    request_body = grpc_health_request(a.grpc_service);
    provider.read_callback = read_body;
  } else {
    head.push_back(nv("accept", "*/*"));
  }
  stream_id = nghttp2_submit_request(session, nullptr, head.data(), head.size(), grpc ? &provider : nullptr, this);
  return stream_id > 0;
}

asio::awaitable<boost::system::error_code> H2Check::flush() {
  std::string out;
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n < 0) co_return asio::error::connection_aborted;
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
  if (out.empty()) co_return boost::system::error_code{};
  const boost::system::error_code ec = co_await io->write_all(out);
  co_return ec;
}

namespace {

// The verdict on a finished stream: true when passed, else false with the reason in `why`.
bool h2_verdict(const H2Check& c, const config::ActiveHealthConfig& a, std::string& why) {
  if (c.status == 0) {
    why = c.closed ? "stream reset (HTTP/2 error " + std::to_string(c.error_code) + ")" : "no response";
    return false;
  }
  if (a.type == config::HealthCheckType::h2) {
    if (!status_expected(a, c.status)) {
      why = "status " + std::to_string(c.status);
      return false;
    }
    if (!a.body.empty() && c.body.find(a.body) == std::string::npos) {
      why = "body does not match";
      return false;
    }
    return true;
  }
  if (c.status != 200) {
    why = "status " + std::to_string(c.status);
    return false;
  }
  if (!c.have_grpc_status) {
    why = "grpc: no grpc-status";
    return false;
  }
  if (c.grpc_status != "0") {
    why = "grpc-status " + c.grpc_status + (c.grpc_message.empty() ? "" : " (" + c.grpc_message + ")");
    return false;
  }
  uint64_t serving = 0;
  if (!grpc_serving_status(c.body, serving, why)) return false;
  if (serving != 1) {
    why = "grpc: " + std::string(serving_status_name(serving));
    return false;
  }
  return true;
}

// One check on p.h2 (connected first when `fresh`). `stale` is set when a kept session turned out
// closed before any answer.
asio::awaitable<bool> h2_check_once(HealthChecker::Probe& p, const HealthChecker::Spec& spec, std::string& why,
                                    bool fresh, bool& stale) {
  const config::ActiveHealthConfig& a = spec.health->active;
  H2Check& c = *p.h2;
  std::shared_ptr<tls::Transport> io = c.io;
  asio::steady_timer deadline(p.ioc);
  const std::shared_ptr<bool> timed_out = arm_check_deadline(deadline, io, a.timeout);
  auto fail = [&](std::string_view what, boost::system::error_code ec) {
    why = *timed_out ? std::string("timeout") : std::string(what) + (ec ? ": " + ec.message() : std::string());
    return false;
  };
  bool ok = false;
  do {
    boost::system::error_code ec;
    if (fresh) {
      std::tie(ec) = co_await io->socket().async_connect(p.endpoint, asio::as_tuple(asio::use_awaitable));
      if (ec || *timed_out) {
        ok = fail("connect", ec);
        break;
      }
      boost::system::error_code ignored;
      io->socket().non_blocking(true, ignored);
      io->socket().set_option(tcp::no_delay(true), ignored);
      if (const tls::ClientContext* ctx = spec.up->tls.get()) {
        SSL* ssl = ctx->new_session(ctx->config().sni.empty() ? p.host : ctx->config().sni, kAlpnH2, nullptr);
        if (!ssl) {
          ok = fail("tls", {});
          break;
        }
        io->start_tls(ssl);
        ec = co_await io->handshake();
        if (ec || *timed_out) {
          ok = fail("tls handshake", ec);
          break;
        }
        if (io->alpn() != "h2") {
          ok = fail("tls: the node did not choose h2 (ALPN)", {});
          break;
        }
      }
      if (!c.start_session()) {
        ok = fail("h2 session", {});
        break;
      }
    }
    if (!c.submit(p, spec)) {
      ok = fail("h2 submit", {});
      break;
    }
    ec = co_await c.flush();
    if (ec || *timed_out) {
      stale = !fresh && !*timed_out;
      ok = fail("send", ec);
      break;
    }
    bool any = false;  // any byte from the node during this check
    std::array<uint8_t, 8192> buf;
    while (!c.closed) {
      const size_t n = io->read_some(buf.data(), buf.size(), ec);
      if (ec == asio::error::would_block) {
        ec = co_await io->wait_readable();
        if (ec || *timed_out) break;
        continue;
      }
      if (ec) break;
      any = true;
      if (nghttp2_session_mem_recv(c.session, buf.data(), n) < 0) {
        ec = asio::error::connection_aborted;
        c.goaway = true;  // a protocol error: this session is done
        break;
      }
      ec = co_await c.flush();
      if (ec) break;
    }
    // A GOAWAY that excluded this stream: the node did not process it (a kept session it is closing).
    if (c.closed && c.status == 0 && c.error_code == NGHTTP2_REFUSED_STREAM && !fresh) {
      stale = true;
      ok = fail("refused stream", {});
      break;
    }
    if (!c.closed) {
      stale = !fresh && !*timed_out && (!any || (c.goaway && c.status == 0));
      ok = fail(c.goaway ? "GOAWAY" : "no response", ec == asio::error::eof ? boost::system::error_code{} : ec);
      break;
    }
    ok = h2_verdict(c, a, why);
  } while (false);
  deadline.cancel();
  co_return ok;
}

}  // namespace

asio::awaitable<bool> check_h2(HealthChecker::Probe& p, const HealthChecker::Spec& spec, std::string& why) {
  bool fresh = !p.h2 || !p.h2->usable();
  if (fresh) p.h2.reset(new H2Check(p.ioc));
  bool stale = false;
  bool ok = co_await h2_check_once(p, spec, why, fresh, stale);
  if (stale) {  // the node had closed the kept session: once more on a new one
    p.h2.reset(new H2Check(p.ioc));
    stale = false;
    ok = co_await h2_check_once(p, spec, why, true, stale);
  }
  // A session is kept only while it works: any failure of the connection itself starts anew.
  if (!p.h2->usable() || !p.h2->closed) p.h2.reset();
  co_return ok;
}

}  // namespace turnpike::upstream
