// The LuaJIT plugin runtime: one Vm per worker thread, the plugin modules it loaded (a
// Generation), and calls into a plugin's phase functions as coroutines that may yield to the
// worker's event loop.
//
// Threading: a Vm, its Generations, Refs and calls belong to the thread that created the Vm and
// are never touched by another. Nothing here takes a lock.
//
// Trust: bundled plugins (plugins/ shipped with the gateway) run JIT-compiled; modules found in
// the users' plugin_paths run interpreted so that the per-call instruction budget can cut them
// off (LuaJIT's compiled loops never call the count hook: see docs/plugins.md, "Budgets").
// Isolation protects the gateway from buggy plugins, not from hostile ones (ffi is reachable).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <array>
#include <cstddef>
#include <cstdint>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "turnpike/lua/conf_value.h"
#include "turnpike/lua/pdk.h"

struct lua_State;
struct lua_Debug;

namespace turnpike::lua {

// The phases a plugin may implement, in the order the pipeline calls them.
enum class Phase : uint8_t {
  init_worker,    // once per worker, after the generation is loaded (no request)
  rewrite,        // request head received, before access checks
  access,         // authentication, authorisation, limits
  before_proxy,   // the balancer step: pick or change the upstream / node
  header_filter,  // upstream response head received, before it is sent
  body_filter,    // each response body chunk
  log,            // after the response was sent
};
inline constexpr size_t kPhaseCount = 7;
std::string_view to_string(Phase p) noexcept;

struct VmConfig {
  std::string bundled_dir;                // the gateway's plugins/ directory (trusted: JIT on)
  std::vector<std::string> plugin_paths;  // users' plugin directories (interpreted, budgeted)
  size_t memory_limit = 64u << 20;        // bytes of Lua heap; above it allocations fail
  uint64_t instruction_budget = 10'000'000;  // per call (all its resumptions), interpreted code
  // A call that waits (turnpike.sleep, turnpike.http.request) longer than this in all fails: a
  // plugin that yields and never resumes cannot hold its request past it.
  std::chrono::nanoseconds phase_timeout = std::chrono::seconds(60);
  tp_shared_dicts* shared_dicts = nullptr;  // node-wide (shared_dict.h); outlives every Vm
};

// How a call ended.
enum class CallStatus : uint8_t {
  ok,     // the phase function returned (or the plugin has no function for this phase)
  error,  // it raised, ran out of budget or memory, or yielded outside the PDK
  exit,   // it called turnpike.exit(status, body): the pipeline answers with that response
};
std::string_view to_string(CallStatus s) noexcept;

struct CallResult {
  CallStatus status = CallStatus::ok;
  std::string error;      // status error: `plugin "x" access: <message>` and a traceback
  int exit_status = 0;    // status exit
  std::string exit_body;  // status exit
  std::vector<std::pair<std::string, std::string>> exit_headers;  // status exit, sorted by name

  static CallResult ok() { return {}; }
};

// A call started by Vm::start: finished at once (`done`, with its result), or waiting inside
// the PDK (turnpike.sleep) with `rest` to co_await for the result.
struct CallStart {
  bool done = true;
  CallResult result;
  std::optional<boost::asio::awaitable<CallResult>> rest;
};

class Vm;
class ThreadRef;  // call.cc: a call's Lua thread, released with the call

// A registry reference to a Lua value (a validated plugin conf, a request's ctx table). Released
// when destroyed; must not outlive its Vm.
class Ref {
 public:
  Ref() = default;
  Ref(Vm* vm, int id) : vm_(vm), id_(id) {}
  Ref(Ref&& o) noexcept : vm_(o.vm_), id_(o.id_) { o.vm_ = nullptr; }
  Ref& operator=(Ref&& o) noexcept;
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;
  ~Ref();
  bool valid() const noexcept { return vm_ != nullptr; }
  int id() const noexcept { return id_; }

 private:
  Vm* vm_ = nullptr;
  int id_ = 0;
};

// A module's text as a load read it from a plugin directory: a later load (a worker's) uses it
// instead of the file, which may have changed since.
struct PluginSource {
  std::string name;  // the module name (require's)
  std::string file;  // where it was read (error messages say file:line)
  bool trusted = false;
  std::string text;
};
using PluginSources = std::vector<PluginSource>;

// What the runtime knows about one loaded plugin module.
struct PluginInfo {
  std::string name;
  std::string version;
  int priority = 0;
  bool trusted = false;                    // loaded from the bundled directory
  std::array<bool, kPhaseCount> phases{};  // which phase functions it defines
  // It has a consumer_schema: on a consumer, its conf is a credential (key-auth's key), checked
  // with that schema and found with turnpike.consumer.find, not a plugin to run.
  bool credential = false;
  // body_filter_mode = "observe": its body_filter reads the pieces and never replaces them, so
  // the response keeps its Content-Length (proxy-mirror's body digest).
  bool observes_body = false;
  bool has_phase(Phase p) const noexcept { return phases[static_cast<size_t>(p)]; }
};

// One load of a set of plugin modules. A reload makes a new Generation; calls hold a shared_ptr
// to the one they started on, so in-flight calls finish on the old code. Must be released before
// its Vm.
class Generation {
 public:
  Generation(Vm* vm, int modules_ref, std::vector<PluginInfo> plugins)
      : vm_(vm), modules_ref_(modules_ref), plugins_(std::move(plugins)) {}
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  const std::vector<PluginInfo>& plugins() const noexcept { return plugins_; }
  // Index of the plugin called `name`, or -1.
  int find(std::string_view name) const noexcept;
  int modules_ref() const noexcept { return modules_ref_; }

 private:
  Vm* vm_;
  int modules_ref_;  // registry ref of a Lua array of module tables, in plugins_ order
  std::vector<PluginInfo> plugins_;
};

class Vm {
 public:
  // Nullptr and `error` set when the state or the runtime's bootstrap cannot be made.
  static std::unique_ptr<Vm> create(VmConfig cfg, std::string& error);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Loads the named plugin modules afresh (library modules from the plugin directories too) into
  // a new generation. On any failure returns nullptr and one message per failing plugin.
  // `given`: the modules' text as an earlier load read it, used instead of the files; `read`:
  // set to what this load read from the plugin directories.
  std::shared_ptr<const Generation> load(const std::vector<std::string>& names, std::vector<std::string>& errors,
                                         const PluginSources* given = nullptr, PluginSources* read = nullptr);

  // Validates a plugin conf given as Lua source of a table constructor (`{ key = "x" }`) against
  // the plugin's schema (defaults filled in) and its check_schema. Returns the conf, or an
  // invalid Ref and every error (`conf.key: expected string`).
  Ref check_conf_source(const Generation& gen, size_t plugin, std::string_view conf_source,
                        std::vector<std::string>& errors);
  // The same for a conf the config loader parsed (a YAML map under `plugins:`).
  // `consumer`: the conf is a consumer's, checked with the plugin's consumer_schema if it has one.
  Ref check_conf(const Generation& gen, size_t plugin, const ConfValue& conf,
                 std::vector<std::string>& errors, bool consumer = false);

  // A fresh per-request ctx table, shared by every plugin and phase of one request. With `env`
  // (from make_env), turnpike.consumer finds the consumers of the request's config in it.
  Ref new_ctx(const Ref* env = nullptr);

  // One consumer of a config generation, for make_env: its name and its validated plugin confs
  // (Refs from check_conf, read while make_env runs).
  struct EnvConsumer {
    std::string username;
    std::vector<std::pair<std::string, const Ref*>> plugins;
  };
  // The environment shared by the requests of one config generation on this Vm:
  // { consumers = { {username =, index = (0-based), plugins = {name = conf}} }, index = {} }.
  Ref make_env(const std::vector<EnvConsumer>& consumers);

  // Runs plugin `plugin`'s `phase` function as (conf, ctx) in a new Lua coroutine. Yields from
  // the PDK (turnpike.sleep) suspend this awaitable on the caller's executor while other calls
  // run. Destroying the awaitable early (request timeout) releases the coroutine. conf and ctx
  // are read before call() returns (they may be temporaries); `request` must live until the
  // awaitable completes.
  boost::asio::awaitable<CallResult> call(std::shared_ptr<const Generation> gen, size_t plugin,
                                          Phase phase, const Ref& conf, const Ref& ctx,
                                          tp_request* request);
  // The same, running the call at once: most calls end without waiting and then cost no
  // coroutine (the pipeline's path). Otherwise co_await the CallStart's `rest`.
  CallStart start(std::shared_ptr<const Generation> gen, size_t plugin, Phase phase,
                  const Ref& conf, const Ref& ctx, tp_request* request);

  // Runs a chunk of trusted Lua source and returns its first result as a string (tools, tests;
  // not the request path). Sets `error` on failure.
  std::string run_chunk(std::string_view source, std::string& error);

  // Introspection for tests and metrics.
  size_t memory_used() const noexcept { return memory_used_; }
  size_t live_refs() const noexcept { return live_refs_; }
  size_t live_calls() const noexcept { return live_calls_; }
  size_t idle_threads() const noexcept { return idle_threads_.size(); }
  void collect_garbage();

  // The request functions the pipeline implements (pdk.h); the defaults answer "nothing".
  void set_request_api(const tp_request_api* api);
  // The waits the pipeline does for a plugin (tp_wait: reading the request body ahead). Without
  // one, such a wait answers -1 at once.
  using RequestWaitFn = boost::asio::awaitable<int64_t> (*)(tp_request* request, int what, int64_t arg);
  void set_request_wait(RequestWaitFn fn) { request_wait_ = fn; }

  // Timers (turnpike.timer, timer.cc): they run on `io`, which must outlive the Vm. Without one,
  // turnpike.timer.at answers nil, "no event loop for timers here".
  void set_io(boost::asio::io_context* io) { io_ = io; }
  // The worker stops: every pending timer runs once more, now, with premature = true, and no new
  // timer can be made.
  void stop_timers();
  // A generation is retired (Generation's destructor): its pending timers run once more with
  // premature = true and end.
  void retire_timers(const Generation* owner);
  size_t pending_timers() const noexcept { return timers_.size(); }
  size_t running_timers() const noexcept { return running_timers_; }
  static constexpr size_t kMaxPendingTimers = 1024;  // per worker, as OpenResty's default
  static constexpr size_t kMaxRunningTimers = 256;
  // Used by turnpike.timer's C functions.
  uint64_t add_timer(std::chrono::nanoseconds delay, bool periodic, int fn_ref, int args_ref, std::string& why);
  bool cancel_timer(uint64_t id);

  // Used by Ref and Generation.
  void unref(int id);
  const VmConfig& config() const noexcept { return cfg_; }

 private:
  friend class ThreadRef;
  // Lua threads of calls that returned, kept for the next calls: a new thread and its garbage
  // collection cost more than the call itself (docs/plugins.md, "PDK transport").
  struct IdleThread {
    lua_State* co;
    int ref;
  };
  static constexpr size_t kIdleThreads = 64;
  int take_thread(lua_State*& co);
  void release_thread(lua_State* co, int ref, bool reusable);

  struct Timer;
  void push_timer_functions();
  void arm(Timer& t, std::chrono::nanoseconds delay);
  void fire(uint64_t id, bool premature);
  boost::asio::awaitable<void> run_timer(uint64_t id, bool premature);
  void erase_timer(uint64_t id);
  void end_timers(const Generation* owner, bool all);

  explicit Vm(VmConfig cfg);
  bool boot(std::string& error);
  int make_ref();  // pops the top of the main stack into the registry
  static void* allocate(void* ud, void* ptr, size_t osize, size_t nsize);
  static void count_hook(lua_State* L, lua_Debug* ar);
  void start_budget(int64_t budget);
  bool protected_call(int nargs, int nresults, std::string& error);
  void push_runtime_function(const char* name);
  Ref check_pushed_conf(const Generation& gen, size_t plugin, std::vector<std::string>& errors,
                        bool consumer = false);
  std::string memory_message() const;
  struct Step;
  Step resume(lua_State* co, int nargs, int64_t& budget, tp_request* request);
  CallResult finish(lua_State* co, const Step& step, ThreadRef& thread, const PluginInfo& info,
                    Phase phase);
  static boost::asio::awaitable<CallResult> ready(CallResult result);
  boost::asio::awaitable<CallResult> run(std::shared_ptr<const Generation> gen, size_t plugin,
                                         Phase phase, lua_State* co, ThreadRef thread,
                                         tp_request* request, int64_t budget, Step first);
  CallResult call_failed(lua_State* co, int status, const PluginInfo& plugin, Phase phase);
  // The error on top of `co` (a failed resume with `status`) with its traceback.
  std::string failure_message(lua_State* co, int status);
  // Does the wait `step` asks for (sleep, an HTTP exchange, a request wait) and pushes what the
  // Lua side gets back; `nargs` is their count. Returns why the call fails instead, or "".
  struct Waited {
    std::string failure;
    int nargs = 0;
  };
  boost::asio::awaitable<Waited> wait_step(lua_State* co, Step& step,
                                           std::chrono::steady_clock::time_point deadline,
                                           tp_request* request);
  // The call now running: timers it makes belong to its generation and plugin.
  struct Running {
    const Generation* gen = nullptr;
    std::string_view plugin;  // the plugin's name ("" for none)
    bool premature = false;   // a timer's last run: it may not make new timers
  };

  VmConfig cfg_;
  lua_State* L_ = nullptr;
  int runtime_ref_ = 0;         // the table returned by plugins/lib/turnpike/runtime.lua
  size_t memory_used_ = 0;
  // The cap applies only while Lua code runs in protected mode (pcall, resume), where a failed
  // allocation is an error the call reports. The runtime's own C API work outside (a ctx
  // table, a thread, a registry slot) must not fail: an unprotected error would end the process.
  bool enforce_limit_ = false;
  int64_t budget_left_ = 0;     // instructions left for the code now running
  int hook_every_ = 0;          // the count hook's interval now set (0: none yet)
  size_t live_refs_ = 0;
  size_t live_calls_ = 0;
  std::vector<IdleThread> idle_threads_;
  tp_pdk_current current_{};    // what the PDK's FFI side reads: the request now running
  tp_request_api request_api_{};
  RequestWaitFn request_wait_ = nullptr;
  Running running_;
  boost::asio::io_context* io_ = nullptr;
  std::unordered_map<uint64_t, std::unique_ptr<Timer>> timers_;
  uint64_t next_timer_id_ = 1;
  size_t running_timers_ = 0;
  bool timers_stopped_ = false;
};

}  // namespace turnpike::lua
