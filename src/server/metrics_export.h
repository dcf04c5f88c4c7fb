// /metrics: every worker's cells and counters, summed, in the Prometheus text format. The small
// families go through prometheus-cpp's MetricFamily and TextSerializer (without its registry,
// whose per-series maps would cost more than the scrape itself); the per-route and per-upstream
// ones, thousands of series, are written straight as text (metrics_export.cc). Main thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "turnpike/lua/plugin_metrics.h"
#include "turnpike/metrics/series.h"
#include "turnpike/metrics/shard.h"

namespace turnpike::proxy {

struct WorkerCounters;
struct Snapshot;

struct ScrapeInput {
  const metrics::SeriesRegistry* registry = nullptr;
  std::vector<const metrics::WorkerMetrics*> shards;   // one per worker
  std::vector<const WorkerCounters*> counters;         // one per worker
  std::vector<const lua::PluginMetricsShard*> plugin_shards;  // one per worker
  uint64_t generation = 0;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  double start_time = 0;  // seconds since the epoch
  uint64_t log_lines_dropped = 0;
  const Snapshot* snapshot = nullptr;  // the current one: its nodes' health and in-flight series
  // Node discovery (upstream/discovery.h): lookups by result, swaps of upstream nodes they caused.
  uint64_t dns_lookups_ok = 0;
  uint64_t dns_lookups_failed = 0;
  uint64_t dns_node_changes = 0;
  uint64_t node_file_updates_ok = 0, node_file_updates_failed = 0;  // node files read after a change
};

// Writes the exposition into `out` (cleared first; its capacity is reused, so a scrape of
// megabytes neither allocates nor faults in fresh pages once the buffer has grown).
void render_metrics(const ScrapeInput& in, std::string& out);

// The build's version and commit (configure time), for build info, /status and --version.
std::string build_version();
std::string build_commit();

}  // namespace turnpike::proxy
