// The checker's per-node probe and the checks it runs (private to src/upstream: checker.cc
// schedules probes, check_http.cc and check_h2.cc run one check each).
//
// A check is one of two kinds:
//   - cleartext HTTP/1.1: on the connection kept from the last check, the request is written
//     with the tick's other sends and receives (io_batch.h) and judged by sent_kept(); without
//     one, connect_kept() starts a non-blocking connect and writes the request once it is
//     made. read_kept() reads the response on the following 20 ms ticks. The
//     descriptor is never in the reactor, so such a check costs a send and a recv (and a connect
//     when new) and no wake-up of its own: at 2,000 checks a second, or while a rolling update
//     replaces hundreds of nodes a second, the checker thread wakes on its ticks only.
//   - everything else (TCP connects, HTTPS, HTTP/2 and gRPC): a coroutine on the checker's
//     io_context, check_connected(), with its own deadline timer.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "turnpike/tls/transport.h"
#include "turnpike/upstream/checker.h"
#include "turnpike/upstream/upstream.h"

namespace turnpike::upstream {

class H2Check;
struct H2CheckDelete {  // (H2Check is complete in check_h2.cc only)
  void operator()(H2Check* c) const noexcept;
};

// What the probes of one upstream share: its settings and the request they send.
struct HealthChecker::Spec {
  std::shared_ptr<const void> config;          // keeps `health` (and `up->config`) alive
  std::shared_ptr<const ResolvedUpstream> up;  // its TLS context
  const config::UpstreamHealthConfig* health = nullptr;
  std::string name;
};

// An HTTP/1.x check's response as it arrives, and the verdict on it.
struct ResponseParser {
  static constexpr size_t kMaxResponse = 64 * 1024;  // a check reads at most this much

  std::string in;                      // capacity kept from check to check
  int status = 0;
  size_t body_at = std::string::npos;  // where the body starts in `in`
  size_t length = SIZE_MAX;            // Content-Length; SIZE_MAX: none (or chunked)
  bool close = true;                   // the node asked to close (or answered HTTP/1.0)
  bool complete = false;               // the whole response (Content-Length) is in `in`

  // As new, keeping `in`'s capacity.
  void reset() {
    std::string buffer = std::move(in);
    buffer.clear();
    *this = ResponseParser{};
    in = std::move(buffer);
  }
  // Takes `n` more bytes; true when nothing more is needed to judge (or the cap is reached).
  bool feed(const config::ActiveHealthConfig& a, const char* data, size_t n);
  bool keep_alive() const { return complete && !close; }
  // The verdict once reading stopped: true when passed, else false with the reason in `why`.
  // `ec` is the read's error (eof is none when a response came).
  bool verdict(const config::ActiveHealthConfig& a, bool timed_out, boost::system::error_code ec,
               std::string& why) const;
};

// Arms a check's deadline on `deadline`: when it passes, `io` is closed (the check's pending
// operation ends with an error) and the returned flag is set, so the failure reads "timeout".
// Destroying or cancelling the timer disarms it.
inline std::shared_ptr<bool> arm_check_deadline(asio::steady_timer& deadline, std::shared_ptr<tls::Transport> io,
                                                asio::steady_timer::duration timeout) {
  auto timed_out = std::make_shared<bool>(false);
  deadline.expires_after(timeout);
  deadline.async_wait([io = std::move(io), timed_out](boost::system::error_code ec) {
    if (ec) return;
    *timed_out = true;
    io->close();
  });
  return timed_out;
}

// One node's probe. Belongs to the checker thread. At any time it is in exactly one place: the
// checker's wheel (waiting for its next check), its list of kept checks being read, or a check
// coroutine.
struct HealthChecker::Probe {
  Probe(asio::io_context& ioc, std::shared_ptr<NodeHealth> n);
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  std::shared_ptr<NodeHealth> node;
  std::shared_ptr<const Spec> spec;     // replaced by a reload
  std::shared_ptr<const Spec> checking; // the spec of the check in flight
  tcp::endpoint endpoint;
  std::string host;                     // the node's configured host (Host header, TLS name, :authority)
  std::string request;                  // HTTP/1.x checks: the request's bytes
  // The connection kept from the last check: cleartext HTTP/1.1 as a bare descriptor outside the
  // reactor (sent_kept / connect_kept / read_kept); HTTPS as a transport; HTTP/2 as a session
  // (check_h2.cc).
  int kept_fd = -1;
  bool connecting = false;              // kept_fd is still connecting: the request is not sent yet
  bool fresh = false;                   // kept_fd was connected for the check in flight
  std::shared_ptr<tls::Transport> conn;
  std::unique_ptr<H2Check, H2CheckDelete> h2;
  ResponseParser response;
  asio::io_context& ioc;
  int64_t due_tick = 0;                 // the tick of the next check (while in the wheel)
  Clock::time_point started;            // of the check in flight
  Clock::time_point deadline;           // of the kept check being made or read
  bool busy = false;                    // a check is in flight (reading_ or a coroutine)
  bool reconnect = false;               // a reload changed its address or check type
  bool stopped = false;                 // no longer checked: dropped where it is found next

  void close_kept();  // the kept connection, whichever kind
};

// How a kept-connection check ended, or that it goes on.
enum class KeptResult : uint8_t {
  pending,  // no (complete) response yet: read again on the next tick
  passed,
  failed,
  stale,    // the node had closed the connection before this check (not its fault): connect anew
};
std::string_view to_string(KeptResult r) noexcept;

// What sending the request on p.kept_fd came to, given the send's result (bytes, or -errno):
// pending (now read it), failed, or stale (the descriptor is closed).
KeptResult sent_kept(HealthChecker::Probe& p, ssize_t sent, std::string& why);
// Connects p.kept_fd anew (non-blocking) and sends the request when the connection is made at
// once (on loopback it often is), else on a later read_kept: pending, or failed. p.deadline is
// the check's.
KeptResult connect_kept(HealthChecker::Probe& p, Clock::time_point now, std::string& why);
// Sends the request once p.kept_fd is connected, then reads what arrived (non-blocking): pending
// until the response is judged or `now` passes p.deadline. The descriptor is closed unless it can
// serve the next check. Stale only for a connection kept from an earlier check. `first`, when
// given, is a receive already made on p.kept_fd for this call (the tick's IoBatch); read_kept
// receives more only when it filled its buffer.
struct Received {
  ssize_t n;          // the recv's result: bytes, 0 (closed), or -errno
  const char* data;
  size_t capacity;
};
KeptResult read_kept(HealthChecker::Probe& p, Clock::time_point now, std::string& why,
                     const Received* first = nullptr);

// One check through the reactor on a new connection (or on the kept HTTPS / HTTP/2 one), for the
// types other than cleartext HTTP/1.1: true when it passed, else false with the reason in `why`.
asio::awaitable<bool> check_connected(HealthChecker::Probe& p, const HealthChecker::Spec& spec, std::string& why);

// An HTTP/2 or gRPC check (check_h2.cc), on the probe's kept session when it has one.
asio::awaitable<bool> check_h2(HealthChecker::Probe& p, const HealthChecker::Spec& spec, std::string& why);
void close_h2(HealthChecker::Probe& p);

// `status` is one the check expects (`statuses`, else 200-399).
bool status_expected(const config::ActiveHealthConfig& a, int status);

// The request an HTTP/1.1 check sends.
std::string build_http_request(const config::ActiveHealthConfig& a, const std::string& host, uint16_t port);

}  // namespace turnpike::upstream
