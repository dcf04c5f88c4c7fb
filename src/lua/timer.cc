// Timers for plugins (turnpike.timer.at / turnpike.timer.every): a Lua function run later on the
// worker's loop, in a call of its own — no request, the same instruction budget and
// lua.phase_timeout as a phase call, free to sleep or use the HTTP client.
//
// Lifetime: a timer belongs to the plugin generation whose call made it. When that generation is
// retired (a reload that loaded plugin code afresh) or the worker stops, its pending timers run
// once more at once with `premature` true and then end: the callback can flush what it holds.
// A periodic timer's runs never overlap: the next period starts when a run ends.
//
// Worker thread only, like the rest of the Vm. Nothing here is on the request path.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <cmath>

#include "turnpike/lua/vm.h"
#include "vm_internal.h"

namespace turnpike::lua {

namespace asio = boost::asio;

namespace {

Vm* timer_vm(lua_State* L) { return static_cast<Vm*>(lua_touserdata(L, lua_upvalueindex(1))); }

std::chrono::nanoseconds to_duration(double seconds) {
  // A year is beyond any timer a gateway plugin needs; it also keeps the conversion in range.
  seconds = std::fmin(std::fmax(seconds, 0.0), 365.0 * 86400.0);
  return std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9));
}

// bridge.timer_start(delay, periodic, fn, ...) -> id | nil, why
int lua_timer_start(lua_State* L) {
  Vm* vm = timer_vm(L);
  const double delay = luaL_checknumber(L, 1);
  const bool periodic = lua_toboolean(L, 2) != 0;
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!(delay >= 0) || (periodic && !(delay > 0))) {
    lua_pushnil(L);
    lua_pushstring(L, periodic ? "interval must be a number > 0" : "delay must be a number >= 0");
    return 2;
  }
  const int extra = lua_gettop(L) - 3;
  lua_createtable(L, extra, 1);
  for (int i = 1; i <= extra; ++i) {
    lua_pushvalue(L, 3 + i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, extra);
  lua_setfield(L, -2, "n");
  const int args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  const int fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  std::string why;
  const uint64_t id = vm->add_timer(to_duration(delay), periodic, fn_ref, args_ref, why);
  if (id == 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, args_ref);
    lua_pushnil(L);
    lua_pushstring(L, why.c_str());
    return 2;
  }
  lua_pushnumber(L, static_cast<lua_Number>(id));
  return 1;
}

// bridge.timer_cancel(id) -> true when the timer was pending (it will not run again)
int lua_timer_cancel(lua_State* L) {
  const auto id = static_cast<uint64_t>(luaL_checknumber(L, 1));
  lua_pushboolean(L, timer_vm(L)->cancel_timer(id));
  return 1;
}

// bridge.timer_counts() -> pending, running
int lua_timer_counts(lua_State* L) {
  Vm* vm = timer_vm(L);
  lua_pushinteger(L, static_cast<lua_Integer>(vm->pending_timers()));
  lua_pushinteger(L, static_cast<lua_Integer>(vm->running_timers()));
  return 2;
}

}  // namespace

void Vm::push_timer_functions() {
  static constexpr std::pair<const char*, lua_CFunction> kFunctions[] = {
      {"timer_start", lua_timer_start}, {"timer_cancel", lua_timer_cancel}, {"timer_counts", lua_timer_counts}};
  for (const auto& [name, fn] : kFunctions) {
    lua_pushlightuserdata(L_, this);
    lua_pushcclosure(L_, fn, 1);
    lua_setfield(L_, -2, name);
  }
}

uint64_t Vm::add_timer(std::chrono::nanoseconds delay, bool periodic, int fn_ref, int args_ref, std::string& why) {
  if (!io_) {
    why = "no event loop for timers here";
    return 0;
  }
  if (timers_stopped_) {
    why = "the worker is stopping";
    return 0;
  }
  if (running_.premature) {
    why = "a premature timer run cannot make timers";
    return 0;
  }
  if (timers_.size() >= kMaxPendingTimers) {
    why = "too many pending timers (" + std::to_string(kMaxPendingTimers) + " per worker)";
    return 0;
  }
  auto t = std::make_unique<Timer>(*io_);
  t->id = next_timer_id_++;
  t->periodic = periodic;
  t->interval = delay;
  t->fn_ref = fn_ref;
  t->args_ref = args_ref;
  t->owner = running_.gen;
  t->plugin.assign(running_.plugin);
  live_refs_ += 2;
  Timer& timer = *t;
  timers_.emplace(timer.id, std::move(t));
  arm(timer, delay);
  return timer.id;
}

void Vm::arm(Timer& t, std::chrono::nanoseconds delay) {
  t.timer.expires_after(delay);
  t.timer.async_wait([this, id = t.id](boost::system::error_code ec) {
    if (!ec) fire(id, false);
  });
}

void Vm::fire(uint64_t id, bool premature) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  Timer& t = *it->second;
  if (running_timers_ >= kMaxRunningTimers) {
    spdlog::warn("lua timer of {}: {} timers are running on this worker already; this run is skipped",
                 t.plugin.empty() ? std::string("no plugin") : "plugin \"" + t.plugin + "\"", running_timers_);
    if (t.periodic && !t.ending) {
      arm(t, t.interval);
    } else {
      erase_timer(id);
    }
    return;
  }
  t.running = true;
  ++running_timers_;
  asio::co_spawn(*io_, run_timer(id, premature), asio::detached);
}

asio::awaitable<void> Vm::run_timer(uint64_t id, bool premature) {
  auto it = timers_.find(id);
  if (it == timers_.end()) co_return;
  const std::string who = it->second->plugin.empty() ? "lua timer" : "plugin \"" + it->second->plugin + "\" timer";
  {
    Timer& t = *it->second;
    lua_State* co = nullptr;
    int ref = take_thread(co);
    ThreadRef thread(this, co, ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, t.fn_ref);
    lua_pushboolean(co, premature);
    lua_rawgeti(co, LUA_REGISTRYINDEX, t.args_ref);
    lua_getfield(co, -1, "n");
    const int n = static_cast<int>(lua_tointeger(co, -1));
    lua_pop(co, 1);
    for (int i = 1; i <= n; ++i) lua_rawgeti(co, 3, i);
    lua_remove(co, 3);
    int64_t budget = static_cast<int64_t>(cfg_.instruction_budget);
    running_ = {t.owner, t.plugin, premature};
    Step step = resume(co, 1 + n, budget, nullptr);
    running_ = {};
    const auto deadline = std::chrono::steady_clock::now() + cfg_.phase_timeout;
    std::string failure;
    while (step.waits()) {
      Waited w = co_await wait_step(co, step, deadline, nullptr);
      if (!w.failure.empty()) {
        failure = std::move(w.failure);
        break;
      }
      // The timer is still listed: a running one is erased only when its run ends.
      const Timer& now = *timers_.at(id);
      running_ = {now.ending ? nullptr : now.owner, now.plugin, premature || now.ending};
      step = resume(co, w.nargs, budget, nullptr);
      running_ = {};
    }
    if (!failure.empty()) {
      spdlog::error("{}: {}", who, failure);
    } else if (step.kind == Step::failed) {
      spdlog::error("{}: {}", who, failure_message(co, step.status));
    } else if (step.kind == Step::exited) {
      spdlog::error("{}: turnpike.exit has no request to answer in a timer", who);
    } else {
      thread.returned();
    }
  }
  --running_timers_;
  it = timers_.find(id);
  if (it == timers_.end()) co_return;
  Timer& t = *it->second;
  t.running = false;
  if (t.periodic && !t.ending && !premature) {
    arm(t, t.interval);
  } else {
    erase_timer(id);
  }
}

bool Vm::cancel_timer(uint64_t id) {
  auto it = timers_.find(id);
  if (it == timers_.end() || it->second->ending) return false;
  Timer& t = *it->second;
  t.ending = true;
  if (!t.running) erase_timer(id);  // a running one ends when its run does
  return true;
}

void Vm::erase_timer(uint64_t id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  unref(it->second->fn_ref);
  unref(it->second->args_ref);
  timers_.erase(it);  // cancels a wait in progress (its handler finds no timer)
}

void Vm::end_timers(const Generation* owner, bool all) {
  std::vector<uint64_t> premature;
  for (auto& [id, t] : timers_) {
    if (!all && t->owner != owner) continue;
    if (t->ending) continue;
    t->ending = true;
    if (t->running) continue;  // ends when its run does
    t->timer.cancel();
    premature.push_back(id);
  }
  for (uint64_t id : premature) fire(id, true);
}

void Vm::stop_timers() {
  timers_stopped_ = true;
  end_timers(nullptr, true);
}

void Vm::retire_timers(const Generation* owner) {
  if (!timers_stopped_) end_timers(owner, false);
}

}  // namespace turnpike::lua
