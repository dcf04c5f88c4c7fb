-- circuit-breaker: stops sending requests to an upstream that keeps failing, and answers them at
-- once instead (or sends them to a fallback upstream) until it has had time to recover.
--
-- Three states, shared by every worker of the node (turnpike.breaker):
--   closed     requests pass; their outcomes are counted in a fixed window. Once the window holds
--              at least min_requests outcomes and failures / outcomes >= failure_ratio, it opens.
--   open       every request gets the fallback without touching the upstream, for open_duration
--              (doubling on each consecutive trip up to max_open_duration).
--   half-open  half_open_requests probes pass, the rest get the fallback; the probes' failure
--              ratio closes it (under failure_ratio) or opens it again.
-- A failure is an upstream status in failure_statuses (default: any 5xx), or the gateway's own
-- failure to get an answer (connect failure or timeout, read timeout, reset, bad response).
--
--   routes:
--     - name: payments
--       upstream: payments
--       plugins:
--         circuit-breaker:
--           scope: upstream            # one breaker for every route using this upstream
--           min_requests: 20
--           failure_ratio: 0.5
--           open_duration: 5
--           max_open_duration: 60
--           fallback: { status: 503, body: '{"error":"payments unavailable"}' }
local turnpike = require "turnpike"
local breaker = require "turnpike.breaker"
local json = require "turnpike.json"
local metrics = require "turnpike.metrics"

local request, response, upstream = turnpike.request, turnpike.response, turnpike.upstream

-- How the gateway ends a request when the upstream did not answer properly
-- (include/turnpike/proxy/outcome.h, and the forwarders' failures within a response body).
local UPSTREAM_FAILED = {
  upstream_connect_timeout = true, upstream_connect_failed = true, upstream_timeout = true,
  deadline_exceeded = true, upstream_bad_response = true, upstream_reset = true,
  upstream_failed = true, upstream_truncated = true, upstream_bad_chunking = true,
}

local DEFAULT_BODY = '{"error":"circuit_open","message":"the upstream is failing; try again later"}'
local JSON = { ["content-type"] = "application/json" }
-- On /metrics: turnpike_plugin_circuit_breaker_fallbacks_total{route} (requests an open or
-- half-open breaker kept from the upstream).
local fallbacks = metrics.counter("circuit_breaker_fallbacks_total",
                                  "Requests an open (or half-open) breaker kept from the upstream, by route.", { "route" })

-- What each conf needs per worker, made on first use: its breakers by scope name, its failure
-- statuses as a set, its identity. Weak keys: a conf of an old configuration goes with it (and
-- its breakers are released; the node keeps their state a while for a reload that brings the
-- same conf back).
local prepared = setmetatable({}, { __mode = "k" })

local function prepare(conf)
  local p = prepared[conf]
  if p then return p end
  local statuses
  if conf.failure_statuses then
    statuses = {}
    for _, s in ipairs(conf.failure_statuses) do statuses[s] = true end
  end
  p = {
    identity = json.encode(conf),
    settings = {
      window = conf.window, min_requests = conf.min_requests, failure_ratio = conf.failure_ratio,
      open_duration = conf.open_duration, max_open_duration = conf.max_open_duration or conf.open_duration,
      half_open_requests = conf.half_open_requests, probe_timeout = conf.probe_timeout, backoff = 2,
    },
    statuses = statuses,
    breakers = {},
    headers = conf.fallback.headers or (conf.fallback.body == nil and JSON) or nil,
    body = conf.fallback.body or DEFAULT_BODY,
  }
  prepared[conf] = p
  return p
end

-- The breaker for this request's scope: the route, or the upstream it goes to.
local function breaker_for(p, conf)
  local name
  if conf.scope == "upstream" then
    local up = upstream.get_name()
    if not up then return nil end
    name = "upstream:" .. up
  else
    name = "route:" .. (request.get_route() or "")
  end
  local b = p.breakers[name]
  if not b then
    b = assert(breaker.get(name, p.settings, p.identity))  -- settings were checked by check_schema
    p.breakers[name] = b
  end
  return b
end

-- Keys of this plugin's entries in the request's ctx.
local BREAKER, TICKET = {}, {}

local function outcome_of(p)
  if UPSTREAM_FAILED[response.get_outcome() or ""] then return "failure" end
  local status = response.get_upstream_status()
  if not status then return "neither" end  -- no answer: the client left, or nothing was sent
  if p.statuses then return p.statuses[status] and "failure" or "success" end
  return status >= 500 and "failure" or "success"
end

return {
  name = "circuit-breaker",
  version = "1.0",
  priority = 1005,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- One breaker per route, or one per upstream (shared by the routes with the same conf).
      scope = { type = "string", enum = { "route", "upstream" }, default = "route" },
      window = { type = "number", minimum = 0.001, default = 10 },          -- seconds
      min_requests = { type = "integer", minimum = 1, maximum = 1000000000, default = 20 },
      failure_ratio = { type = "number", minimum = 0.0001, maximum = 1, default = 0.5 },
      -- Upstream statuses that count as failures (default: 500-599).
      failure_statuses = {
        type = "array", minItems = 1, items = { type = "integer", minimum = 100, maximum = 599 },
      },
      open_duration = { type = "number", minimum = 0.001, default = 5 },    -- seconds
      max_open_duration = { type = "number", minimum = 0.001 },             -- default: open_duration
      half_open_requests = { type = "integer", minimum = 1, maximum = 1000000, default = 1 },
      -- A half-open round whose probes are not all reported within this starts over.
      probe_timeout = { type = "number", minimum = 0.001, default = 30 },
      fallback = {
        type = "object",
        additionalProperties = false,
        default = {},
        properties = {
          status = { type = "integer", minimum = 200, maximum = 599, default = 503 },
          body = { type = "string" },
          headers = { type = "object" },    -- name -> value
          upstream = { type = "string", minLength = 1 },  -- proxy there instead of answering
        },
      },
    },
  },

  check_schema = function(conf)
    if conf.max_open_duration and conf.max_open_duration < conf.open_duration then
      return false, "conf.max_open_duration: must be at least open_duration (" .. conf.open_duration .. ")"
    end
    for name, value in pairs(conf.fallback.headers or {}) do
      if type(name) ~= "string" or name == "" or name:find("[^%w!#$%%&'*+%-.^_`|~]") then
        return false, "conf.fallback.headers: " .. tostring(name) .. " is not a header name"
      end
      if type(value) ~= "string" and type(value) ~= "number" then
        return false, "conf.fallback.headers." .. name .. ": expected string, got " .. type(value)
      end
    end
    return true
  end,

  -- After access (and traffic-split's choice of upstream), before the upstream is touched.
  before_proxy = function(conf, ctx)
    local p = prepare(conf)
    local b = breaker_for(p, conf)
    if not b then return end
    local ticket = b:allow()
    if ticket then
      ctx[BREAKER], ctx[TICKET] = b, ticket
      return
    end
    fallbacks:inc(1, request.get_route() or "-")
    local fallback = conf.fallback
    if fallback.upstream then
      if upstream.set(fallback.upstream) then return end
      turnpike.log.warn("circuit-breaker: no upstream named ", fallback.upstream, "; answering instead")
    end
    return turnpike.exit(fallback.status, p.body, p.headers)
  end,

  -- Every request that was let through reports how it went (a client that left counts as
  -- neither, so a probe it held goes to the next request and half-open cannot stall).
  log = function(conf, ctx)
    local b = ctx[BREAKER]
    if not b then return end
    b:record(ctx[TICKET], outcome_of(prepared[conf] or prepare(conf)))
  end,
}
