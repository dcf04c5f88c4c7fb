// Metrics that plugins define (turnpike.metrics, plugins/lib/turnpike/metrics.lua): counters,
// gauges and histograms with labels, recorded per worker and exported on /metrics as
// turnpike_plugin_<name>.
//
// Definitions and label sets are process-wide (a mutex, taken when a plugin module defines a
// metric as it loads and the first time a worker sees a label set: the Lua side caches the
// series per worker); values live in each worker's own shard and are written without a lock
// (a relaxed load+store of a double, the writing thread's shard found through a thread_local).
// The scrape sums the workers' values. Each metric holds at most its `max_series` label sets;
// later ones share one series whose labels all read "(overflow)", counted per metric.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

// The functions turnpike.metrics reaches through the FFI (src/lua/plugin_metrics.cc describes
// them), declared for C++ callers too (turnpike.mirror's queues count their copies with them).
extern "C" {
int tp_metrics_define(const char* name, size_t name_len, int kind, const char* help, size_t help_len,
                      const char* labels, size_t labels_len, int label_count, const double* bounds,
                      int bound_count, int max_series, char* err, size_t err_len);
int64_t tp_metrics_series(int metric, const char* values, size_t len);
void tp_metrics_add(int64_t slot, double v);
}

namespace turnpike::lua {

class PluginMetricsShard;

// A worker's shard (fixed capacity, zeroed; pages never written are never resident).
std::unique_ptr<PluginMetricsShard, void (*)(PluginMetricsShard*)> make_plugin_metrics_shard();
// Plugin metric writes from the calling thread go to `shard` (nullptr: dropped, e.g. the main
// thread's validating load). Called by each worker thread as it starts.
void bind_plugin_metrics_shard(PluginMetricsShard* shard);

enum class PluginMetricKind : uint8_t {
  counter,    // only goes up (inc)
  gauge,      // set, inc, dec; summed over workers (each worker sets its share)
  histogram,  // observe; buckets from the definition
};

struct PluginMetricValues {
  std::string name;  // full name, turnpike_plugin_ prefix included
  std::string help;
  PluginMetricKind kind = PluginMetricKind::counter;
  std::vector<std::string> label_names;
  std::vector<double> bounds;  // histograms
  struct Series {
    std::vector<std::string> label_values;
    double value = 0;                  // counters and gauges
    std::vector<uint64_t> buckets;     // histograms: per bucket (not cumulative), +Inf last
    double sum = 0;
  };
  std::vector<Series> series;
  uint64_t folded = 0;  // label sets that went to the overflow series
};

// Every plugin metric with the sum of the workers' values (main thread, the scrape).
std::vector<PluginMetricValues> collect_plugin_metrics(const std::vector<const PluginMetricsShard*>& shards);

}  // namespace turnpike::lua
