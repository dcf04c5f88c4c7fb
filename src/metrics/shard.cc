// A worker's metric cells (shard.h): the status-code slots and the histogram buckets.
#include "turnpike/metrics/shard.h"

namespace turnpike::metrics {

namespace {

// Slot by status code, made once at compile time: the request path indexes, never searches.
constexpr std::array<uint8_t, 600> kSlotOf = [] {
  std::array<uint8_t, 600> out{};
  for (size_t code = 0; code < out.size(); ++code) {
    size_t cls = code < 100 ? 4 : code / 100 - 1;  // 1xx -> 0 .. 5xx -> 4
    out[code] = static_cast<uint8_t>(kStatusCodes.size() + cls);
  }
  for (size_t i = 0; i < kStatusCodes.size(); ++i) out[kStatusCodes[i]] = static_cast<uint8_t>(i);
  return out;
}();

constexpr std::string_view kClassLabels[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr std::array<std::string_view, kStatusCodes.size()> kCodeLabels = {
    "200", "201", "202", "204", "206", "301", "302", "303", "304", "307", "308", "400", "401", "403", "404",
    "405", "408", "409", "413", "414", "415", "429", "431", "499", "500", "501", "502", "503", "504"};

}  // namespace

std::string_view to_string(MethodClass m) noexcept {
  switch (m) {
    case MethodClass::read: return "read";
    case MethodClass::write: return "write";
    case MethodClass::other: return "other";
  }
  return "?";
}

std::string_view to_string(ConnProtocol p) noexcept {
  switch (p) {
    case ConnProtocol::pending: return "pending";
    case ConnProtocol::http1: return "http1";
    case ConnProtocol::http1_tls: return "http1_tls";
    case ConnProtocol::h2c: return "h2c";
    case ConnProtocol::h2_tls: return "h2_tls";
  }
  return "?";
}

size_t status_slot(int status) noexcept {
  return kSlotOf[status >= 0 && status < 600 ? static_cast<size_t>(status) : 599];
}

std::string_view status_label(size_t slot) noexcept {
  if (slot < kCodeLabels.size()) return kCodeLabels[slot];
  slot -= kCodeLabels.size();
  return slot < 5 ? kClassLabels[slot] : "5xx";
}

void observe(Histogram& h, uint64_t us) noexcept {
  size_t b = 0;
  while (b < kBoundsUs.size() && us > kBoundsUs[b]) ++b;
  bump(h.buckets[b]);
  bump(h.sum_us, us);
}

WorkerMetrics::WorkerMetrics(uint32_t cap, bool enabled)
    : enabled_(enabled),
      routes_(enabled ? cap + 1 : 1),
      upstreams_(enabled ? cap + 1 : 1),
      listeners_(enabled ? cap + 1 : 1),
      plugins_(enabled ? cap + 1 : 1),
      nodes_(enabled ? cap + 1 : 1) {}

}  // namespace turnpike::metrics
