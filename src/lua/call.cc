// Calls into a plugin's phase function: each call is a fresh Lua coroutine (a thread referenced
// from the registry while the call lives), resumed from a C++ coroutine. A PDK function that must
// wait (turnpike.sleep, turnpike.http.request) yields the Lua coroutine with the yield tag; the
// C++ side waits on the worker's executor (a timer, an HTTP exchange) and resumes it, so other
// calls on the same Vm run meanwhile.
//
// Per-request path: one lua_newthread and one registry slot per call; no lock.
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "http_client.h"
#include "turnpike/lua/vm.h"
#include "vm_internal.h"

namespace turnpike::lua {

namespace asio = boost::asio;

int Vm::take_thread(lua_State*& co) {
  ++live_calls_;
  if (!idle_threads_.empty()) {
    IdleThread t = idle_threads_.back();
    idle_threads_.pop_back();
    co = t.co;
    return t.ref;
  }
  co = lua_newthread(L_);
  return make_ref();
}

void Vm::release_thread(lua_State* co, int ref, bool reusable) {
  --live_calls_;
  if (reusable && idle_threads_.size() < kIdleThreads) {
    lua_settop(co, 0);
    idle_threads_.push_back({co, ref});
    return;
  }
  unref(ref);
}

namespace {

constexpr const char* kPhaseTimeoutMessage =
    "phase time budget exceeded (lua.phase_timeout): the call waited too long";

// What a PDK yield asks for: the values after the tag are (kind, args...).
enum class YieldKind : uint8_t {
  sleep,    // (seconds): resume after that long
  http,     // (method, url, headers, body, timeout, max_body): resume with the response
  exit,     // (status, body): end the call; the pipeline answers
  wait,     // (what, arg): a wait the pipeline does for the request (tp_wait); resume with its result
  foreign,  // not a PDK yield: a plugin called coroutine.yield itself
};

YieldKind yield_kind(lua_State* co) {
  if (lua_gettop(co) < 2 || lua_touserdata(co, 1) != &kYieldTag) return YieldKind::foreign;
  const char* kind = lua_tostring(co, 2);
  if (kind && std::strcmp(kind, "sleep") == 0) return YieldKind::sleep;
  if (kind && std::strcmp(kind, "exit") == 0) return YieldKind::exit;
  if (kind && std::strcmp(kind, "http") == 0) return YieldKind::http;
  if (kind && std::strcmp(kind, "wait") == 0) return YieldKind::wait;
  return YieldKind::foreign;
}

std::chrono::nanoseconds sleep_duration(lua_State* co) {
  double seconds = lua_tonumber(co, 3);
  if (!(seconds > 0)) return {};
  // A day is far beyond any request timeout; it also keeps the conversion in range.
  seconds = std::fmin(seconds, 86400.0);
  return std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9));
}

// The headers table of turnpike.exit: string keys with string (or number) values. Anything else
// was refused by the PDK before it yielded. Sorted, so the response does not depend on the
// order a Lua table happens to iterate in.
void read_exit_headers(lua_State* co, int index, std::vector<std::pair<std::string, std::string>>& out) {
  if (!lua_istable(co, index)) return;
  lua_pushnil(co);
  while (lua_next(co, index) != 0) {
    size_t klen = 0, vlen = 0;
    const char* k = lua_type(co, -2) == LUA_TSTRING ? lua_tolstring(co, -2, &klen) : nullptr;
    const char* v = lua_isstring(co, -1) ? lua_tolstring(co, -1, &vlen) : nullptr;
    if (k && v) out.emplace_back(std::string(k, klen), std::string(v, vlen));
    lua_pop(co, 1);
  }
  std::sort(out.begin(), out.end());
}

}  // namespace

std::string Vm::failure_message(lua_State* co, int status) {
  // Describing the failure allocates (the traceback); outside resume the cap is off, so that
  // works even right at the memory cap.
  if (status == LUA_ERRMEM) {
    luaL_traceback(L_, co, memory_message().c_str(), 0);
  } else {
    const char* msg = lua_tostring(co, -1);
    luaL_traceback(L_, co, msg ? msg : "error object is not a string", 0);
  }
  std::string out = lua_tostring(L_, -1);
  lua_pop(L_, 1);
  return out;
}

CallResult Vm::call_failed(lua_State* co, int status, const PluginInfo& plugin, Phase phase) {
  CallResult result;
  result.status = CallStatus::error;
  result.error = "plugin \"" + plugin.name + "\" " + std::string(to_string(phase)) + ": ";
  result.error += failure_message(co, status);
  return result;
}

Vm::Step Vm::resume(lua_State* co, int nargs, int64_t& budget, tp_request* request) {
  current_.request = request;
  start_budget(budget);
  enforce_limit_ = true;
  int status = lua_resume(co, nargs);
  enforce_limit_ = false;
  budget = budget_left_;
  current_.request = nullptr;
  if (status == 0) return {Step::returned};
  if (status != LUA_YIELD) return {Step::failed, status};
  switch (yield_kind(co)) {
    case YieldKind::sleep: {
      Step step{Step::sleeping};
      step.sleep = sleep_duration(co);
      lua_settop(co, 0);
      return step;
    }
    case YieldKind::http: {
      Step step{Step::fetching};
      step.http = std::make_unique<PendingHttp>();
      step.http->request = read_http_request(co, 3, step.http->error);
      lua_settop(co, 0);
      return step;
    }
    case YieldKind::exit: return {Step::exited};
    case YieldKind::wait: {
      Step step{Step::waiting, static_cast<int>(lua_tointeger(co, 3))};
      step.arg = static_cast<int64_t>(lua_tonumber(co, 4));
      lua_settop(co, 0);
      return step;
    }
    case YieldKind::foreign: break;
  }
  lua_settop(co, 0);
  lua_pushstring(co, "coroutine.yield called outside the PDK (use turnpike.sleep)");
  return {Step::failed, LUA_ERRRUN};
}

// The outcome of a step that ended the call (anything but sleeping).
CallResult Vm::finish(lua_State* co, const Step& step, ThreadRef& thread, const PluginInfo& info,
                      Phase phase) {
  switch (step.kind) {
    case Step::returned: thread.returned(); return CallResult::ok();
    case Step::failed: return call_failed(co, step.status, info, phase);
    case Step::exited: {
      CallResult result;
      result.status = CallStatus::exit;
      result.exit_status = static_cast<int>(lua_tointeger(co, 3));
      size_t len = 0;
      const char* body = lua_tolstring(co, 4, &len);
      if (body) result.exit_body.assign(body, len);
      read_exit_headers(co, 5, result.exit_headers);
      return result;  // the suspended coroutine is never resumed; releasing it frees it
    }
    case Step::sleeping:
    case Step::fetching:
    case Step::waiting: break;
  }
  return CallResult::ok();
}

// The function and its arguments are pushed onto the Lua thread and the first resumption runs
// now, so conf and ctx need only live until start() returns, and a call that does not wait
// costs no coroutine frame.
CallStart Vm::start(std::shared_ptr<const Generation> gen, size_t plugin, Phase phase,
                    const Ref& conf, const Ref& ctx, tp_request* request) {
  CallStart out;
  const PluginInfo& info = gen->plugins().at(plugin);
  if (!info.has_phase(phase)) return out;

  lua_State* co = nullptr;
  int ref = take_thread(co);
  ThreadRef thread(this, co, ref);

  lua_rawgeti(co, LUA_REGISTRYINDEX, gen->modules_ref());
  lua_rawgeti(co, -1, static_cast<int>(plugin + 1));
  lua_getfield(co, -1, to_string(phase).data());  // a NUL-terminated literal
  lua_replace(co, 1);
  lua_settop(co, 1);
  if (conf.valid()) lua_rawgeti(co, LUA_REGISTRYINDEX, conf.id()); else lua_pushnil(co);
  if (ctx.valid()) lua_rawgeti(co, LUA_REGISTRYINDEX, ctx.id()); else lua_pushnil(co);

  int64_t budget = static_cast<int64_t>(cfg_.instruction_budget);
  running_ = {gen.get(), info.name};
  Step step = resume(co, 2, budget, request);
  running_ = {};
  if (!step.waits()) {
    out.result = finish(co, step, thread, info, phase);
    return out;
  }
  out.done = false;
  out.rest.emplace(run(std::move(gen), plugin, phase, co, std::move(thread), request, budget, std::move(step)));
  return out;
}

asio::awaitable<CallResult> Vm::call(std::shared_ptr<const Generation> gen, size_t plugin,
                                     Phase phase, const Ref& conf, const Ref& ctx,
                                     tp_request* request) {
  CallStart s = start(std::move(gen), plugin, phase, conf, ctx, request);
  if (!s.done) return std::move(*s.rest);
  return ready(std::move(s.result));
}

asio::awaitable<CallResult> Vm::ready(CallResult result) { co_return result; }

// Goes on with a call that is waiting (turnpike.sleep, turnpike.http.request): waits, resumes,
// until it ends. lua.phase_timeout bounds all of its waits together.
asio::awaitable<CallResult> Vm::run(std::shared_ptr<const Generation> gen, size_t plugin,
                                    Phase phase, lua_State* co, ThreadRef thread,
                                    tp_request* request, int64_t budget, Step step) {
  const PluginInfo& info = gen->plugins()[plugin];
  const auto deadline = std::chrono::steady_clock::now() + cfg_.phase_timeout;
  for (;;) {
    Waited w = co_await wait_step(co, step, deadline, request);
    if (!w.failure.empty()) {
      lua_settop(co, 0);
      lua_pushstring(co, w.failure.c_str());
      co_return call_failed(co, LUA_ERRRUN, info, phase);
    }
    running_ = {gen.get(), info.name};
    step = resume(co, w.nargs, budget, request);
    running_ = {};
    if (!step.waits()) co_return finish(co, step, thread, info, phase);
  }
}

asio::awaitable<Vm::Waited> Vm::wait_step(lua_State* co, Step& step, std::chrono::steady_clock::time_point deadline,
                                          tp_request* request) {
  Waited w;
  if (step.kind == Step::fetching) {
    HttpResult r;
    if (!step.http->error.empty()) {
      r.error = HttpError::bad_request;
      r.detail = std::move(step.http->error);
    } else {
      const auto until = std::chrono::steady_clock::now() + step.http->request.timeout;
      r = co_await http_exchange(step.http->request, std::min(until, deadline));
      if (r.error == HttpError::timeout && until > deadline) {
        w.failure = kPhaseTimeoutMessage;
        co_return w;
      }
      if (r.error == HttpError::cancelled) {
        w.failure = "the call was cancelled while it waited for an HTTP response";
        co_return w;
      }
    }
    w.nargs = push_http_result(co, r);
  } else if (step.kind == Step::waiting) {
    // The pipeline's own waits are bounded by its timeouts (the client body's), not by
    // lua.phase_timeout: a slow upload is the client's, answered with a 408.
    int64_t result = -1;
    if (request_wait_ && request) result = co_await request_wait_(request, step.status, step.arg);
    lua_pushinteger(co, static_cast<lua_Integer>(result));
    w.nargs = 1;
  } else {
    const auto wake = std::chrono::steady_clock::now() + step.sleep;
    asio::steady_timer timer(co_await asio::this_coro::executor, std::min(wake, deadline));
    co_await timer.async_wait(asio::use_awaitable);
    if (wake > deadline) w.failure = kPhaseTimeoutMessage;
  }
  co_return w;
}

}  // namespace turnpike::lua
