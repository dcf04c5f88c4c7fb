-- forward-auth: asks an external service (the checker) whether a request may pass, before it
-- goes upstream — an authorization service, or a WAF that sees every request while the traffic
-- itself bypasses it. The checker gets a GET with the client's chosen headers and
-- X-Forwarded-Method, -Proto, -Host, -Uri and -For. A 2xx lets the request through (with
-- upstream_headers copied from the checker's answer); any other status is the client's answer,
-- with the checker's body and client_headers. When the checker times out or cannot be reached,
-- failure_mode decides: fail_closed answers 503, fail_open lets the request through, counts it
-- and logs it (rate-limited).
--
--   routes:
--     - name: api
--       plugins:
--         forward-auth:
--           uri: http://127.0.0.1:9001/check
--           request_headers: [Authorization, Cookie]
--           upstream_headers: [X-User-Id]
--           client_headers: [WWW-Authenticate]
--           timeout: 0.2
--           failure_mode: fail_open
--           counter_dict: auth    # shared_dicts: { auth: 1m }
--
-- With body_bytes > 0 the checker also gets the first body_bytes of the request body (read
-- ahead; a POST with X-Forwarded-Body-Truncated: true when the body is longer), and the
-- upstream still gets all of it.
local turnpike = require "turnpike"

local request, http, log = turnpike.request, turnpike.http, turnpike.log
local random, time, lower = math.random, os.time, string.lower

local JSON = { ["content-type"] = "application/json" }

-- Per conf, computed once: the lower-cased header lists.
local prepared = setmetatable({}, { __mode = "k" })

local function lowered(names)
  local out = {}
  for i, name in ipairs(names) do out[i] = lower(name) end
  return out
end

local function prepare(conf)
  local p = prepared[conf]
  if not p then
    p = { upstream = lowered(conf.upstream_headers), client = lowered(conf.client_headers) }
    prepared[conf] = p
  end
  return p
end

-- The checker's request: the client's chosen headers and what the checker needs to know about
-- the request it judges.
local function checker_headers(conf)
  local headers = {}
  for _, name in ipairs(conf.request_headers) do
    local value = request.get_header(name)
    if value then headers[name] = value end
  end
  local client_ip = request.get_client_ip() or ""
  local forwarded_for = request.get_header("x-forwarded-for")
  headers["X-Forwarded-For"] = forwarded_for and (forwarded_for .. ", " .. client_ip) or client_ip
  headers["X-Forwarded-Method"] = request.get_method()
  headers["X-Forwarded-Proto"] = request.get_scheme()
  headers["X-Forwarded-Host"] = request.get_host()
  headers["X-Forwarded-Uri"] = request.get_uri()
  return headers
end

-- Checker failures are logged at most once per worker every LOG_EVERY seconds, with how many
-- more happened since the last line: an outage must not flood the log.
local LOG_EVERY = 10
local last_log, unlogged = 0, 0

local function log_failure(level, conf, err, outcome)
  local now = time()
  if now - last_log < LOG_EVERY then
    unlogged = unlogged + 1
    return
  end
  level("forward-auth: checker ", conf.uri, " failed (", err, "); ", outcome,
        unlogged > 0 and ("; " .. unlogged .. " more failures since the last line") or "")
  last_log, unlogged = now, 0
end

-- fail_open: the request passes, and that is counted (the shared dictionary), logged, and left
-- in ctx.forward_auth for later plugins.
local function failed_open(conf, ctx, err)
  ctx.forward_auth = "fail_open: " .. err
  if conf.counter_dict then
    local dict = turnpike.shared[conf.counter_dict]
    if dict then dict:incr("forward-auth:fail_open:" .. (request.get_route() or "-"), 1, 0) end
  end
  log_failure(log.warn, conf, err, "request let through (fail_open)")
end

local function failed_closed(conf, ctx, err)
  ctx.forward_auth = "fail_closed: " .. err
  log_failure(log.error, conf, err, "request denied (fail_closed)")
  return turnpike.exit(conf.failure_status,
    '{"error":"auth_unavailable","message":"the authorization service did not answer"}', JSON)
end

-- A 2xx: the request goes on with the checker's upstream_headers. A header the checker did not
-- send is removed, so a client cannot send it itself.
local function allow(conf, res)
  for i, name in ipairs(prepare(conf).upstream) do
    request.set_header(conf.upstream_headers[i], res.headers[name])
  end
end

local function deny(conf, res)
  local headers = { ["content-type"] = res.headers["content-type"] }
  for i, name in ipairs(prepare(conf).client) do
    headers[conf.client_headers[i]] = res.headers[name]
  end
  return turnpike.exit(res.status, res.body, headers)
end

return {
  name = "forward-auth",
  version = "1.0",
  priority = 2002,

  schema = {
    type = "object",
    required = { "uri" },
    additionalProperties = false,
    properties = {
      -- The checker's URL (http only).
      uri = { type = "string", pattern = "^https?://[^/?#]+" },
      request_headers = {
        type = "array", items = { type = "string", minLength = 1 },
        default = { "Authorization", "Cookie", "User-Agent", "X-Request-Id" },
      },
      upstream_headers = { type = "array", items = { type = "string", minLength = 1 }, default = {} },
      client_headers = { type = "array", items = { type = "string", minLength = 1 }, default = {} },
      -- Seconds for connect, send and the checker's whole answer.
      timeout = { type = "number", minimum = 0.001, maximum = 60, default = 0.2 },
      failure_mode = { type = "string", enum = { "fail_open", "fail_closed" }, default = "fail_closed" },
      -- The status fail_closed answers with.
      failure_status = { type = "integer", minimum = 400, maximum = 599, default = 503 },
      -- The share of requests checked (0..1); the others pass unchecked.
      sample_ratio = { type = "number", minimum = 0, maximum = 1, default = 1 },
      -- A shared dictionary counting fail-open requests, as forward-auth:fail_open:<route>.
      counter_dict = { type = "string", minLength = 1 },
      -- Send the first body_bytes of the request body to the checker (0: none, a GET).
      body_bytes = { type = "integer", minimum = 0, maximum = 1048576, default = 0 },
    },
  },

  access = function(conf, ctx)
    if conf.sample_ratio < 1 and random() >= conf.sample_ratio then return end
    local headers, method, body = checker_headers(conf), "GET", nil
    if conf.body_bytes > 0 and request.has_body() then
      local read, whole = request.read_body(conf.body_bytes)
      if read == nil then return end  -- the client's body failed: the gateway answers it
      method, body = "POST", read:sub(1, conf.body_bytes)
      if not whole or #read > conf.body_bytes then headers["X-Forwarded-Body-Truncated"] = "true" end
    end
    local res, err = http.request{ method = method, url = conf.uri, headers = headers, body = body,
                                   timeout = conf.timeout }
    if not res then
      if conf.failure_mode == "fail_open" then return failed_open(conf, ctx, err) end
      return failed_closed(conf, ctx, err)
    end
    if res.status >= 200 and res.status < 300 then return allow(conf, res) end
    return deny(conf, res)
  end,
}
