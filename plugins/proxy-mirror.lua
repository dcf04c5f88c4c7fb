-- proxy-mirror: sends a copy of a sampled share of the route's requests to a mirror target (a
-- recording platform, a new version under test) in the background. The client's request is
-- answered as if the mirror did not exist: the copy waits in the worker's bounded queue
-- (turnpike.mirror) and is sent after the request ends; a full queue drops it and counts it.
--
--   routes:
--     - name: orders
--       plugins:
--         proxy-mirror:
--           uri: http://10.0.0.7:8080      # or upstream: recorder (a configured upstream)
--           sample_ratio: 0.1
--           max_body: 65536
--           body_overflow: truncate   # or skip
--           compare: true             # count mirror statuses (and bodies) that differ from the primary's
--
-- The copy has the request's method, target (path and query, as sent), headers, a marker header
-- (X-Mirrored-By: turnpike) and the body up to max_body bytes. A longer body is not mirrored
-- (skip, counted) or mirrored cut at max_body with X-Mirror-Body-Truncated: true (truncate).
-- The queue of route R on each worker is named "proxy-mirror:R" (mirror.find for its stats).
-- With `upstream`, the copies go round-robin to that upstream's nodes (plain HTTP/1.1 upstreams
-- only: the mirror client speaks neither TLS nor HTTP/2), one queue per node, named
-- "proxy-mirror:R@ip:port"; the node list is the config snapshot's the request runs on.
--
-- Comparison (compare: true): the copy carries the primary's final status and, with compare_body
-- (the default), the CRC-32 of the primary's response body as the client got it, digested piece
-- by piece in an observing body_filter (the response keeps its Content-Length and streams as
-- before). The mirror's response body is digested as it arrives, never kept; the queue counts
-- compared/differed statuses and body_compared/body_differed bodies. A primary body that did not
-- end (the upstream broke off) is not compared.
local turnpike = require "turnpike"
local mirror = require "turnpike.mirror"
local hash = require "turnpike.hash"
local metrics = require "turnpike.metrics"

local request, response, log = turnpike.request, turnpike.response, turnpike.log
-- On /metrics: turnpike_plugin_proxy_mirror_copies_total{route, result}: copies queued, or
-- dropped because the worker's queue was full (the queue's own stats: mirror.find).
local copies = metrics.counter("proxy_mirror_copies_total", "Mirror copies by route and result (queued, dropped).",
                               { "route", "result" })
local random, sub, concat = math.random, string.sub, table.concat
local crc32 = hash.crc32

-- Per conf, per route: the queue (made once; nil when the worker has none, e.g. `turnpike -t`).
local queues = setmetatable({}, { __mode = "k" })

local function open(conf, name, uri)
  local opts = setmetatable({ uri = uri }, { __index = conf })
  local q, err = mirror.queue(name, opts)
  if not q then
    log.warn("proxy-mirror: ", name, ": no mirror queue (", err, ")")
    return false
  end
  return q
end

-- With `upstream`: the next node's queue, round-robin per worker.
local turn = 0
local function node_queue(conf, by_route, route)
  local nodes = turnpike.upstream.get_nodes(conf.upstream)
  if not nodes or #nodes == 0 then
    if by_route[""] == nil then
      log.warn("proxy-mirror: route ", route, ": upstream ", conf.upstream,
               " is not a plain HTTP/1.1 upstream with nodes; nothing is mirrored")
      by_route[""] = false
    end
    return nil
  end
  turn = turn + 1
  local addr = nodes[turn % #nodes + 1]
  local key = route .. "@" .. addr
  local q = by_route[key]
  if q == nil then
    q = open(conf, "proxy-mirror:" .. key, "http://" .. addr)
    by_route[key] = q
  end
  return q or nil
end

local function queue_for(conf, route)
  local by_route = queues[conf]
  if not by_route then
    by_route = {}
    queues[conf] = by_route
  end
  if conf.upstream then return node_queue(conf, by_route, route) end
  local q = by_route[route]
  if q == nil then
    q = open(conf, "proxy-mirror:" .. route, conf.uri)
    by_route[route] = q
  end
  return q or nil
end

-- The copy's header lines: the request's own, then the marker.
local function header_lines(conf, truncated)
  local lines = {}
  for i, h in ipairs(request.get_headers()) do lines[i] = h[1] .. ": " .. h[2] .. "\n" end
  lines[#lines + 1] = conf.marker_header .. ": " .. conf.marker_value .. "\n"
  if truncated then lines[#lines + 1] = "X-Mirror-Body-Truncated: true\n" end
  return concat(lines)
end

return {
  name = "proxy-mirror",
  version = "1.0",
  priority = 22901,
  -- Its body_filter digests the primary's body and never changes it.
  body_filter_mode = "observe",

  schema = {
    type = "object",
    properties = {
      -- The mirror target; copies keep the request's own path and query.
      uri = { type = "string", pattern = "^http://[^/?#]+/?$" },
      -- Or a configured upstream (plain HTTP/1.1): copies go round-robin to its nodes.
      upstream = { type = "string", minLength = 1 },
      -- The share of requests copied: 0 none, 1 all.
      sample_ratio = { type = "number", minimum = 0, maximum = 1, default = 1 },
      -- Body bytes a copy may carry; what a longer body does.
      max_body = { type = "integer", minimum = 0, default = 65536 },
      body_overflow = { type = "string", enum = { "skip", "truncate" }, default = "skip" },
      marker_header = { type = "string", minLength = 1, default = "X-Mirrored-By" },
      marker_value = { type = "string", default = "turnpike" },
      -- Per worker: copies waiting, copies sent at once, seconds a copy may take.
      queue_size = { type = "integer", minimum = 1, maximum = 1000000, default = 1000 },
      concurrency = { type = "integer", minimum = 1, maximum = 1024, default = 8 },
      timeout = { type = "number", minimum = 0.001, maximum = 600, default = 1 },
      -- Count mirror answers whose status differs from the primary's (stats compared / differed).
      compare = { type = "boolean", default = false },
      -- With compare: also count mirror response bodies that differ from the primary's (CRC-32).
      compare_body = { type = "boolean", default = true },
    },
    additionalProperties = false,
  },

  check_schema = function(conf)
    if (conf.uri == nil) == (conf.upstream == nil) then
      return false, "exactly one of uri and upstream is required"
    end
    return true
  end,

  -- Sampling and the body are decided here (the body can only be read before the request goes
  -- upstream); the copy is offered in the log phase, when the primary's status is known.
  access = function(conf, ctx)
    if random() >= conf.sample_ratio then return end
    local copy = { body = nil, truncated = false }
    if request.has_body() then
      local body, whole = request.read_body(conf.max_body + 1)
      if not body then return end  -- the client's body failed: the gateway answers it, nothing to copy
      if not whole or #body > conf.max_body then
        if conf.body_overflow == "skip" then
          local q = queue_for(conf, request.get_route() or "-")
          if q then q:skip() end
          return
        end
        body, copy.truncated = sub(body, 1, conf.max_body), true
      end
      copy.body = body
    end
    ctx.proxy_mirror = copy
  end,

  header_filter = function(conf, ctx)
    local copy = ctx.proxy_mirror
    if copy and conf.compare and conf.compare_body then
      copy.crc = 0
    else
      response.skip_body_filter()  -- nothing to digest: no per-piece call at all
    end
  end,

  body_filter = function(conf, ctx)
    local copy = ctx.proxy_mirror
    if not copy or not copy.crc then return end
    copy.crc = crc32(response.get_body_chunk(), copy.crc)
    if response.is_last_chunk() then copy.body_done = true end
  end,

  log = function(conf, ctx)
    local copy = ctx.proxy_mirror
    if not copy then return end
    local q = queue_for(conf, request.get_route() or "-")
    if not q then return end
    local queued = q:send(request.get_method(), request.get_uri(), header_lines(conf, copy.truncated), copy.body,
                          conf.compare and response.get_status() or nil, copy.body_done and copy.crc or nil)
    copies:inc(1, { request.get_route() or "-", queued and "queued" or "dropped" })
  end,
}
