// One worker's metric cells: plain counters the worker alone writes, read by the scrape.
//
// Hot path: recording is an array index and a relaxed load+store (std::atomic_ref), which
// compiles to a plain add on x86: no lock, no locked instruction, nothing shared with another
// worker. The scrape (main thread) reads every worker's cells relaxed and sums them; a value may
// be a few requests behind, never torn.
//
// Cells are indexed by the stable ids of series.h and allocated once for the whole id range
// (calloc: pages the workers never touch are never made resident), so nothing moves while the
// scrape reads.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string_view>

namespace turnpike::metrics {

// Requests by method class: reads do not change state, writes may.
enum class MethodClass : uint8_t {
  read,   // GET, HEAD, OPTIONS, TRACE
  write,  // POST, PUT, PATCH, DELETE
  other,  // CONNECT and extension methods
};
inline constexpr size_t kMethodClasses = 3;
std::string_view to_string(MethodClass m) noexcept;

// Status codes with a series of their own; any other code counts under its class ("2xx"), so a
// client or upstream inventing codes cannot add series.
inline constexpr std::array<uint16_t, 29> kStatusCodes = {200, 201, 202, 204, 206, 301, 302, 303, 304, 307,
                                                         308, 400, 401, 403, 404, 405, 408, 409, 413, 414,
                                                         415, 429, 431, 499, 500, 501, 502, 503, 504};
inline constexpr size_t kStatusSlots = kStatusCodes.size() + 5;  // then 1xx..5xx
// The slot of a status code (100..599; anything else counts as 5xx).
size_t status_slot(int status) noexcept;
// The label value of a slot: "200", or "2xx" for the class slots.
std::string_view status_label(size_t slot) noexcept;

// Histogram bucket bounds, in microseconds: 1 ms .. 10 s (Prometheus reports seconds).
inline constexpr std::array<uint64_t, 13> kBoundsUs = {1'000,   2'500,   5'000,     10'000,    25'000,
                                                      50'000,  100'000, 250'000,   500'000,   1'000'000,
                                                      2'500'000, 5'000'000, 10'000'000};
inline constexpr size_t kBuckets = kBoundsUs.size() + 1;  // the last is +Inf

// The upstream failure kinds are the gateway's outcomes (proxy/outcome.h), by their index.
inline constexpr size_t kMaxFailureKinds = 16;

struct Histogram {
  uint64_t buckets[kBuckets];  // per bucket, not cumulative (the scrape accumulates)
  uint64_t sum_us;
};

struct RouteCells {
  uint64_t requests[kMethodClasses][kStatusSlots];
  Histogram duration;
  uint64_t bytes_in;   // request body bytes from clients
  uint64_t bytes_out;  // response body bytes to clients
};

struct UpstreamCells {
  Histogram response;  // from the first attempt to the response head
  Histogram connect;   // new connections only
  uint64_t failures[kMaxFailureKinds];
  uint64_t in_flight;  // increments and decrements; summed over workers it is the gauge
};

// What a client connection speaks, for the connection series by listener and protocol.
enum class ConnProtocol : uint8_t {
  pending,    // not known yet: PROXY header, TLS handshake, or no request yet
  http1,      // HTTP/1.x over TCP
  http1_tls,  // HTTP/1.x over TLS
  h2c,        // HTTP/2 over TCP (prior knowledge)
  h2_tls,     // HTTP/2 over TLS (ALPN h2)
};
inline constexpr size_t kConnProtocols = 5;
std::string_view to_string(ConnProtocol p) noexcept;

struct ListenerCells {
  uint64_t accepted;
  uint64_t open[kConnProtocols];         // increments and decrements; summed over workers, the gauge
  uint64_t established[kConnProtocols];  // connections whose protocol became known (not pending)
};

struct NodeCells {
  uint64_t in_flight;  // attempts under way to the node (increments and decrements)
};

struct PluginCells {
  uint64_t errors;         // a phase call raised, ran out of memory, or timed out
  uint64_t budget_cutoffs; // of those, cut off by the instruction budget
};

// Relaxed access to a cell (single writer).
inline void bump(uint64_t& cell, uint64_t n = 1) noexcept {
  std::atomic_ref<uint64_t> r(cell);
  r.store(r.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline uint64_t load(const uint64_t& cell) noexcept {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(cell)).load(std::memory_order_relaxed);
}
void observe(Histogram& h, uint64_t us) noexcept;

// Cells for ids 0..slots-1, zeroed, never moved.
template <class T>
class CellBlock {
 public:
  explicit CellBlock(size_t slots) : cells_(static_cast<T*>(std::calloc(slots, sizeof(T)))), slots_(slots) {
    if (!cells_) throw std::bad_alloc();
  }
  T& operator[](size_t id) noexcept { return cells_.get()[id < slots_ ? id : slots_ - 1]; }
  const T& operator[](size_t id) const noexcept { return cells_.get()[id < slots_ ? id : slots_ - 1]; }

 private:
  struct Free {
    void operator()(T* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<T, Free> cells_;
  size_t slots_;
};

class WorkerMetrics {
 public:
  // `cap`: the registry's (ids 0..cap, cap being the overflow series). Disabled: every record
  // call returns at once (no admin listener, or metrics turned off).
  WorkerMetrics(uint32_t cap, bool enabled);

  bool enabled() const { return enabled_; }
  void request(uint32_t route, MethodClass m, int status, uint64_t duration_us, uint64_t bytes_in,
               uint64_t bytes_out) noexcept {
    if (!enabled_) return;
    RouteCells& c = routes_[route];
    bump(c.requests[static_cast<size_t>(m)][status_slot(status)]);
    observe(c.duration, duration_us);
    if (bytes_in) bump(c.bytes_in, bytes_in);
    if (bytes_out) bump(c.bytes_out, bytes_out);
  }
  void upstream_response(uint32_t up, uint64_t us) noexcept {
    if (enabled_) observe(upstreams_[up].response, us);
  }
  void upstream_connect(uint32_t up, uint64_t us) noexcept {
    if (enabled_) observe(upstreams_[up].connect, us);
  }
  void upstream_failure(uint32_t up, size_t kind) noexcept {
    if (enabled_ && kind < kMaxFailureKinds) bump(upstreams_[up].failures[kind]);
  }
  void in_flight(uint32_t up, int delta) noexcept {
    if (enabled_) bump(upstreams_[up].in_flight, static_cast<uint64_t>(static_cast<int64_t>(delta)));
  }
  void accepted(uint32_t listener) noexcept {
    if (enabled_) bump(listeners_[listener].accepted);
  }
  // The connection series of `listener`: a connection opened speaking `p` (often pending), its
  // protocol became known, it closed.
  void connection_opened(uint32_t listener, ConnProtocol p) noexcept {
    if (!enabled_) return;
    bump(listeners_[listener].open[static_cast<size_t>(p)]);
    if (p != ConnProtocol::pending) bump(listeners_[listener].established[static_cast<size_t>(p)]);
  }
  void connection_settled(uint32_t listener, ConnProtocol from, ConnProtocol to) noexcept {
    if (!enabled_) return;
    bump(listeners_[listener].open[static_cast<size_t>(from)], ~uint64_t{0});  // -1
    connection_opened(listener, to);
  }
  void connection_closed(uint32_t listener, ConnProtocol p) noexcept {
    if (enabled_) bump(listeners_[listener].open[static_cast<size_t>(p)], ~uint64_t{0});  // -1
  }
  void node_in_flight(uint32_t node, int delta) noexcept {
    if (enabled_) bump(nodes_[node].in_flight, static_cast<uint64_t>(static_cast<int64_t>(delta)));
  }
  void plugin_error(uint32_t plugin, bool budget) noexcept {
    if (!enabled_) return;
    bump(plugins_[plugin].errors);
    if (budget) bump(plugins_[plugin].budget_cutoffs);
  }

  const RouteCells& route(uint32_t id) const { return routes_[id]; }
  const UpstreamCells& upstream(uint32_t id) const { return upstreams_[id]; }
  const ListenerCells& listener(uint32_t id) const { return listeners_[id]; }
  const PluginCells& plugin(uint32_t id) const { return plugins_[id]; }
  const NodeCells& node(uint32_t id) const { return nodes_[id]; }

 private:
  bool enabled_;
  CellBlock<RouteCells> routes_;
  CellBlock<UpstreamCells> upstreams_;
  CellBlock<ListenerCells> listeners_;
  CellBlock<PluginCells> plugins_;
  CellBlock<NodeCells> nodes_;
};

}  // namespace turnpike::metrics
