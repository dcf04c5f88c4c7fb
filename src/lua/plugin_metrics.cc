// Plugin-defined metrics (include/turnpike/lua/plugin_metrics.h) and their FFI functions
// (tp_metrics_*, called by plugins/lib/turnpike/metrics.lua through ffi.C).
//
// Hot path: tp_metrics_add/set/observe write the calling worker's shard with a relaxed
// load+store; no lock. tp_metrics_define and tp_metrics_series lock the registry; the Lua side
// calls them when a module loads and the first time a worker sees a label set.
#include "turnpike/lua/plugin_metrics.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <unordered_map>

namespace turnpike::lua {

namespace {

constexpr size_t kMaxSlots = size_t{1} << 20;  // doubles per worker: 8 MiB of address space
constexpr size_t kMaxMetrics = 1024;
constexpr size_t kMaxBuckets = 32;
constexpr std::string_view kPrefix = "turnpike_plugin_";
constexpr std::string_view kOverflow = "(overflow)";

struct Metric {
  std::string name;
  std::string help;
  PluginMetricKind kind;
  std::vector<std::string> label_names;
  std::vector<double> bounds;
  uint32_t max_series;
  size_t width;  // slots per series: 1, or buckets + sum for histograms
  std::unordered_map<std::string, int64_t> slots;  // joined label values -> first slot
  std::vector<std::pair<std::string, int64_t>> order;  // label sets in the order first seen
  int64_t overflow_slot = -1;
  uint64_t folded = 0;
};

struct Registry {
  std::mutex mu;
  std::vector<Metric> metrics;
  size_t next_slot = 0;
};

Registry& registry() {
  static Registry r;
  return r;
}

thread_local PluginMetricsShard* tl_shard = nullptr;

// The joined label values (each followed by '\0') split back.
std::vector<std::string> split_labels(std::string_view joined, size_t count) {
  std::vector<std::string> out;
  size_t start = 0;
  while (out.size() < count && start <= joined.size()) {
    size_t end = joined.find('\0', start);
    if (end == std::string_view::npos) end = joined.size();
    out.emplace_back(joined.substr(start, end - start));
    start = end + 1;
  }
  out.resize(count);
  return out;
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 200 || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

void copy_error(std::string_view why, char* err, size_t err_len) {
  if (!err || err_len == 0) return;
  const size_t n = std::min(why.size(), err_len - 1);
  std::memcpy(err, why.data(), n);
  err[n] = '\0';
}

double load(const double& cell) { return std::atomic_ref<double>(const_cast<double&>(cell)).load(std::memory_order_relaxed); }
void store(double& cell, double v) { std::atomic_ref<double>(cell).store(v, std::memory_order_relaxed); }

}  // namespace

// A shard is kMaxSlots doubles; the type only names it outside this file.
class PluginMetricsShard {};

namespace {
double* cells(PluginMetricsShard* s) { return reinterpret_cast<double*>(s); }
const double* cells(const PluginMetricsShard* s) { return reinterpret_cast<const double*>(s); }
}  // namespace

std::unique_ptr<PluginMetricsShard, void (*)(PluginMetricsShard*)> make_plugin_metrics_shard() {
  auto* p = static_cast<PluginMetricsShard*>(std::calloc(kMaxSlots, sizeof(double)));
  if (!p) throw std::bad_alloc();
  return {p, [](PluginMetricsShard* s) { std::free(s); }};
}

void bind_plugin_metrics_shard(PluginMetricsShard* shard) { tl_shard = shard; }

std::vector<PluginMetricValues> collect_plugin_metrics(const std::vector<const PluginMetricsShard*>& shards) {
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<PluginMetricValues> out;
  out.reserve(r.metrics.size());
  for (const Metric& m : r.metrics) {
    PluginMetricValues& v = out.emplace_back();
    v.name = m.name;
    v.help = m.help;
    v.kind = m.kind;
    v.label_names = m.label_names;
    v.bounds = m.bounds;
    v.folded = m.folded;
    auto add_series = [&](std::vector<std::string> labels, int64_t slot) {
      PluginMetricValues::Series& s = v.series.emplace_back();
      s.label_values = std::move(labels);
      const auto base = static_cast<size_t>(slot);
      if (m.kind == PluginMetricKind::histogram) {
        s.buckets.assign(m.bounds.size() + 1, 0);
        for (const auto* shard : shards) {
          for (size_t b = 0; b <= m.bounds.size(); ++b) s.buckets[b] += static_cast<uint64_t>(load(cells(shard)[base + b]));
          s.sum += load(cells(shard)[base + m.bounds.size() + 1]);
        }
      } else {
        for (const auto* shard : shards) s.value += load(cells(shard)[base]);
      }
    };
    for (const auto& [joined, slot] : m.order) add_series(split_labels(joined, m.label_names.size()), slot);
    if (m.overflow_slot >= 0) add_series(std::vector<std::string>(m.label_names.size(), std::string(kOverflow)), m.overflow_slot);
  }
  return out;
}

}  // namespace turnpike::lua

using turnpike::lua::Metric;
using turnpike::lua::PluginMetricKind;

extern "C" {

// Defines (or finds, when a module loads again: same name, kind, labels and buckets) a metric.
// `labels`: the label names, each followed by '\0'. Returns its id, or -1 with `err` set.
int tp_metrics_define(const char* name, size_t name_len, int kind, const char* help, size_t help_len,
                      const char* labels, size_t labels_len, int label_count, const double* bounds,
                      int bound_count, int max_series, char* err, size_t err_len) {
  using namespace turnpike::lua;
  const std::string_view short_name(name, name_len);
  if (!valid_name(short_name)) {
    copy_error("metric name must be letters, digits and '_', not starting with a digit", err, err_len);
    return -1;
  }
  if (kind < 0 || kind > 2 || label_count < 0 || label_count > 16 || bound_count < 0 ||
      bound_count > static_cast<int>(kMaxBuckets) || max_series < 1) {
    copy_error("bad metric definition", err, err_len);
    return -1;
  }
  std::vector<std::string> label_names = split_labels(std::string_view(labels, labels_len), static_cast<size_t>(label_count));
  for (const auto& l : label_names) {
    if (!valid_name(l) || l.starts_with("__")) {
      copy_error("label name \"" + l + "\" must be letters, digits and '_'", err, err_len);
      return -1;
    }
  }
  std::vector<double> b(bounds, bounds + bound_count);
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(b[i]) || (i > 0 && b[i] <= b[i - 1])) {
      copy_error("histogram buckets must be finite and increasing", err, err_len);
      return -1;
    }
  }
  const auto k = static_cast<PluginMetricKind>(kind);
  if (k == PluginMetricKind::histogram && b.empty()) {
    copy_error("a histogram needs buckets", err, err_len);
    return -1;
  }
  const std::string full = std::string(kPrefix) + std::string(short_name);
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  for (size_t i = 0; i < r.metrics.size(); ++i) {
    const Metric& m = r.metrics[i];
    if (m.name != full) continue;
    if (m.kind != k || m.label_names != label_names || (k == PluginMetricKind::histogram && m.bounds != b)) {
      copy_error("metric \"" + full + "\" is already defined with another kind, labels or buckets", err, err_len);
      return -1;
    }
    return static_cast<int>(i);
  }
  if (r.metrics.size() >= kMaxMetrics) {
    copy_error("too many plugin metrics", err, err_len);
    return -1;
  }
  Metric m{full, std::string(help, help_len), k, std::move(label_names), std::move(b), static_cast<uint32_t>(max_series),
           1, {}, {}, -1, 0};
  if (k == PluginMetricKind::histogram) m.width = m.bounds.size() + 2;
  r.metrics.push_back(std::move(m));
  return static_cast<int>(r.metrics.size() - 1);
}

// The first slot of a label set (values each followed by '\0'), made on first sight. Past the
// metric's max_series the overflow series, returned as -2 - slot so that the Lua side does not
// cache it (an unbounded set of label values must not grow its cache either). -1: no slot (an
// unknown metric, or the process is out of slots): writes to it are dropped.
int64_t tp_metrics_series(int metric, const char* values, size_t len) {
  using namespace turnpike::lua;
  Registry& r = registry();
  std::lock_guard lock(r.mu);
  if (metric < 0 || static_cast<size_t>(metric) >= r.metrics.size()) return -1;
  Metric& m = r.metrics[static_cast<size_t>(metric)];
  std::string key(values, len);
  if (auto it = m.slots.find(key); it != m.slots.end()) return it->second;
  auto take = [&r, &m]() -> int64_t {
    if (r.next_slot + m.width > kMaxSlots) return -1;
    const auto slot = static_cast<int64_t>(r.next_slot);
    r.next_slot += m.width;
    return slot;
  };
  int64_t slot = m.order.size() < m.max_series ? take() : -1;
  if (slot < 0) {
    ++m.folded;
    if (m.overflow_slot < 0) m.overflow_slot = take();
    return m.overflow_slot < 0 ? -1 : -2 - m.overflow_slot;
  }
  m.slots.emplace(key, slot);
  m.order.emplace_back(std::move(key), slot);
  return slot;
}

void tp_metrics_add(int64_t slot, double v) {
  using namespace turnpike::lua;
  if (!tl_shard || slot < 0) return;
  double& cell = cells(tl_shard)[slot];
  store(cell, load(cell) + v);
}

void tp_metrics_set(int64_t slot, double v) {
  using namespace turnpike::lua;
  if (!tl_shard || slot < 0) return;
  store(cells(tl_shard)[slot], v);
}

// `bounds` as defined (the Lua side keeps a copy, so no lock is needed to find the bucket).
void tp_metrics_observe(int64_t slot, const double* bounds, int bound_count, double v) {
  using namespace turnpike::lua;
  if (!tl_shard || slot < 0) return;
  int b = 0;
  while (b < bound_count && v > bounds[b]) ++b;
  double& bucket = cells(tl_shard)[slot + b];
  store(bucket, load(bucket) + 1);
  double& sum = cells(tl_shard)[slot + bound_count + 1];
  store(sum, load(sum) + v);
}

}  // extern "C"
