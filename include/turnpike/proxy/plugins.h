// Lua plugins in the pipeline: the three halves of an extension (docs/plugins.md).
//
//  - PluginCatalog (config half, one per snapshot, shared by all workers): which plugin modules
//    the config uses and every configured use of one, validated when the snapshot is built.
//  - PluginInstance (worker half, one per snapshot per worker): the worker's Vm, the modules
//    loaded into a generation, each use's conf as a Lua table, the consumers' environment.
//  - The request half lives in RequestContext's FilterState: the Lua ctx table of the request.
//
// LuaPluginFilter is the HttpFilter that runs one configured use of a plugin.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "turnpike/config/config.h"
#include "turnpike/lua/shared_dict.h"
#include "turnpike/lua/vm.h"
#include "turnpike/proxy/filter.h"

namespace turnpike::proxy {

struct Snapshot;
struct RequestContext;

// Where a plugin use was configured, for messages: `route "api"`, `listener "public"`,
// `consumer "alice"`, or the global `plugins`.
struct PluginLevel {
  enum class Kind : unsigned char {
    global,    // top-level plugins: every route on every listener
    listener,  // a listener's plugins: every route on it
    route,     // a route's plugins
    consumer,  // a consumer's plugins: joined once an auth plugin attaches the consumer
  };
  Kind kind = Kind::global;
  std::string name;  // the listener's, route's or consumer's name
  std::string text() const;
};
std::string_view to_string(PluginLevel::Kind k) noexcept;

struct PluginCatalog {
  lua::VmConfig vm;                    // for every worker's Vm (shared_dicts set by the worker)
  std::vector<std::string> names;      // modules, in the generation's order
  std::vector<lua::PluginInfo> info;   // as the validating load described them
  // The plugin directories' modules as the validating load read them: every worker loads this
  // text, so a file edited after the check (a refused reload's, say) changes no worker.
  lua::PluginSources sources;
  struct Use {
    size_t plugin = 0;                 // into names / info
    const config::PluginConfig* config = nullptr;
    PluginLevel level;
  };
  std::vector<Use> uses;
  bool empty() const { return names.empty(); }
};

// The default directory of the bundled plugins (the source tree's plugins/ for a build that is
// run where it was built; deploy/ installs it elsewhere and sets lua.plugins_dir).
std::string default_plugins_dir();

// Loads the modules the config names on a validating Vm and checks every conf against its
// plugin's schema. Errors: `file:line: route "x": plugin "key-auth": conf.key: expected string`.
// Null when the config has no plugins.
std::shared_ptr<const PluginCatalog> build_plugin_catalog(const config::Config& cfg,
                                                          std::vector<config::ConfigError>& errors);

// Runs one configured use of a Lua plugin. Immutable and shared by every worker; what it needs
// per worker is in the request's PluginInstance, per request in its FilterState.
class LuaPluginFilter final : public HttpFilter {
 public:
  LuaPluginFilter(std::shared_ptr<const PluginCatalog> catalog, size_t use);
  std::string_view name() const override { return info_->name; }
  int priority() const override { return info_->priority; }
  size_t use() const { return use_; }
  const PluginCatalog& catalog() const { return *catalog_; }
  FilterStatus on_rewrite(RequestContext& ctx) const override;
  FilterStatus on_access(RequestContext& ctx) const override;
  FilterStatus on_upstream_select(RequestContext& ctx) const override;
  FilterStatus on_response_headers(RequestContext& ctx) const override;
  bool on_response_body(RequestContext& ctx, std::vector<std::string_view>& pieces, bool last) const override;
  bool changes_body() const override {
    return info_->has_phase(lua::Phase::body_filter) && !info_->observes_body;
  }
  boost::asio::awaitable<void> on_log(RequestContext& ctx) const override;
  bool has_log() const override { return info_->has_phase(lua::Phase::log); }

 private:
  FilterStatus run(RequestContext& ctx, lua::Phase phase) const;
  FilterStatus outcome(RequestContext& ctx, lua::Phase phase, lua::CallResult& result) const;
  boost::asio::awaitable<FilterStatus> wait(RequestContext& ctx, lua::Phase phase,
                                            boost::asio::awaitable<lua::CallResult> rest) const;
  // A body_filter call that waits: the rest of it (in ctx.body_wait), and how a call ended.
  boost::asio::awaitable<void> finish_body(boost::asio::awaitable<lua::CallResult> rest, RequestContext& ctx,
                                           std::vector<std::string_view>& pieces, bool last, size_t index) const;
  void body_call_ended(RequestContext& ctx, const lua::CallResult& result) const;

  std::shared_ptr<const PluginCatalog> catalog_;
  size_t use_;
  size_t plugin_;
  const lua::PluginInfo* info_;
};

// One snapshot's plugins on one worker.
class PluginInstance {
 public:
  std::shared_ptr<lua::Vm> vm;
  std::shared_ptr<const lua::Generation> generation;
  std::vector<lua::Ref> confs;       // per catalog use
  lua::Ref env;                      // consumers (Vm::make_env)
  uint64_t snapshot_generation = 0;
  // The catalog of its snapshot, shared with the snapshots node discovery derives from it: the
  // instance is freed once none of them is in use.
  std::weak_ptr<const PluginCatalog> catalog;
  std::string error;                 // non-empty: could not be made; plugin routes answer 500
  bool ok() const { return error.empty(); }
};

// A worker's plugin instances, newest last. Worker thread only.
class WorkerPlugins {
 public:
  WorkerPlugins(unsigned worker, lua::SharedDicts* dicts, boost::asio::io_context& io)
      : worker_(worker), dicts_(dicts), io_(io) {}
  ~WorkerPlugins();
  // Makes the instance for a snapshot the worker starts serving (and runs init_worker).
  void adopt(const std::shared_ptr<const Snapshot>& snapshot);
  // The instance for the snapshot of that generation, or null.
  PluginInstance* find(uint64_t snapshot_generation) {
    if (!instances_.empty() && instances_.back()->snapshot_generation == snapshot_generation) {
      return instances_.back().get();
    }
    for (auto& i : instances_) {
      if (i->snapshot_generation == snapshot_generation) return i.get();
    }
    return nullptr;
  }
  // Frees the instances of snapshots nobody uses any more.
  void collect();
  void clear() { instances_.clear(); }
  // The worker stops: plugins' pending timers run once more (premature) and no new ones start.
  void stop_timers() {
    for (auto& i : instances_) {
      if (i->vm) i->vm->stop_timers();
    }
  }
  size_t size() const { return instances_.size(); }

 private:
  void run_init_worker(PluginInstance& inst, const PluginCatalog& catalog);

  unsigned worker_;
  lua::SharedDicts* dicts_;
  boost::asio::io_context& io_;
  std::vector<std::unique_ptr<PluginInstance>> instances_;
};

// The request functions of the PDK (pdk_request.cc), implemented on RequestContext.
const tp_request_api& pdk_request_api();
// The waits the pipeline does for a plugin (tp_wait; Vm::set_request_wait), in pdk_request.cc.
boost::asio::awaitable<int64_t> pdk_request_wait(tp_request* request, int what, int64_t arg);

}  // namespace turnpike::proxy
