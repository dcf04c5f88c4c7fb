// Mirror queues (turnpike/lua/mirror.h): per-worker bounded queues of request copies, sent to a
// mirror target by at most `concurrency` sender coroutines per queue over the PDK's HTTP client
// (pooled keepalive connections, http_client.h).
//
// Why it cannot slow the client's request: tp_mirror_send copies the request and returns; the
// copy is sent later by a sender coroutine on the worker's io_context, which waits for the
// target's answer (or its timeout) without holding anything the request path needs. A full
// queue drops the copy at once. The only per-request costs are the copy and, when no sender is
// running, one co_spawn.
//
// Lifetime: the queues belong to an io_context service, and every sender holds its queue by
// shared_ptr, so a sender frame destroyed with the io_context (shutdown) still finds its queue.
#include "turnpike/lua/mirror.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http_client.h"
#include "turnpike/lua/plugin_metrics.h"

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// What happened to copies, as exported on /metrics (turnpike_plugin_mirror_queue_copies_total).
enum class MirrorResult : uint8_t {
  sent, failed, dropped, skipped, status_same, status_differed, body_same, body_differed, count_
};
constexpr const char* kMirrorResultNames[] = {"sent",        "failed",          "dropped",   "skipped",
                                              "status_same", "status_differed", "body_same", "body_differed"};
static_assert(std::size(kMirrorResultNames) == static_cast<size_t>(MirrorResult::count_));

struct tp_mirror : std::enable_shared_from_this<tp_mirror> {
  std::string name;
  asio::io_context* io = nullptr;
  // Settings, rewritten by each tp_mirror_queue call (a conf prepared after a reload).
  std::string host, port;
  size_t queue_size = 1;
  size_t concurrency = 1;
  std::chrono::milliseconds timeout{1000};

  // A copy waiting to be sent: the request without host and port (the queue's, at send time).
  struct Copy {
    turnpike::lua::HttpRequest request;
    int32_t primary_status = 0;
    bool compare_body = false;  // with primary_body_crc, the primary response body's CRC-32
    uint32_t primary_body_crc = 0;
  };
  std::deque<Copy> waiting;
  size_t senders = 0;     // sender coroutines running (each sends one copy at a time)
  bool stopped = false;   // the worker is stopping: accept nothing more
  tp_mirror_stats stats{};
  // This queue's series of the copies metric, per result (-1: none, writes dropped). Found once,
  // when the queue is made; a write is then a plain add to the worker's shard.
  std::array<int64_t, static_cast<size_t>(MirrorResult::count_)> metric_slots;

  void count(MirrorResult r, uint64_t n = 1) const {
    tp_metrics_add(metric_slots[static_cast<size_t>(r)], static_cast<double>(n));
  }
};

namespace turnpike::lua {
namespace {

thread_local asio::io_context* t_io = nullptr;

// The queue's series of the copies metric, by result (the metric is defined once per process).
void find_metric_slots(tp_mirror& q) {
  static const int metric = [] {
    const std::string_view name = "mirror_queue_copies_total";
    const std::string_view help = "Copies in the worker's mirror queues (turnpike.mirror) by queue and result: "
                                  "sent, failed, dropped, skipped, and the comparisons (status_same, status_differed, "
                                  "body_same, body_differed).";
    const std::string_view labels("queue\0result\0", 13);
    char err[128];
    return tp_metrics_define(name.data(), name.size(), 0, help.data(), help.size(), labels.data(), labels.size(), 2,
                             nullptr, 0, 1000, err, sizeof err);
  }();
  for (size_t i = 0; i < q.metric_slots.size(); ++i) {
    std::string values = q.name;
    values.push_back('\0');
    values.append(kMirrorResultNames[i]).push_back('\0');
    int64_t slot = metric < 0 ? -1 : tp_metrics_series(metric, values.data(), values.size());
    q.metric_slots[i] = slot <= -2 ? -2 - slot : slot;  // past max_series: the overflow series
  }
}

class MirrorQueues : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;
  explicit MirrorQueues(asio::execution_context& ctx) : service(ctx) {}

  std::shared_ptr<tp_mirror> find_or_add(std::string_view name) {
    if (tp_mirror* q = find(name)) return q->shared_from_this();
    auto q = std::make_shared<tp_mirror>();
    q->name = std::string(name);
    find_metric_slots(*q);
    queues_.push_back(q);
    return q;
  }

  tp_mirror* find(std::string_view name) {
    for (auto& q : queues_) {
      if (q->name == name) return q.get();
    }
    return nullptr;
  }

  std::vector<std::shared_ptr<tp_mirror>>& queues() { return queues_; }

 private:
  // The io_context is going away: nothing more is sent (senders still pending are destroyed
  // with it; each keeps its queue alive until then).
  void shutdown() override {
    for (auto& q : queues_) {
      q->stopped = true;
      q->waiting.clear();
    }
  }

  std::vector<std::shared_ptr<tp_mirror>> queues_;  // a few per worker: one per mirroring route
};

asio::execution_context::id MirrorQueues::id;

// Counts a sender out, also when its frame is destroyed unfinished. It was counted in when it
// was spawned: copies offered before it starts must not spawn more than `concurrency`.
struct SenderSlot {
  std::shared_ptr<tp_mirror> q;
  explicit SenderSlot(std::shared_ptr<tp_mirror> queue) : q(std::move(queue)) {}
  ~SenderSlot() { --q->senders; }
  SenderSlot(const SenderSlot&) = delete;
  SenderSlot& operator=(const SenderSlot&) = delete;
};

void record(tp_mirror& q, const tp_mirror::Copy& copy, const HttpResult& r) {
  if (r.status <= 0 || r.error != HttpError::none) {
    ++q.stats.failed;
    q.count(MirrorResult::failed);
    return;
  }
  ++q.stats.sent;
  q.count(MirrorResult::sent);
  if (copy.primary_status > 0) {
    ++q.stats.compared;
    const bool differed = r.status != copy.primary_status;
    if (differed) ++q.stats.differed;
    q.count(differed ? MirrorResult::status_differed : MirrorResult::status_same);
  }
  if (copy.compare_body) {
    ++q.stats.body_compared;
    const bool differed = r.body_crc32 != copy.primary_body_crc;
    if (differed) ++q.stats.body_differed;
    q.count(differed ? MirrorResult::body_differed : MirrorResult::body_same);
  }
}

// Sends the queue's copies one after another until it is empty.
asio::awaitable<void> sender(std::shared_ptr<tp_mirror> queue) {
  SenderSlot slot(std::move(queue));
  tp_mirror& q = *slot.q;
  while (!q.waiting.empty() && !q.stopped) {
    tp_mirror::Copy copy = std::move(q.waiting.front());
    q.waiting.pop_front();
    copy.request.host = q.host;
    copy.request.port = q.port;
    // The answer's body is never kept: digested when it is compared, else read and dropped.
    copy.request.body_sink = copy.compare_body ? BodySink::digest : BodySink::discard;
    ++q.stats.in_flight;
    HttpResult r;
    try {
      r = co_await http_exchange(copy.request, Clock::now() + q.timeout);
    } catch (const std::exception&) {
      r.error = HttpError::bad_response;  // allocation failure: the copy is lost, the worker goes on
    }
    --q.stats.in_flight;
    record(q, copy, r);
  }
}

// Splits "name: value\n" lines into the request's header list.
void add_headers(HttpRequest& req, std::string_view all) {
  while (!all.empty()) {
    size_t nl = all.find('\n');
    std::string_view line = all.substr(0, nl);
    all = nl == std::string_view::npos ? std::string_view() : all.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    req.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
}

}  // namespace

void bind_mirror_io_context(asio::io_context* io) noexcept { t_io = io; }

void stop_mirrors(asio::io_context& io) noexcept {
  if (!asio::has_service<MirrorQueues>(io)) return;
  for (auto& q : asio::use_service<MirrorQueues>(io).queues()) {
    q->stopped = true;
    q->stats.dropped += q->waiting.size();
    q->count(MirrorResult::dropped, q->waiting.size());
    q->waiting.clear();
  }
}

size_t mirror_queue_count(asio::io_context& io) noexcept {
  if (!asio::has_service<MirrorQueues>(io)) return 0;
  return asio::use_service<MirrorQueues>(io).queues().size();
}

MirrorQueueView mirror_queue_at(asio::io_context& io, size_t i) noexcept {
  MirrorQueueView v{};
  const tp_mirror& q = *asio::use_service<MirrorQueues>(io).queues().at(i);
  v.name = q.name.data();
  v.name_len = q.name.size();
  tp_mirror_get_stats(&q, &v.stats);
  return v;
}

}  // namespace turnpike::lua

using namespace turnpike::lua;

extern "C" tp_mirror* tp_mirror_queue(const char* name, size_t name_len, const char* host, size_t host_len,
                                      const char* port, size_t port_len, int32_t queue_size,
                                      int32_t concurrency, int32_t timeout_ms) {
  if (!t_io || host_len == 0 || port_len == 0 || queue_size < 1 || concurrency < 1 || timeout_ms < 1) {
    return nullptr;
  }
  try {
    std::shared_ptr<tp_mirror> q = asio::use_service<MirrorQueues>(*t_io).find_or_add({name, name_len});
    q->io = t_io;
    q->host.assign(host, host_len);
    q->port.assign(port, port_len);
    q->queue_size = static_cast<size_t>(queue_size);
    q->concurrency = static_cast<size_t>(concurrency);
    q->timeout = std::chrono::milliseconds(timeout_ms);
    return q.get();
  } catch (const std::exception&) {
    return nullptr;
  }
}

extern "C" tp_mirror* tp_mirror_find(const char* name, size_t name_len) {
  if (!t_io || !asio::has_service<MirrorQueues>(*t_io)) return nullptr;
  return asio::use_service<MirrorQueues>(*t_io).find({name, name_len});
}

extern "C" int tp_mirror_send(tp_mirror* q, const char* method, size_t method_len, const char* target,
                              size_t target_len, const char* headers, size_t headers_len, const char* body,
                              size_t body_len, int has_body, int32_t primary_status, int has_body_crc,
                              uint32_t body_crc) {
  if (!q || q->stopped || q->waiting.size() >= q->queue_size) {
    if (q) {
      ++q->stats.dropped;
      q->count(MirrorResult::dropped);
    }
    return -1;
  }
  try {
    tp_mirror::Copy copy;
    copy.request.method.assign(method, method_len);
    copy.request.target.assign(target, target_len);
    add_headers(copy.request, {headers, headers_len});
    copy.request.has_body = has_body != 0;
    if (copy.request.has_body) copy.request.body.assign(body, body_len);
    copy.primary_status = primary_status;
    copy.compare_body = has_body_crc != 0;
    copy.primary_body_crc = body_crc;
    q->waiting.push_back(std::move(copy));
  } catch (const std::exception&) {
    ++q->stats.dropped;
    q->count(MirrorResult::dropped);
    return -1;
  }
  ++q->stats.queued;
  if (q->senders < q->concurrency) {
    ++q->senders;
    try {
      asio::co_spawn(*q->io, sender(q->shared_from_this()), asio::detached);
    } catch (const std::exception&) {
      --q->senders;  // the copy waits for the next sender
    }
  }
  return 0;
}

extern "C" void tp_mirror_skip(tp_mirror* q) {
  if (!q) return;
  ++q->stats.skipped;
  q->count(MirrorResult::skipped);
}

extern "C" void tp_mirror_get_stats(const tp_mirror* q, tp_mirror_stats* out) {
  if (!q || !out) return;
  *out = q->stats;
  out->waiting = q->waiting.size();
}
