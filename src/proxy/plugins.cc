// Lua plugins in the pipeline (plugins.h): validating a config's plugins, the per-worker
// instances, and the filter that runs one configured plugin for a request.
//
// Hot path (LuaPluginFilter::run): one Vm::start per phase function the plugin has; no coroutine
// unless the plugin waits (turnpike.sleep, the HTTP client); the request's Lua ctx table is made
// on the first call of a request.
#include "turnpike/proxy/plugins.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <filesystem>
#include <set>

#include "turnpike/proxy/pipeline.h"
#include "turnpike/common/strings.h"
#include "turnpike/metrics/shard.h"
#include "turnpike/proxy/request_context.h"
#include "turnpike/proxy/snapshot.h"

#ifndef TURNPIKE_PLUGINS_DIR
#define TURNPIKE_PLUGINS_DIR "/usr/share/turnpike/plugins"
#endif

namespace turnpike::proxy {

namespace asio = boost::asio;

std::string_view to_string(PluginLevel::Kind k) noexcept {
  switch (k) {
    case PluginLevel::Kind::global: return "global";
    case PluginLevel::Kind::listener: return "listener";
    case PluginLevel::Kind::route: return "route";
    case PluginLevel::Kind::consumer: return "consumer";
  }
  return "unknown";
}

std::string PluginLevel::text() const {
  if (kind == Kind::global) return "plugins";
  return std::string(to_string(kind)) + " \"" + name + "\"";
}

std::string default_plugins_dir() { return TURNPIKE_PLUGINS_DIR; }

// ---- Validation (main thread, when a snapshot is built) ---------------------------------------

namespace {

// The plugin modules a directory offers: its *.lua files (not the library under lib/).
void list_plugins(const std::string& dir, std::set<std::string>& out) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".lua") out.insert(e.path().stem().string());
  }
}

// The line of the conf value an error's path ("conf.nodes[2].host: ...") points at; the
// plugin's own line when the path does not lead anywhere (a required field that is missing).
int line_of_path(const config::PluginConfig& p, std::string_view error) {
  int line = p.source.line;
  if (!error.starts_with("conf")) return line;
  const lua::ConfValue* v = &p.conf;
  size_t i = 4;
  while (i < error.size() && v) {
    if (v->line) line = v->line;
    if (error[i] == '.') {
      size_t end = error.find_first_of(".[:", i + 1);
      std::string_view key = error.substr(i + 1, end == std::string_view::npos ? std::string_view::npos : end - i - 1);
      const auto* map = std::get_if<lua::ConfMap>(&v->value);
      v = nullptr;
      if (map) {
        for (const auto& [k, val] : *map) {
          if (k == key) v = &val;
        }
      }
      i = end == std::string_view::npos ? error.size() : end;
    } else if (error[i] == '[') {
      size_t end = error.find(']', i);
      auto n = parse_decimal(error.substr(i + 1, end == std::string_view::npos ? 0 : end - i - 1));
      const auto* list = std::get_if<lua::ConfList>(&v->value);
      v = (list && n && *n >= 1 && *n <= list->size()) ? &(*list)[*n - 1] : nullptr;
      i = end == std::string_view::npos ? error.size() : end + 1;
    } else {
      break;  // ':' ends the path
    }
  }
  if (v && v->line) line = v->line;
  return line;
}

lua::VmConfig vm_config(const config::Config& cfg) {
  lua::VmConfig vc;
  vc.bundled_dir = cfg.lua.plugins_dir.empty() ? default_plugins_dir() : cfg.lua.plugins_dir;
  vc.plugin_paths = cfg.lua.plugin_paths;
  vc.memory_limit = cfg.lua.memory_limit;
  vc.instruction_budget = cfg.lua.instruction_budget;
  vc.phase_timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg.lua.phase_timeout);
  return vc;
}

}  // namespace

std::shared_ptr<const PluginCatalog> build_plugin_catalog(const config::Config& cfg,
                                                          std::vector<config::ConfigError>& errors) {
  auto catalog = std::make_shared<PluginCatalog>();
  auto add_level = [&](const config::PluginList& list, PluginLevel::Kind kind, const std::string& name) {
    for (const auto& p : list.items) catalog->uses.push_back({0, &p, {kind, name}});
  };
  add_level(cfg.plugins, PluginLevel::Kind::global, "");
  for (const auto& l : cfg.listeners) add_level(l.plugins, PluginLevel::Kind::listener, l.name);
  for (const auto& r : cfg.routes) add_level(r.plugins, PluginLevel::Kind::route, r.name);
  for (const auto& c : cfg.consumers) add_level(c.plugins, PluginLevel::Kind::consumer, c.username);
  if (catalog->uses.empty()) return nullptr;

  catalog->vm = vm_config(cfg);
  const size_t errors_before = errors.size();
  auto error_at = [&](const PluginCatalog::Use& u, int line, std::string message) {
    errors.push_back({u.config->source.file, line, u.level.text() + ": " + std::move(message)});
  };

  // Which names exist: an unknown one gets a did-you-mean, not a search-path message.
  std::set<std::string> available;
  list_plugins(catalog->vm.bundled_dir, available);
  for (const auto& dir : catalog->vm.plugin_paths) list_plugins(dir, available);
  std::vector<std::string_view> candidates(available.begin(), available.end());
  std::vector<bool> known(catalog->uses.size(), true);
  for (size_t k = 0; k < catalog->uses.size(); ++k) {
    auto& u = catalog->uses[k];
    const std::string& name = u.config->name;
    if (!available.count(name)) {
      std::string msg = "unknown plugin \"" + name + "\"";
      if (std::string_view guess = nearest_name(name, candidates); !guess.empty()) {
        msg += " (did you mean \"" + std::string(guess) + "\"?)";
      }
      error_at(u, u.config->source.line, std::move(msg));
      known[k] = false;
      continue;
    }
    auto it = std::find(catalog->names.begin(), catalog->names.end(), name);
    u.plugin = static_cast<size_t>(it - catalog->names.begin());
    if (it == catalog->names.end()) catalog->names.push_back(name);
  }
  // The known ones are still loaded and checked, so one run reports every problem.
  if (catalog->names.empty()) return nullptr;

  // Load the code once here, on a Vm of its own: syntax errors, errors in a module's body and bad
  // schemas refuse the config before any worker sees it.
  std::string vm_error;
  std::unique_ptr<lua::Vm> vm = lua::Vm::create(catalog->vm, vm_error);
  if (!vm) {
    errors.push_back({cfg.file, cfg.lua.source.line, "lua: cannot start the plugin runtime: " + vm_error});
    return nullptr;
  }
  std::vector<std::string> load_errors;
  std::shared_ptr<const lua::Generation> gen = vm->load(catalog->names, load_errors, nullptr, &catalog->sources);
  if (!gen) {
    for (const auto& e : load_errors) {
      // Each message names its plugin: point at the first place the plugin is configured.
      const PluginCatalog::Use* at = &catalog->uses.front();
      for (const auto& u : catalog->uses) {
        if (e.find("plugin \"" + u.config->name + "\"") != std::string::npos) {
          at = &u;
          break;
        }
      }
      errors.push_back({at->config->source.file, at->config->source.line, e});
    }
    return nullptr;
  }
  for (const auto& info : gen->plugins()) catalog->info.push_back(info);
  for (size_t k = 0; k < catalog->uses.size(); ++k) {
    const auto& u = catalog->uses[k];
    if (!known[k]) continue;
    std::vector<std::string> conf_errors;
    lua::Ref conf = vm->check_conf(*gen, u.plugin, u.config->conf, conf_errors,
                                   u.level.kind == PluginLevel::Kind::consumer);
    for (const auto& e : conf_errors) {
      error_at(u, line_of_path(*u.config, e), "plugin \"" + u.config->name + "\": " + e);
    }
  }
  gen.reset();
  if (errors.size() != errors_before) return nullptr;
  return catalog;
}

// ---- The filter ---------------------------------------------------------------------------

LuaPluginFilter::LuaPluginFilter(std::shared_ptr<const PluginCatalog> catalog, size_t use)
    : catalog_(std::move(catalog)), use_(use), plugin_(catalog_->uses[use].plugin),
      info_(&catalog_->info[plugin_]) {}

FilterStatus LuaPluginFilter::on_rewrite(RequestContext& ctx) const { return run(ctx, lua::Phase::rewrite); }
FilterStatus LuaPluginFilter::on_access(RequestContext& ctx) const { return run(ctx, lua::Phase::access); }
FilterStatus LuaPluginFilter::on_upstream_select(RequestContext& ctx) const {
  return run(ctx, lua::Phase::before_proxy);
}
FilterStatus LuaPluginFilter::on_response_headers(RequestContext& ctx) const {
  return run(ctx, lua::Phase::header_filter);
}

namespace {

// A plugin's failure, counted by plugin (and whether the instruction budget cut it off: the
// runtime's message for that, lua/vm_internal.h's kBudgetMessage).
void count_plugin_error(RequestContext& ctx, size_t plugin, std::string_view why) {
  if (!ctx.worker_metrics || !ctx.worker_metrics->enabled()) return;
  const auto& ids = ctx.snapshot->plugin_series;
  ctx.worker_metrics->plugin_error(plugin < ids.size() ? ids[plugin] : 0,
                                   why.find("instruction budget exceeded") != std::string_view::npos);
}

FilterStatus plugin_failed(RequestContext& ctx, std::string_view plugin, std::string_view why) {
  spdlog::error("plugin \"{}\" failed on route \"{}\" (request {}): {}", plugin,
                ctx.route ? std::string_view(ctx.route->config->name) : std::string_view("-"),
                ctx.request_id.empty() ? std::string_view("-") : std::string_view(ctx.request_id), why);
  set_outcome_response(ctx, Outcome::plugin_failed);
  return FilterStatus::respond;
}

}  // namespace

FilterStatus LuaPluginFilter::run(RequestContext& ctx, lua::Phase phase) const {
  if (!info_->has_phase(phase)) return FilterStatus::proceed;
  PluginInstance* inst = ctx.plugins;
  if (!inst || !inst->ok()) {
    return plugin_failed(ctx, info_->name, inst ? inst->error : "no plugin runtime on this worker");
  }
  if (!ctx.lua_ctx.valid()) {
    ctx.lua_ctx = inst->vm->new_ctx(&inst->env);
    ctx.lua_vm = inst->vm;
  }
  ctx.current_plugin = info_->name;
  lua::CallStart call = inst->vm->start(inst->generation, plugin_, phase, inst->confs[use_], ctx.lua_ctx,
                                        reinterpret_cast<tp_request*>(&ctx));
  if (call.done) return outcome(ctx, phase, call.result);
  ctx.suspend_with(wait(ctx, phase, std::move(*call.rest)));
  return FilterStatus::suspend;
}

asio::awaitable<FilterStatus> LuaPluginFilter::wait(RequestContext& ctx, lua::Phase phase,
                                                    asio::awaitable<lua::CallResult> rest) const {
  lua::CallResult result = co_await std::move(rest);
  co_return outcome(ctx, phase, result);
}

FilterStatus LuaPluginFilter::outcome(RequestContext& ctx, lua::Phase phase, lua::CallResult& result) const {
  ctx.current_plugin = {};
  switch (result.status) {
    case lua::CallStatus::ok: return FilterStatus::proceed;
    case lua::CallStatus::error:
      count_plugin_error(ctx, plugin_, result.error);
      return plugin_failed(ctx, info_->name, result.error);
    case lua::CallStatus::exit: break;
  }
  // turnpike.exit(status, body, headers): the gateway answers with that.
  LocalResponse& lr = ctx.local_response;
  lr.clear();
  lr.status = result.exit_status;
  lr.body = std::move(result.exit_body);
  for (auto& [name, value] : result.exit_headers) {
    if (iequals(name, "content-type")) {
      lr.content_type = ctx.keep(std::move(value));
    } else {
      std::string_view n = ctx.keep(std::move(name));
      lr.headers.emplace_back(n, ctx.keep(std::move(value)));
    }
  }
  if (lr.content_type.empty() && !lr.body.empty()) lr.content_type = "text/plain; charset=utf-8";
  if (ctx.error.empty()) ctx.error = phase == lua::Phase::access ? "plugin_denied" : "plugin_exit";
  return FilterStatus::respond;
}

// body_filter runs for each piece, at once; a call that waits (turnpike.sleep, the HTTP client)
// is finished by finish_body (the pipeline co_awaits it before the next filter). A plugin that
// fails cannot change the status any more: the piece passes unchanged, the error is logged and
// the client connection is closed after the response, so a half-transformed body is at least not
// followed by another response.
bool LuaPluginFilter::on_response_body(RequestContext& ctx, std::vector<std::string_view>& pieces,
                                       bool last) const {
  if (!info_->has_phase(lua::Phase::body_filter)) return true;
  PluginInstance* inst = ctx.plugins;
  if (!inst || !inst->ok()) return true;
  if (!ctx.lua_ctx.valid()) {
    ctx.lua_ctx = inst->vm->new_ctx(&inst->env);
    ctx.lua_vm = inst->vm;
  }
  ctx.current_plugin = info_->name;
  ctx.body_pieces = &pieces;
  ctx.body_last = last;
  lua::CallStart call = inst->vm->start(inst->generation, plugin_, lua::Phase::body_filter, inst->confs[use_],
                                        ctx.lua_ctx, reinterpret_cast<tp_request*>(&ctx));
  ctx.body_pieces = nullptr;
  ctx.current_plugin = {};
  if (!call.done) {
    ctx.body_wait.emplace(finish_body(std::move(*call.rest), ctx, pieces, last, ctx.body_filter_index));
    return false;
  }
  body_call_ended(ctx, call.result);
  return true;
}

asio::awaitable<void> LuaPluginFilter::finish_body(asio::awaitable<lua::CallResult> rest, RequestContext& ctx,
                                                   std::vector<std::string_view>& pieces, bool last,
                                                   size_t index) const {
  // What the PDK's body functions read while the call runs again (set around each resumption).
  ctx.current_plugin = info_->name;
  ctx.body_pieces = &pieces;
  ctx.body_last = last;
  ctx.body_filter_index = index;
  lua::CallResult result = co_await std::move(rest);
  ctx.body_pieces = nullptr;
  ctx.current_plugin = {};
  body_call_ended(ctx, result);
}

void LuaPluginFilter::body_call_ended(RequestContext& ctx, const lua::CallResult& result) const {
  std::string_view why;
  if (result.status == lua::CallStatus::error) {
    why = result.error;
  } else if (result.status == lua::CallStatus::exit) {
    why = "turnpike.exit in body_filter: the response has already started";
  } else {
    return;
  }
  count_plugin_error(ctx, plugin_, why);
  ctx.close_connection = true;
  if (ctx.error.empty()) ctx.error = "plugin_failed";
  spdlog::error("plugin \"{}\" failed in body_filter on route \"{}\" (request {}): {}", info_->name,
                ctx.route ? std::string_view(ctx.route->config->name) : std::string_view("-"),
                ctx.request_id.empty() ? std::string_view("-") : std::string_view(ctx.request_id), why);
}

asio::awaitable<void> LuaPluginFilter::on_log(RequestContext& ctx) const {
  PluginInstance* inst = ctx.plugins;
  if (!inst || !inst->ok()) co_return;
  if (!ctx.lua_ctx.valid()) {
    ctx.lua_ctx = inst->vm->new_ctx(&inst->env);
    ctx.lua_vm = inst->vm;
  }
  ctx.current_plugin = info_->name;
  lua::CallStart call = inst->vm->start(inst->generation, plugin_, lua::Phase::log, inst->confs[use_],
                                        ctx.lua_ctx, reinterpret_cast<tp_request*>(&ctx));
  // Not `call.done ? std::move(call.result) : co_await ...`: GCC 12 miscompiles a co_await inside
  // a conditional expression with a class-type result (the moved string's short buffer was freed
  // from the coroutine frame: AddressSanitizer "bad-free" on the first Lua log phase that ran).
  lua::CallResult result;
  if (call.done) {
    result = std::move(call.result);
  } else {
    result = co_await std::move(*call.rest);
  }
  ctx.current_plugin = {};
  if (result.status == lua::CallStatus::error) {
    count_plugin_error(ctx, plugin_, result.error);
    spdlog::error("plugin \"{}\" failed in its log phase on route \"{}\": {}", info_->name,
                  ctx.route ? std::string_view(ctx.route->config->name) : std::string_view("-"), result.error);
  }
}

// ---- Per-worker instances -----------------------------------------------------------------

WorkerPlugins::~WorkerPlugins() { instances_.clear(); }

void WorkerPlugins::adopt(const std::shared_ptr<const Snapshot>& snapshot) {
  collect();
  const PluginCatalog* catalog = snapshot->plugins.get();
  if (!catalog) return;
  // A snapshot node discovery derived (same generation, same catalog): the instance serves it
  // too; its plugins are not loaded again nor their init_worker run twice.
  if (!instances_.empty() && instances_.back()->snapshot_generation == snapshot->generation &&
      instances_.back()->catalog.lock().get() == catalog) {
    return;
  }
  auto inst = std::make_unique<PluginInstance>();
  inst->snapshot_generation = snapshot->generation;
  inst->catalog = snapshot->plugins;
  // The same runtime settings keep the worker's Vm (a new module generation is loaded into it);
  // changed ones (plugin_paths, limits) get a fresh Vm. Old calls finish on what they started.
  lua::VmConfig want = catalog->vm;
  want.shared_dicts = dicts_ ? lua::ffi_handle(*dicts_) : nullptr;
  for (auto it = instances_.rbegin(); it != instances_.rend() && !inst->vm; ++it) {
    const lua::VmConfig& have = (*it)->vm ? (*it)->vm->config() : want;
    if ((*it)->vm && have.bundled_dir == want.bundled_dir && have.plugin_paths == want.plugin_paths &&
        have.memory_limit == want.memory_limit && have.instruction_budget == want.instruction_budget &&
        have.phase_timeout == want.phase_timeout) {
      inst->vm = (*it)->vm;
    }
  }
  if (!inst->vm) {
    std::string error;
    std::unique_ptr<lua::Vm> vm = lua::Vm::create(want, error);
    if (!vm) {
      inst->error = "cannot start the plugin runtime: " + error;
      spdlog::error("worker {}: {}", worker_, inst->error);
      instances_.push_back(std::move(inst));
      return;
    }
    vm->set_request_api(&pdk_request_api());
    vm->set_request_wait(&pdk_request_wait);
    vm->set_io(&io_);  // turnpike.timer runs on this worker's loop
    inst->vm = std::move(vm);
  }
  std::vector<std::string> errors;
  inst->generation = inst->vm->load(catalog->names, errors, &catalog->sources);
  if (!inst->generation) {
    // A module the checking load did not read (required only now) failed to load.
    inst->error = "plugins failed to load: " + (errors.empty() ? std::string("?") : errors.front());
    spdlog::error("worker {}: {}", worker_, inst->error);
    instances_.push_back(std::move(inst));
    return;
  }
  for (const auto& use : catalog->uses) {
    std::vector<std::string> conf_errors;
    inst->confs.push_back(inst->vm->check_conf(*inst->generation, use.plugin, use.config->conf, conf_errors,
                                               use.level.kind == PluginLevel::Kind::consumer));
    if (!conf_errors.empty() && inst->ok()) inst->error = "plugin \"" + use.config->name + "\": " + conf_errors.front();
  }
  if (!inst->ok()) {
    spdlog::error("worker {}: {}", worker_, inst->error);
    instances_.push_back(std::move(inst));
    return;
  }
  std::vector<lua::Vm::EnvConsumer> consumers;
  for (const auto& c : snapshot->config->consumers) consumers.push_back({c.username, {}});
  for (size_t u = 0; u < catalog->uses.size(); ++u) {
    const auto& use = catalog->uses[u];
    if (use.level.kind != PluginLevel::Kind::consumer) continue;
    for (auto& c : consumers) {
      if (c.username == use.level.name) c.plugins.emplace_back(use.config->name, &inst->confs[u]);
    }
  }
  inst->env = inst->vm->make_env(consumers);
  run_init_worker(*inst, *catalog);
  instances_.push_back(std::move(inst));
}

namespace {

asio::awaitable<void> finish_init_worker(asio::awaitable<lua::CallResult> rest, std::shared_ptr<lua::Vm> vm,
                                         unsigned worker) {
  lua::CallResult r = co_await std::move(rest);
  if (r.status == lua::CallStatus::error) spdlog::error("worker {}: {}", worker, r.error);
}

}  // namespace

void WorkerPlugins::run_init_worker(PluginInstance& inst, const PluginCatalog& catalog) {
  lua::Ref none;
  for (size_t p = 0; p < catalog.names.size(); ++p) {
    if (!catalog.info[p].has_phase(lua::Phase::init_worker)) continue;
    lua::CallStart call = inst.vm->start(inst.generation, p, lua::Phase::init_worker, none, none, nullptr);
    if (call.done) {
      if (call.result.status == lua::CallStatus::error) spdlog::error("worker {}: {}", worker_, call.result.error);
      continue;
    }
    // It waits (a timer loop, a fetch): the rest runs on the worker's loop; the instance's Vm
    // outlives it (kept by the awaitable's generation).
    asio::co_spawn(io_, finish_init_worker(std::move(*call.rest), inst.vm, worker_), asio::detached);
  }
}

void WorkerPlugins::collect() {
  // The newest instance stays even when its snapshot is gone (the worker is about to adopt
  // another); older ones go once no request can reach them.
  for (size_t i = 0; i + 1 < instances_.size();) {
    if (instances_[i]->catalog.expired()) {
      instances_.erase(instances_.begin() + static_cast<ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

}  // namespace turnpike::proxy
