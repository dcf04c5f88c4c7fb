// A worker's data path: upstream pools across reloads, request-context recycling.
#include "turnpike/proxy/worker.h"

#include <algorithm>
#include <functional>

namespace turnpike::proxy {

namespace {
// Request contexts a worker keeps however long it has been idle.
constexpr size_t kContextFloor = 16;

// Pools survive a reload when what they connect to and how did not change (file lines may),
// nor the addresses its names resolve to (node discovery keeps the config and changes those).
bool same_upstream(const upstream::UpstreamPool& pool, const upstream::ResolvedUpstream& up) {
  // every field but the lines (config.h: UpstreamConfig's identity)
  return pool.config() == *up.config && upstream::same_nodes(pool.upstream(), up);
}
}  // namespace

Worker::Worker(unsigned index, std::shared_ptr<const Snapshot> snapshot, lua::SharedDicts* dicts)
    : index_(index),
      ioc_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      snapshot_(std::move(snapshot)),
      plugins_(index, dicts, ioc_),
      metrics_(snapshot_->config->admin.series_cap, snapshot_->config->admin.enabled && snapshot_->config->admin.metrics) {
  for (const auto& up : snapshot_->upstreams) {
    pools_.push_back(make_pool(up));
  }
  if (metrics_.enabled()) plugin_metrics_ = lua::make_plugin_metrics_shard();
}

Worker::~Worker() = default;

std::unique_ptr<upstream::UpstreamPool> Worker::make_pool(std::shared_ptr<const upstream::ResolvedUpstream> up) {
  upstream::H2UpstreamCounters h2;
  h2.connections_opened = &counters_.h2_upstream_connections;
  h2.streams_opened = &counters_.h2_upstream_streams;
  h2.goaways_received = &counters_.h2_upstream_goaways;
  h2.streams_reset = &counters_.h2_upstream_resets;
  h2.connections_lost = &counters_.h2_upstream_lost;
  return std::make_unique<upstream::UpstreamPool>(ioc_, buffers_, std::move(up), h2);
}

RequestContext* Worker::acquire_context() {
  if (free_contexts_.empty()) return new RequestContext();
  RequestContext* ctx = free_contexts_.back().release();
  free_contexts_.pop_back();
  contexts_low_water_ = std::min(contexts_low_water_, free_contexts_.size());
  return ctx;
}

void Worker::release_context(RequestContext* ctx) {
  ctx->reset();
  free_contexts_.emplace_back(ctx);
}

upstream::UpstreamPool& Worker::pool_for(const Snapshot& snapshot, size_t upstream_index) {
  if (&snapshot == snapshot_.get()) return *pools_[upstream_index];
  // The request started before a reload: find the pool that serves its upstream now.
  const auto& wanted = snapshot.upstreams[upstream_index];
  for (auto* list : {&pools_, &retired_pools_}) {
    for (auto& p : *list) {
      if (&p->upstream() == wanted.get() || same_upstream(*p, *wanted)) return *p;
    }
  }
  retired_pools_.push_back(make_pool(wanted));
  return *retired_pools_.back();
}

void Worker::adopt_snapshot(std::shared_ptr<const Snapshot> snapshot) {
  std::vector<std::unique_ptr<upstream::UpstreamPool>> next;
  for (const auto& up : snapshot->upstreams) {
    std::unique_ptr<upstream::UpstreamPool> found;
    for (auto& p : pools_) {
      if (p && same_upstream(*p, *up)) {
        found = std::move(p);
        break;
      }
    }
    if (found) {
      found->adopt(up);
    } else {
      found = make_pool(up);
      // Only its nodes changed (a rolling update): the parked connections of the nodes that stay move over.
      for (auto& p : pools_) {
        if (p && upstream::UpstreamPool::same_but_nodes(p->config(), *up->config)) {
          found->take_idle_from(*p);
          break;
        }
      }
    }
    next.push_back(std::move(found));
  }
  for (auto& p : pools_) {
    if (!p) continue;
    p->close_idle();
    if (p->active() > 0) retired_pools_.push_back(std::move(p));
  }
  pools_ = std::move(next);
  // A retired pool hands the connections its requests give back to the pool now serving its
  // upstream when only the nodes changed; every retired pool is pointed again, since the pool
  // it pointed at may have been retired or freed just now.
  for (auto& r : retired_pools_) {
    upstream::UpstreamPool* to = nullptr;
    for (auto& p : pools_) {
      if (upstream::UpstreamPool::same_but_nodes(r->config(), p->config())) {
        to = p.get();
        break;
      }
    }
    r->hand_over_to(to);
  }
  snapshot_ = std::move(snapshot);
  plugins_.adopt(snapshot_);
}

void Worker::sweep_pools(Clock::time_point now) {
  for (auto& p : pools_) p->sweep(now);
  for (auto it = retired_pools_.begin(); it != retired_pools_.end();) {
    (*it)->sweep(now);
    if ((*it)->active() == 0) {
      it = retired_pools_.erase(it);
    } else {
      ++it;
    }
  }
}

void Worker::close_idle_pools() {
  // Retired pools too: a connection parked in one after the reload would otherwise keep the
  // io_context (and the process) alive until the drain timeout.
  for (auto& p : pools_) p->close_idle();
  for (auto& p : retired_pools_) p->close_idle();
}

size_t Worker::upstream_sockets() const {
  size_t n = 0;
  for (const auto& p : pools_) n += p->active() + p->idle();
  for (const auto& p : retired_pools_) n += p->active() + p->idle();
  return n;
}

size_t Worker::trim_contexts() {
  // The same way as the buffer pool's blocks: half of those unused since the last trim, the
  // highest-addressed ones (those kept are then low in the heap, not pinning a spike's pages).
  const size_t unused = contexts_low_water_ > kContextFloor ? contexts_low_water_ - kContextFloor : 0;
  const size_t n = (unused + 1) / 2;
  if (n > 0) {
    const auto keep = free_contexts_.end() - static_cast<std::ptrdiff_t>(n);
    std::nth_element(free_contexts_.begin(), keep, free_contexts_.end(),
                     [](const auto& a, const auto& b) { return std::less<RequestContext*>()(a.get(), b.get()); });
    free_contexts_.erase(keep, free_contexts_.end());
  }
  contexts_low_water_ = free_contexts_.size();
  return n * sizeof(RequestContext);  // and what their strings and vectors held
}

void Worker::release_data_path() {
  pools_.clear();
  retired_pools_.clear();
  ioc_.restart();
  ioc_.poll();
  free_contexts_.clear();
  plugins_.clear();
}

}  // namespace turnpike::proxy
