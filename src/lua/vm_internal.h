// Pieces shared by the Vm's source files (not part of the public interface).
#pragma once

#include <lua.hpp>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "http_client.h"
#include "turnpike/lua/pdk.h"
#include "turnpike/lua/vm.h"

namespace turnpike::lua {

// How often the count hook runs, in interpreted VM instructions: rarely enough to cost little,
// often enough that a runaway loop is stopped within microseconds of its budget.
inline constexpr int kHookEvery = 1000;
inline constexpr const char* kBudgetMessage = "instruction budget exceeded";

// The first value a PDK yield passes to coroutine.yield, so a plugin's own bare yield cannot be
// mistaken for one (plugins/lib/turnpike.lua receives its address as bridge.yield_tag).
inline constexpr char kYieldTag = 0;
// The key (a light userdata) under which a request's ctx table holds its environment: the
// consumers of the request's config generation (Vm::make_env), read by turnpike.consumer.
inline constexpr char kEnvKey = 0;

// The shared-dictionary functions the FFI side calls (shared_dict_ffi.cc).
const tp_shared_api& shared_api();

// Pushes the table of request functions as lua_CFunctions (pdk_classic.cc).
void push_classic_request(lua_State* L, tp_pdk_current* cur);
// Pushes open(name) -> the shared dictionary's methods as lua_CFunctions, or nil.
void push_classic_shared_open(lua_State* L, tp_pdk_current* cur);

// tostring() of the value at `index` for the common cases, without calling into Lua.
inline const char* luaL_tolstring_compat(lua_State* L, int index) {
  switch (lua_type(L, index)) {
    case LUA_TNIL: return "nil";
    case LUA_TBOOLEAN: return lua_toboolean(L, index) ? "true" : "false";
    case LUA_TNUMBER:
    case LUA_TSTRING: return lua_tostring(L, index);
    default: return lua_typename(L, lua_type(L, index));
  }
}

// Gives the call's Lua thread back however the call ends: returned (the thread goes back to the
// Vm's idle list for the next call), failed or exited (released to the GC), or abandoned mid-wait
// because the request was cancelled (the awaitable frame, which owns this, is destroyed) — even
// if it never started.
class ThreadRef {
 public:
  ThreadRef(Vm* vm, lua_State* co, int id) : vm_(vm), co_(co), id_(id) {}
  ThreadRef(ThreadRef&& o) noexcept : vm_(o.vm_), co_(o.co_), id_(o.id_), reusable_(o.reusable_) {
    o.vm_ = nullptr;
  }
  ThreadRef(const ThreadRef&) = delete;
  ThreadRef& operator=(const ThreadRef&) = delete;
  ThreadRef& operator=(ThreadRef&&) = delete;
  ~ThreadRef() {
    if (vm_) vm_->release_thread(co_, id_, reusable_);
  }
  // The function returned: the thread is back at its base and can run another call.
  void returned() noexcept { reusable_ = true; }

 private:
  Vm* vm_;
  lua_State* co_;
  int id_;
  bool reusable_ = false;
};

// An HTTP exchange a call waits for, as read from its yield.
struct PendingHttp {
  HttpRequest request;
  std::string error;  // the arguments are wrong: no exchange, the PDK raises this
};

// One resumption of a call's Lua thread and what it ended with.
struct Vm::Step {
  enum Kind : uint8_t { returned, failed, exited, sleeping, fetching, waiting } kind = returned;
  int status = 0;                      // failed: the lua_resume status; waiting: tp_wait
  int64_t arg = 0;                     // waiting
  std::chrono::nanoseconds sleep{};    // sleeping
  std::unique_ptr<PendingHttp> http{};  // fetching
  bool waits() const { return kind == sleeping || kind == fetching || kind == waiting; }
};

// A pending turnpike.timer (timer.cc).
struct Vm::Timer {
  explicit Timer(boost::asio::io_context& io) : timer(io) {}
  uint64_t id = 0;
  boost::asio::steady_timer timer;
  std::chrono::nanoseconds interval{};  // periodic: the period
  bool periodic = false;
  int fn_ref = LUA_NOREF;    // the callback
  int args_ref = LUA_NOREF;  // its extra arguments: { n = count, ... }
  const Generation* owner = nullptr;  // the generation whose call made it; null outside calls
  std::string plugin;                 // that call's plugin ("" outside calls), for messages
  bool running = false;               // a run is in progress
  bool ending = false;                // cancelled, retired or stopped: no further run is armed
};

}  // namespace turnpike::lua
