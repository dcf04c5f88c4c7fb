-- The runtime's Lua half, run once per worker VM by src/lua/vm.cc before any plugin:
-- where modules are found (the bundled plugins/ directory, then the users' plugin_paths),
-- which of them run interpreted (so the per-call instruction budget can stop them), the
-- sandbox plugins see, loading plugin modules into a generation and validating their confs.
--
-- Called with a table: { bundled = dir, user_dirs = { dir, ... }, bridge = { ... } }.
local cfg = ...

local jit = require "jit"
local raw_loadfile = loadfile  -- the sandbox below removes the global; the searcher needs it
local raw_load_text, raw_open = load, io.open  -- (the same)

local runtime = { bridge = cfg.bridge }

-- Module search ------------------------------------------------------------------------------
-- Library modules (require "turnpike.schema") live under plugins/lib; plugin modules directly
-- in plugins/ or a user directory. Bundled code is trusted and JIT-compiled. User code runs
-- interpreted: LuaJIT's compiled loops never call the count hook, so a JIT-compiled infinite
-- loop could not be cut off (docs/plugins.md, "Budgets").
local lib_path = cfg.bundled .. "/lib/?.lua"
local plugin_dirs = { { path = cfg.bundled .. "/?.lua", trusted = true } }
for _, dir in ipairs(cfg.user_dirs) do
  plugin_dirs[#plugin_dirs + 1] = { path = dir .. "/?.lua", trusted = false }
end

-- Returns the file, whether it is trusted, and whether it is a library module of the gateway.
local function locate(name, with_lib)
  if with_lib then
    local file = package.searchpath(name, lib_path)
    if file then return file, true, true end
  end
  for _, dir in ipairs(plugin_dirs) do
    local file = package.searchpath(name, dir.path)
    if file then return file, dir.trusted end
  end
end

-- Modules loaded from the plugin directories, so that a new generation loads them afresh. The
-- gateway's own library (plugins/lib) stays: it changes only with the binary, and ffi.cdef
-- must not run twice.
local from_dirs = {}

-- User code asking for the PDK gets its interpreter-friendly variant (lua_CFunctions instead of
-- FFI calls, which are slow when interpreted: src/lua/pdk_classic.cc).
local function require_for_user_code(name)
  if name == "turnpike" then name = "turnpike.interpreted" end
  return require(name)
end

-- User modules get their own globals: a copy of the sandbox's (plain lookups, no metamethod in
-- the interpreter's way) in which `require` is the one above, and where a plugin's stray global
-- assignment stays its own.
local function user_env()
  local env = {}
  for k, v in pairs(_G) do env[k] = v end
  env._G = env
  env.require = require_for_user_code
  return env
end

-- What a load read from the plugin directories, by module name ({ file, trusted, text }), and
-- what it was given to use instead of reading: the workers load the text the config check read
-- (runtime.load), so a file changed on disk in between cannot change a checked config.
local sources_read, sources_given = {}, nil

local function searcher(name)
  local given = sources_given and sources_given[name]
  local file, trusted, lib, text
  if given then
    file, trusted, text = given.file, given.trusted, given.text
  else
    file, trusted, lib = locate(name, true)
    if not file then
      return "\n\tno file '" .. name .. "' in the plugin directories"
    end
    if not lib then
      local f, open_err = raw_open(file, "rb")
      if not f then error(open_err, 0) end
      text = f:read("*a")
      f:close()
      sources_read[name] = { file = file, trusted = trusted, text = text }
    end
  end
  local chunk, err
  if text then chunk, err = raw_load_text(text, "@" .. file) else chunk, err = raw_loadfile(file) end
  if not chunk then error(err, 0) end  -- a syntax error, as file:line: message
  if not trusted then
    jit.off(chunk, true)  -- every function the file defines
    setfenv(chunk, user_env())
  end
  if not lib then from_dirs[name] = true end
  return chunk
end

package.path, package.cpath = "", ""
package.loaders = { package.loaders[1], searcher }  -- preload (ffi, jit), then ours; no C modules

-- Sandbox -----------------------------------------------------------------------------------
-- Plugins must not block the worker (io, os.execute), end the process (os.exit) or load native
-- code. Code compiled at run time gets the same treatment as user code: interpreted.
local function interpreted(fn, err)
  if fn then jit.off(fn, true) end
  return fn, err
end
local raw_load, raw_loadstring = load, loadstring
load = function(...) return interpreted(raw_load(...)) end
loadstring = function(...) return interpreted(raw_loadstring(...)) end
_G.dofile, _G.loadfile = nil, nil
io = nil
os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }
debug = { traceback = debug.traceback }
package.loaded.io, package.loaded.os, package.loaded.debug = nil, os, debug

-- Coroutines of the plugins' own ----------------------------------------------------------------
-- A PDK call that waits (turnpike.sleep) yields the call's coroutine to the runtime. Inside a
-- coroutine a plugin made itself, that yield would land in the plugin's own resume instead; so
-- resume passes PDK yields on outward and hands the answer back in, and the plugin's coroutine
-- can sleep like any other code.
local yield_tag = cfg.bridge.yield_tag
local raw_resume, raw_yield, raw_status = coroutine.resume, coroutine.yield, coroutine.status

local function pass_pdk_yields(co, ok, first, ...)
  if ok and first == yield_tag and raw_status(co) == "suspended" then
    return pass_pdk_yields(co, raw_resume(co, raw_yield(first, ...)))
  end
  return ok, first, ...
end

function coroutine.resume(co, ...)
  return pass_pdk_yields(co, raw_resume(co, ...))
end

local function wrap_results(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

function coroutine.wrap(fn)
  local co = coroutine.create(fn)
  return function(...) return wrap_results(coroutine.resume(co, ...)) end
end

-- Plugin modules ----------------------------------------------------------------------------
local schema = require "turnpike.schema"

local PHASES = { "init_worker", "rewrite", "access", "before_proxy", "header_filter",
                 "body_filter", "log" }

-- Everything wrong with a loaded module, as one string, or nil.
local function check_module(name, mod)
  if type(mod) ~= "table" then
    return "the module returned " .. type(mod) .. ", expected a table"
  end
  local problems = {}
  local function add(msg) problems[#problems + 1] = msg end
  if type(mod.name) ~= "string" then
    add("field 'name' missing (expected a string)")
  elseif mod.name ~= name then
    add("field 'name' is \"" .. mod.name .. "\", expected \"" .. name .. "\" (the file name)")
  end
  if type(mod.priority) ~= "number" or mod.priority % 1 ~= 0 then
    add("field 'priority' missing (expected an integer)")
  end
  if mod.version ~= nil and type(mod.version) ~= "string" and type(mod.version) ~= "number" then
    add("field 'version': expected a string")
  end
  if type(mod.schema) ~= "table" then
    add("field 'schema' missing (expected a table)")
  else
    for _, err in ipairs(schema.check_definition(mod.schema)) do add(err) end
  end
  if mod.consumer_schema ~= nil then
    if type(mod.consumer_schema) ~= "table" then
      add("field 'consumer_schema': expected a table")
    else
      for _, err in ipairs(schema.check_definition(mod.consumer_schema)) do add("consumer_schema: " .. err) end
    end
  end
  if mod.check_schema ~= nil and type(mod.check_schema) ~= "function" then
    add("field 'check_schema': expected a function")
  end
  if mod.body_filter_mode ~= nil and mod.body_filter_mode ~= "transform" and mod.body_filter_mode ~= "observe" then
    add("field 'body_filter_mode': expected \"transform\" or \"observe\"")
  end
  for _, phase in ipairs(PHASES) do
    if mod[phase] ~= nil and type(mod[phase]) ~= "function" then
      add("field '" .. phase .. "': expected a function")
    end
  end
  if #problems > 0 then return table.concat(problems, "; ") end
end

-- Loads `names` afresh. Returns the array of modules, or nil and one message per failing plugin.
-- `sources`: the modules' text as an earlier load read it (runtime.sources_read), or nil.
function runtime.load(names, sources)
  for name in pairs(from_dirs) do package.loaded[name] = nil end
  from_dirs = {}
  sources_read, sources_given = {}, sources
  local modules, errors = {}, {}
  for i, name in ipairs(names) do
    local prefix = "plugin \"" .. name .. "\": "
    if not name:match("^[%w_-]+$") then
      errors[#errors + 1] = prefix .. "a plugin name is letters, digits, '-' and '_'"
    elseif not (sources and sources[name]) and not locate(name, false) then
      errors[#errors + 1] = prefix .. "no " .. name .. ".lua in the plugin directories"
    else
      local ok, mod = pcall(require, name)
      local err = ok and check_module(name, mod) or (not ok and tostring(mod))
      if err then errors[#errors + 1] = prefix .. err else modules[i] = mod end
    end
  end
  if #errors > 0 then return nil, errors end
  return modules
end

function runtime.sources_read() return sources_read end

-- What C++ keeps about a module: name, version, priority, trusted, which phases it has, whether
-- it has a consumer schema, and whether its body_filter only observes the body.
function runtime.describe(mod)
  local phases = {}
  for i, phase in ipairs(PHASES) do phases[i] = mod[phase] ~= nil end
  local _, trusted = locate(mod.name, false)
  return mod.name, tostring(mod.version or ""), mod.priority, trusted, phases,
         mod.consumer_schema ~= nil, mod.body_filter_mode == "observe"
end

-- Validates `conf` for `mod` (defaults filled in place). Returns conf, or nil and errors.
-- A consumer's conf of a plugin with a consumer_schema (a credential) is checked against that.
function runtime.check_conf(mod, conf, for_consumer)
  local def = (for_consumer and mod.consumer_schema) or mod.schema
  local ok, errors = schema.validate(def, conf)
  if not ok then return nil, errors end
  if mod.check_schema then
    local called, accepted, err = pcall(mod.check_schema, conf, for_consumer and "consumer" or "plugin")
    if not called then return nil, { "check_schema raised: " .. tostring(accepted) } end
    if not accepted then return nil, { err and tostring(err) or "rejected by check_schema" } end
  end
  return conf
end

return runtime
