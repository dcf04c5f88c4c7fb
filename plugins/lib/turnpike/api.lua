-- The part of the PDK written in Lua over four primitives, shared by both transports: bundled
-- plugins get it over FFI calls (plugins/lib/turnpike.lua), users' interpreted plugins over
-- lua_CFunctions (plugins/lib/turnpike/interpreted.lua). The field numbers are tp_field and
-- tp_int_field of include/turnpike/lua/pdk.h.
--
--   get(field, arg) -> string or nil      set(field, arg, value) -> boolean
--   get_int(field) -> number or nil       log(level, message)
return function(turnpike, get, set, get_int, log)
  local F = {
    host = 1, scheme = 2, query = 3, uri = 4, route = 5, route_param = 6, request_id = 7,
    consumer = 8, response_header = 9, upstream = 10, path = 11, protocol = 12, listener = 13,
    response_add_header = 14, remote_addr = 15, headers = 16, response_status = 17, body_chunk = 18,
    request_body = 19, method = 20,
    skip_body_filter = 50,
    upstream_name = 30, outcome = 31, upstream_tag = 32, upstream_nodes = 60,
  }
  local WAIT_BODY = 1
  local yield_tag = require("turnpike.runtime").bridge.yield_tag
  local yield = coroutine.yield
  local I = { status = 1, upstream_status = 2, content_length = 3, body_bytes = 4, server_port = 5,
              body_last = 6, has_body = 19 }

  local byte, char, find, sub, gsub = string.byte, string.char, string.find, string.sub, string.gsub
  local tostring, tonumber, type, select, concat = tostring, tonumber, type, select, table.concat

  -- Request -------------------------------------------------------------------------------------
  local request = turnpike.request
  function request.get_host() return get(F.host) end
  function request.get_scheme() return get(F.scheme) end
  function request.get_query() return get(F.query) end
  function request.get_uri() return get(F.uri) end
  function request.get_protocol() return get(F.protocol) end
  function request.get_remote_addr() return get(F.remote_addr) end
  function request.get_route() return get(F.route) end
  function request.get_listener() return get(F.listener) end
  function request.get_port() return get_int(I.server_port) end
  -- The value of the route's `{name}` path parameter.
  function request.get_param(name) return get(F.route_param, name) end
  function request.get_id() return get(F.request_id) end
  function request.set_id(id) return set(F.request_id, nil, tostring(id)) end
  -- Declared request body length (Content-Length), nil when unknown.
  function request.get_content_length() return get_int(I.content_length) end
  -- Reads the request body ahead (rewrite, access, before_proxy), waiting for it without blocking
  -- the worker: until it ends or `max` bytes are read (nil: up to lua.max_body_buffer, which
  -- also caps `max`). Returns the bytes read (at least `max` of them, unless the body is shorter;
  -- "" without a body) and whether that is the whole body; nil and why when the client's body
  -- failed (too large, malformed, too slow: the gateway answers it with 413/400/408 after the
  -- phase). The upstream still gets the whole body: what was read goes first, the rest streams.
  function request.read_body(max)
    if max ~= nil and (type(max) ~= "number" or max < 0) then
      error("turnpike.request.read_body: max must be a number of bytes >= 0", 2)
    end
    local rc = yield(yield_tag, "wait", WAIT_BODY, max or 0)
    if rc == nil or rc < 0 then return nil, "the request body could not be read" end
    return get(F.request_body) or "", rc == 1
  end
  -- Whether the request has a body (without reading it).
  function request.has_body() return get_int(I.has_body) == 1 end
  -- The body read_body read (nil before it ran).
  function request.get_body() return get(F.request_body) end
  -- Replaces the body the upstream gets (sent with a Content-Length). Only once read_body read
  -- it whole, or when the request has none; true, or false when refused.
  function request.set_body(body)
    if type(body) ~= "string" then error("turnpike.request.set_body: body must be a string", 2) end
    return set(F.request_body, nil, body)
  end
  -- The path the upstream gets (rewrite and access phases).
  function request.set_path(path) return set(F.path, nil, path) end
  -- The Host the upstream gets.
  function request.set_host(host) return set(F.host, nil, host) end
  -- The method the upstream gets (rewrite, access, before_proxy): a token such as "POST". A HEAD
  -- or CONNECT request keeps its method, and no request becomes one (the response's framing
  -- depends on it); an upgrade (WebSocket) keeps its GET. True, or false when refused.
  function request.set_method(method)
    if type(method) ~= "string" then error("turnpike.request.set_method: method must be a string", 2) end
    return set(F.method, nil, method)
  end

  local function unescape(s)
    s = gsub(s, "+", " ")
    return (gsub(s, "%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
  end
  local function escape(s)
    return (gsub(s, "[^%w%-%._~]", function(c) return ("%%%02X"):format(byte(c)) end))
  end
  request.unescape_uri, request.escape_uri = unescape, escape

  -- The query arguments, decoded: name -> value; a repeated name -> list of values; a name
  -- without "=" -> true.
  function request.get_uri_args()
    local args = {}
    local q = get(F.query)
    if not q or q == "" then return args end
    for pair in q:gmatch("[^&]+") do
      local eq = find(pair, "=", 1, true)
      local name, value
      if eq then name, value = unescape(sub(pair, 1, eq - 1)), unescape(sub(pair, eq + 1))
      else name, value = unescape(pair), true end
      local prev = args[name]
      if prev == nil then args[name] = value
      elseif type(prev) == "table" then prev[#prev + 1] = value
      else args[name] = { prev, value } end
    end
    return args
  end

  -- Replaces the query: a string (raw, without "?") or a table like get_uri_args' (encoded here,
  -- names sorted so the result is stable).
  function request.set_uri_args(args)
    if type(args) == "string" then return set(F.query, nil, args) end
    local names = {}
    for name in pairs(args) do names[#names + 1] = name end
    table.sort(names)
    local parts = {}
    for _, name in ipairs(names) do
      local v = args[name]
      local values = type(v) == "table" and v or { v }
      for _, one in ipairs(values) do
        if one == true then parts[#parts + 1] = escape(name)
        else parts[#parts + 1] = escape(name) .. "=" .. escape(tostring(one)) end
      end
    end
    return set(F.query, nil, concat(parts, "&"))
  end

  -- Every request field: a list of { name, value } in the order received (names as sent).
  function request.get_headers()
    local out = {}
    local all = get(F.headers)
    if not all then return out end
    for line in all:gmatch("[^\n]+") do
      local colon = find(line, ": ", 1, true)
      if colon then out[#out + 1] = { sub(line, 1, colon - 1), sub(line, colon + 2) } end
    end
    return out
  end

  -- Response ------------------------------------------------------------------------------------
  -- Readable from header_filter on (the upstream's answer, or the gateway's own).
  local response = turnpike.response or {}
  turnpike.response = response
  function response.get_status() return get_int(I.status) end
  function response.get_upstream_status() return get_int(I.upstream_status) end
  function response.get_header(name) return get(F.response_header, name) end
  -- Replaces every field `name` of the response (nil removes them); header_filter or earlier.
  function response.set_header(name, value)
    return set(F.response_header, name, value ~= nil and tostring(value) or nil)
  end
  -- The status the client gets (header_filter; earlier phases answer with turnpike.exit).
  function response.set_status(status) return set(F.response_status, nil, tostring(status)) end
  function response.add_header(name, value)
    return set(F.response_add_header, name, tostring(value))
  end
  -- body_filter: the piece of the response body passing now, whether it is the last one, and its
  -- replacement ("" drops it; keep pieces in ctx and emit them later to transform the whole body).
  function response.get_body_chunk() return get(F.body_chunk) or "" end
  function response.is_last_chunk() return get_int(I.body_last) == 1 end
  function response.set_body_chunk(data) return set(F.body_chunk, nil, tostring(data)) end
  -- header_filter: this plugin leaves this response's body as it is: its body_filter is not
  -- called for it, and the response keeps its Content-Length (unless another plugin changes it).
  function response.skip_body_filter() return set(F.skip_body_filter, nil, "1") end
  -- response.exit is turnpike.exit.
  response.exit = turnpike.exit

  -- Upstream ------------------------------------------------------------------------------------
  -- Node tags: a request with a tag prefers the upstream's nodes carrying it, then untagged nodes;
  -- a request without one prefers untagged nodes (gray release: canary nodes get tagged traffic).
  local function set_tag(tag)
    if tag ~= nil and (type(tag) ~= "string" or #tag > 64) then return false end
    return set(F.upstream_tag, nil, tag ~= "" and tag or nil)
  end
  turnpike.upstream = {
    -- Proxies this request to the upstream `name` (rewrite, access, before_proxy), with
    -- `opts.tag` its node tag. false when there is no such upstream.
    set = function(name, opts)
      if not set(F.upstream, nil, name) then return false end
      if opts ~= nil and opts.tag ~= nil then return set_tag(opts.tag) end
      return true
    end,
    set_tag = set_tag,
    get_tag = function() return get(F.upstream_tag) end,
    -- The name of the upstream the request goes to (the route's, or the one set), nil for none.
    get_name = function() return get(F.upstream_name) end,
    -- The node addresses ("ip:port") of the plain-HTTP/1.1 upstream `name`, in config order; nil
    -- when there is none by that name, or it speaks TLS or HTTP/2 (what turnpike.http can reach).
    get_nodes = function(name)
      local all = get(F.upstream_nodes, name)
      if not all then return nil end
      local nodes = {}
      for addr in all:gmatch("[^\n]+") do nodes[#nodes + 1] = addr end
      return nodes
    end,
  }
  -- How the gateway itself ended the request (log phase): an outcome code such as
  -- "upstream_connect_failed", "upstream_timeout" or "client_reset"; nil when the upstream's
  -- answer (or a plugin's) went out as it was.
  function response.get_outcome() return get(F.outcome) end

  -- Logging -------------------------------------------------------------------------------------
  -- turnpike.log.warn("text ", value, ...): one error-log line with the plugin, the route and
  -- the request's id.
  local function logger(level)
    return function(...)
      local n = select("#", ...)
      local parts = {}
      for i = 1, n do parts[i] = tostring((select(i, ...))) end
      log(level, concat(parts))
    end
  end
  turnpike.log = { debug = logger(1), info = logger(2), warn = logger(3), error = logger(4) }

  -- Consumers -----------------------------------------------------------------------------------
  -- Authentication plugins find the consumer a credential belongs to, then attach it: its
  -- plugins join the request's chain (its conf wins for a plugin the route has too), and its
  -- name is in the access log.
  local env_key = require("turnpike.runtime").bridge.env_key
  local consumer = {}
  turnpike.consumer = consumer

  -- The consumer whose `plugin` conf has `field` equal to `value`, and that conf; nil when none.
  -- Indexed once per worker and config generation, on first use.
  function consumer.find(ctx, plugin, field, value)
    local env = ctx[env_key]
    if not env or value == nil then return nil end
    local by_plugin = env.index[plugin]
    if not by_plugin then by_plugin = {}; env.index[plugin] = by_plugin end
    local by_value = by_plugin[field]
    if not by_value then
      by_value = {}
      for _, c in ipairs(env.consumers) do
        local conf = c.plugins[plugin]
        local v = conf and conf[field]
        if v ~= nil and by_value[v] == nil then by_value[v] = c end
      end
      by_plugin[field] = by_value
    end
    local c = by_value[value]
    if not c then return nil end
    return c, c.plugins[plugin]
  end

  -- Every consumer with a conf for `plugin`: a list of { consumer, conf } (for plugins that
  -- cannot look a credential up by value, such as hmac-auth's signed key ids).
  function consumer.with_plugin(ctx, plugin)
    local env = ctx[env_key]
    local out = {}
    if not env then return out end
    for _, c in ipairs(env.consumers) do
      if c.plugins[plugin] then out[#out + 1] = { c, c.plugins[plugin] } end
    end
    return out
  end

  -- Makes `c` (from find) the request's consumer: ctx.consumer, ctx.consumer_name.
  function consumer.attach(ctx, c)
    ctx.consumer, ctx.consumer_name = c, c.username
    return set(F.consumer, nil, tostring(c.index))
  end

  return turnpike
end
