// The Vm: the lua_State with its memory cap and instruction budget, the runtime bootstrap
// (plugins/lib/turnpike/runtime.lua), generations of plugin modules, conf validation and refs.
// Calls into phase functions are in call.cc.
#include "turnpike/lua/vm.h"

#include <lua.hpp>

#include <cstdio>
#include <cstdlib>

#include "vm_internal.h"

namespace turnpike::lua {

std::string_view to_string(Phase p) noexcept {
  switch (p) {
    case Phase::init_worker: return "init_worker";
    case Phase::rewrite: return "rewrite";
    case Phase::access: return "access";
    case Phase::before_proxy: return "before_proxy";
    case Phase::header_filter: return "header_filter";
    case Phase::body_filter: return "body_filter";
    case Phase::log: return "log";
  }
  return "unknown";
}

std::string_view to_string(CallStatus s) noexcept {
  switch (s) {
    case CallStatus::ok: return "ok";
    case CallStatus::error: return "error";
    case CallStatus::exit: return "exit";
  }
  return "unknown";
}

// ---- Ref and Generation ----------------------------------------------------------------------

Ref& Ref::operator=(Ref&& o) noexcept {
  if (this != &o) {
    if (vm_) vm_->unref(id_);
    vm_ = o.vm_;
    id_ = o.id_;
    o.vm_ = nullptr;
  }
  return *this;
}

Ref::~Ref() {
  if (vm_) vm_->unref(id_);
}

Generation::~Generation() {
  vm_->retire_timers(this);
  vm_->unref(modules_ref_);
}

int Generation::find(std::string_view name) const noexcept {
  for (size_t i = 0; i < plugins_.size(); ++i) {
    if (plugins_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

// ---- Memory cap and instruction budget -------------------------------------------------------

// Lua 5.1's allocator contract: nsize 0 frees; otherwise realloc. Growth beyond the cap returns
// NULL, which LuaJIT turns into a "not enough memory" error in the running coroutine — the call
// fails, its garbage is collected, the VM goes on. Shrinking never fails.
void* Vm::allocate(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* vm = static_cast<Vm*>(ud);
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    std::free(ptr);
    vm->memory_used_ -= old;
    return nullptr;
  }
  if (nsize > old && vm->enforce_limit_ && vm->memory_used_ - old + nsize > vm->cfg_.memory_limit) {
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (!p) return nsize <= old ? ptr : nullptr;
  vm->memory_used_ = vm->memory_used_ - old + nsize;
  return p;
}

// Called every kHookEvery interpreted instructions (LuaJIT's hook is per VM, not per coroutine;
// only one coroutine runs at a time, so the budget of the code now running is budget_left_).
void Vm::count_hook(lua_State* L, lua_Debug*) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  auto* vm = static_cast<Vm*>(ud);
  vm->budget_left_ -= kHookEvery;
  if (vm->budget_left_ >= 0) return;
  // From now on check every instruction: a plugin that catches this error with pcall and loops
  // again gets it again at its very next instruction outside the pcall.
  lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
  vm->hook_every_ = 1;
  // LuaJIT's luaL_error knows no 64-bit conversions: format here.
  char message[96];
  std::snprintf(message, sizeof message, "%s (%llu instructions)", kBudgetMessage,
                static_cast<unsigned long long>(vm->cfg_.instruction_budget));
  luaL_error(L, "%s", message);
}

void Vm::start_budget(int64_t budget) {
  budget_left_ = budget;
  // lua_sethook rewrites LuaJIT's dispatch table: only when the interval changes.
  if (hook_every_ != kHookEvery) {
    lua_sethook(L_, count_hook, LUA_MASKCOUNT, kHookEvery);
    hook_every_ = kHookEvery;
  }
}

// ---- Creation ----------------------------------------------------------------------------------

std::unique_ptr<Vm> Vm::create(VmConfig cfg, std::string& error) {
  std::unique_ptr<Vm> vm(new Vm(std::move(cfg)));
  if (!vm->boot(error)) return nullptr;
  return vm;
}

Vm::Vm(VmConfig cfg) : cfg_(std::move(cfg)) {}

Vm::~Vm() {
  if (L_) lua_close(L_);
}

static int traceback_handler(lua_State* L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

// Runs the function below `nargs` arguments on the main stack, budgeted, with a traceback on
// error. Leaves `nresults` results on success.
bool Vm::protected_call(int nargs, int nresults, std::string& error) {
  int base = lua_gettop(L_) - nargs;
  lua_pushcfunction(L_, traceback_handler);
  lua_insert(L_, base);
  start_budget(static_cast<int64_t>(cfg_.instruction_budget));
  enforce_limit_ = true;
  int status = lua_pcall(L_, nargs, nresults, base);
  enforce_limit_ = false;
  lua_remove(L_, base);
  if (status == 0) return true;
  error = status == LUA_ERRMEM ? memory_message() : (lua_tostring(L_, -1) ? lua_tostring(L_, -1) : "error");
  lua_pop(L_, 1);
  return false;
}

std::string Vm::memory_message() const {
  return "memory limit of " + std::to_string(cfg_.memory_limit) + " bytes reached";
}

bool Vm::boot(std::string& error) {
  L_ = lua_newstate(allocate, this);
  if (!L_) {
    error = "cannot create a Lua state";
    return false;
  }
  // Every Lua error is raised inside lua_pcall or lua_resume; one outside would be a runtime bug.
  // Say so before LuaJIT aborts the process.
  lua_atpanic(L_, [](lua_State* L) -> int {
    std::fprintf(stderr, "turnpike: unprotected Lua error: %s\n", lua_tostring(L, -1));
    return 0;
  });
  luaL_openlibs(L_);
  current_.request_api = &request_api_;
  current_.shared = cfg_.shared_dicts;
  current_.shared_api = &shared_api();

  std::string file = cfg_.bundled_dir + "/lib/turnpike/runtime.lua";
  if (luaL_loadfile(L_, file.c_str()) != 0) {
    error = lua_tostring(L_, -1);
    return false;
  }
  lua_createtable(L_, 0, 3);
  lua_pushstring(L_, cfg_.bundled_dir.c_str());
  lua_setfield(L_, -2, "bundled");
  lua_createtable(L_, static_cast<int>(cfg_.plugin_paths.size()), 0);
  for (size_t i = 0; i < cfg_.plugin_paths.size(); ++i) {
    lua_pushstring(L_, cfg_.plugin_paths[i].c_str());
    lua_rawseti(L_, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L_, -2, "user_dirs");
  lua_createtable(L_, 0, 2);
  lua_pushlightuserdata(L_, &current_);
  lua_setfield(L_, -2, "current");
  lua_pushlightuserdata(L_, const_cast<char*>(&kYieldTag));
  lua_setfield(L_, -2, "yield_tag");
  lua_pushlightuserdata(L_, const_cast<char*>(&kEnvKey));
  lua_setfield(L_, -2, "env_key");
  push_classic_request(L_, &current_);
  lua_setfield(L_, -2, "classic_request");
  push_classic_shared_open(L_, &current_);
  lua_setfield(L_, -2, "classic_shared_open");
  push_timer_functions();
  lua_setfield(L_, -2, "bridge");
  if (!protected_call(1, 1, error)) {
    error = file + ": " + error;
    return false;
  }
  runtime_ref_ = luaL_ref(L_, LUA_REGISTRYINDEX);
  lua_getglobal(L_, "package");
  lua_getfield(L_, -1, "loaded");
  lua_rawgeti(L_, LUA_REGISTRYINDEX, runtime_ref_);
  lua_setfield(L_, -2, "turnpike.runtime");
  lua_pop(L_, 2);
  lua_gc(L_, LUA_GCCOLLECT, 0);
  return true;
}

void Vm::push_runtime_function(const char* name) {
  lua_rawgeti(L_, LUA_REGISTRYINDEX, runtime_ref_);
  lua_getfield(L_, -1, name);
  lua_remove(L_, -2);
}

int Vm::make_ref() {
  ++live_refs_;
  return luaL_ref(L_, LUA_REGISTRYINDEX);
}

void Vm::unref(int id) {
  --live_refs_;
  luaL_unref(L_, LUA_REGISTRYINDEX, id);
}

void Vm::collect_garbage() { lua_gc(L_, LUA_GCCOLLECT, 0); }

void Vm::set_request_api(const tp_request_api* api) { request_api_ = api ? *api : tp_request_api{}; }

// ---- Generations -------------------------------------------------------------------------------

// Appends the strings of the Lua list at `index` to `out`.
static void append_strings(lua_State* L, int index, std::vector<std::string>& out) {
  for (int i = 1;; ++i) {
    lua_rawgeti(L, index, i);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      return;
    }
    const char* s = lua_tostring(L, -1);
    out.emplace_back(s ? s : "(not a string)");
    lua_pop(L, 1);
  }
}

// Reads runtime.describe's kDescribed results from the top of the stack.
constexpr int kDescribed = 7;
static PluginInfo describe(lua_State* L) {
  PluginInfo info;
  info.name = lua_tostring(L, -7);
  info.version = lua_tostring(L, -6);
  info.priority = static_cast<int>(lua_tointeger(L, -5));
  info.trusted = lua_toboolean(L, -4);
  for (size_t p = 0; p < kPhaseCount; ++p) {
    lua_rawgeti(L, -3, static_cast<int>(p + 1));
    info.phases[p] = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  info.credential = lua_toboolean(L, -2);
  info.observes_body = lua_toboolean(L, -1);
  return info;
}

std::shared_ptr<const Generation> Vm::load(const std::vector<std::string>& names, std::vector<std::string>& errors,
                                           const PluginSources* given, PluginSources* read) {
  int top = lua_gettop(L_);
  push_runtime_function("load");
  lua_createtable(L_, static_cast<int>(names.size()), 0);
  for (size_t i = 0; i < names.size(); ++i) {
    lua_pushlstring(L_, names[i].data(), names[i].size());
    lua_rawseti(L_, -2, static_cast<int>(i + 1));
  }
  if (given) {
    lua_createtable(L_, 0, static_cast<int>(given->size()));
    for (const PluginSource& src : *given) {
      lua_createtable(L_, 0, 3);
      lua_pushlstring(L_, src.file.data(), src.file.size());
      lua_setfield(L_, -2, "file");
      lua_pushboolean(L_, src.trusted);
      lua_setfield(L_, -2, "trusted");
      lua_pushlstring(L_, src.text.data(), src.text.size());
      lua_setfield(L_, -2, "text");
      lua_setfield(L_, -2, src.name.c_str());
    }
  } else {
    lua_pushnil(L_);
  }
  std::string error;
  if (!protected_call(2, 2, error)) {
    errors.push_back(std::move(error));
    lua_settop(L_, top);
    return nullptr;
  }
  if (lua_isnil(L_, -2)) {
    append_strings(L_, lua_gettop(L_), errors);
    lua_settop(L_, top);
    return nullptr;
  }
  lua_pop(L_, 1);  // the modules array stays on top
  if (read) {
    read->clear();
    push_runtime_function("sources_read");
    if (!protected_call(0, 1, error)) {
      errors.push_back(std::move(error));
      lua_settop(L_, top);
      return nullptr;
    }
    for (lua_pushnil(L_); lua_next(L_, -2) != 0; lua_pop(L_, 1)) {
      PluginSource src;
      src.name = lua_tostring(L_, -2);
      lua_getfield(L_, -1, "file");
      src.file = lua_tostring(L_, -1);
      lua_getfield(L_, -2, "trusted");
      src.trusted = lua_toboolean(L_, -1);
      lua_getfield(L_, -3, "text");
      size_t n = 0;
      const char* text = lua_tolstring(L_, -1, &n);
      src.text.assign(text, n);
      lua_pop(L_, 3);
      read->push_back(std::move(src));
    }
    lua_pop(L_, 1);
  }
  std::vector<PluginInfo> plugins;
  for (size_t i = 0; i < names.size(); ++i) {
    push_runtime_function("describe");
    lua_rawgeti(L_, -2, static_cast<int>(i + 1));
    // Protected like everything else: the count hook is live, and an error outside a pcall
    // would end the process.
    if (!protected_call(1, kDescribed, error)) {
      errors.push_back("plugin \"" + names[i] + "\": " + error);
      lua_settop(L_, top);
      return nullptr;
    }
    plugins.push_back(describe(L_));
    lua_pop(L_, kDescribed);
  }
  int ref = make_ref();
  lua_settop(L_, top);
  return std::make_shared<const Generation>(this, ref, std::move(plugins));
}

Ref Vm::check_conf_source(const Generation& gen, size_t plugin, std::string_view conf_source,
                          std::vector<std::string>& errors) {
  int top = lua_gettop(L_);
  std::string chunk = "return ";
  chunk.append(conf_source);
  std::string name = "conf of " + gen.plugins().at(plugin).name;
  if (luaL_loadbuffer(L_, chunk.data(), chunk.size(), name.c_str()) != 0) {
    errors.emplace_back(lua_tostring(L_, -1));
    lua_settop(L_, top);
    return {};
  }
  // A conf is data: it sees no globals.
  lua_newtable(L_);
  lua_setfenv(L_, -2);
  std::string error;
  if (!protected_call(0, 1, error)) {
    errors.push_back(std::move(error));
    lua_settop(L_, top);
    return {};
  }
  return check_pushed_conf(gen, plugin, errors);
}

// Pushes a ConfValue as the Lua value the schema sees: maps and lists as tables, null as nil.
// Each level takes two stack slots; lua_checkstack grows the stack (no conf is nested deeper
// than the few thousand levels it allows, and the YAML parser stops far earlier).
static void push_conf(lua_State* L, const ConfValue& v) {
  lua_checkstack(L, 3);
  struct Push {
    lua_State* L;
    void operator()(std::monostate) const { lua_pushnil(L); }
    void operator()(bool b) const { lua_pushboolean(L, b); }
    void operator()(double d) const { lua_pushnumber(L, d); }
    void operator()(const std::string& s) const { lua_pushlstring(L, s.data(), s.size()); }
    void operator()(const ConfList& list) const {
      lua_createtable(L, static_cast<int>(list.size()), 0);
      for (size_t i = 0; i < list.size(); ++i) {
        push_conf(L, list[i]);
        lua_rawseti(L, -2, static_cast<int>(i + 1));
      }
    }
    void operator()(const ConfMap& map) const {
      lua_createtable(L, 0, static_cast<int>(map.size()));
      for (const auto& [key, value] : map) {
        lua_pushlstring(L, key.data(), key.size());
        push_conf(L, value);
        lua_rawset(L, -3);
      }
    }
  };
  std::visit(Push{L}, v.value);
}

Ref Vm::check_conf(const Generation& gen, size_t plugin, const ConfValue& conf,
                   std::vector<std::string>& errors, bool consumer) {
  push_conf(L_, conf);
  return check_pushed_conf(gen, plugin, errors, consumer);
}

// Validates the conf on top of the stack (popped) with the runtime's check_conf.
Ref Vm::check_pushed_conf(const Generation& gen, size_t plugin, std::vector<std::string>& errors,
                          bool consumer) {
  int conf = lua_gettop(L_);
  int top = conf - 1;
  std::string error;
  push_runtime_function("check_conf");
  lua_rawgeti(L_, LUA_REGISTRYINDEX, gen.modules_ref());
  lua_rawgeti(L_, -1, static_cast<int>(plugin + 1));
  lua_remove(L_, -2);
  lua_pushvalue(L_, conf);
  lua_pushboolean(L_, consumer);
  if (!protected_call(3, 2, error)) {
    errors.push_back(std::move(error));
    lua_settop(L_, top);
    return {};
  }
  if (lua_isnil(L_, -2)) {
    append_strings(L_, lua_gettop(L_), errors);
    lua_settop(L_, top);
    return {};
  }
  lua_pop(L_, 1);
  Ref ref(this, make_ref());
  lua_settop(L_, top);
  return ref;
}

Ref Vm::new_ctx(const Ref* env) {
  lua_createtable(L_, 0, 4);
  if (env && env->valid()) {
    lua_pushlightuserdata(L_, const_cast<char*>(&kEnvKey));
    lua_rawgeti(L_, LUA_REGISTRYINDEX, env->id());
    lua_rawset(L_, -3);
  }
  return Ref(this, make_ref());
}

Ref Vm::make_env(const std::vector<EnvConsumer>& consumers) {
  lua_createtable(L_, 0, 2);
  lua_createtable(L_, static_cast<int>(consumers.size()), 0);
  for (size_t i = 0; i < consumers.size(); ++i) {
    const EnvConsumer& c = consumers[i];
    lua_createtable(L_, 0, 3);
    lua_pushlstring(L_, c.username.data(), c.username.size());
    lua_setfield(L_, -2, "username");
    lua_pushinteger(L_, static_cast<lua_Integer>(i));
    lua_setfield(L_, -2, "index");
    lua_createtable(L_, 0, static_cast<int>(c.plugins.size()));
    for (const auto& [name, conf] : c.plugins) {
      lua_pushlstring(L_, name.data(), name.size());
      lua_rawgeti(L_, LUA_REGISTRYINDEX, conf->id());
      lua_rawset(L_, -3);
    }
    lua_setfield(L_, -2, "plugins");
    lua_rawseti(L_, -2, static_cast<int>(i + 1));
  }
  lua_setfield(L_, -2, "consumers");
  lua_newtable(L_);
  lua_setfield(L_, -2, "index");
  return Ref(this, make_ref());
}

std::string Vm::run_chunk(std::string_view source, std::string& error) {
  int top = lua_gettop(L_);
  std::string result;
  if (luaL_loadbuffer(L_, source.data(), source.size(), "chunk") != 0) {
    error = lua_tostring(L_, -1);
  } else if (protected_call(0, 1, error)) {
    const char* s = luaL_tolstring_compat(L_, -1);
    result = s ? s : "";
  }
  lua_settop(L_, top);
  return result;
}

}  // namespace turnpike::lua
