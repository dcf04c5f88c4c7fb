-- compression: compresses response bodies with brotli or gzip, as the client's Accept-Encoding
-- allows, streaming: each piece of the body is compressed as it passes, so a response of any
-- size goes through in bounded memory.
--
--   routes:
--     - name: api
--       plugins:
--         compression: { algorithms: [br, gzip], min_length: 256, gzip_level: 5, brotli_level: 4 }
--
-- A response is compressed when all of these hold (otherwise it passes as it is):
--   * the request is not HEAD; the status is 200-599 but not 204, 206 or 304;
--   * the upstream made it (the gateway's own answers are short error pages);
--   * it has no Content-Encoding yet, no Content-Range, no `Cache-Control: no-transform`;
--   * its Content-Length, when given, is at least min_length (and not 0);
--   * its Content-Type is one of conf.types;
--   * the client accepts one of conf.algorithms (RFC 9110 §12.5.3: q-values, `*`, identity).
-- A compressed response gets Content-Encoding, `Vary: Accept-Encoding`, a weak ETag, no
-- Content-Length (it is streamed) and no Accept-Ranges. A response refused only because of the
-- client's Accept-Encoding still gets the Vary, so caches keep the variants apart.
local turnpike = require "turnpike"
local compress = require "turnpike.compress"

local request, response = turnpike.request, turnpike.response
local get_body_chunk, set_body_chunk, is_last_chunk =
  response.get_body_chunk, response.set_body_chunk, response.is_last_chunk
local find, sub, lower, match, gmatch = string.find, string.sub, string.lower, string.match, string.gmatch
local tonumber, ipairs = tonumber, ipairs

-- The media types that compress well; `*` in a subtype matches any run of characters.
local DEFAULT_TYPES = {
  "text/*", "application/json", "application/*+json", "application/javascript",
  "application/x-javascript", "application/xml", "application/*+xml", "application/wasm",
  "application/x-ndjson", "image/svg+xml", "image/x-icon", "font/ttf", "font/otf",
}
local TYPE = [[^(\*|\*/\*|[A-Za-z0-9!#$&^_.+-]+/(\*|[A-Za-z0-9!#$&^_.+-]*\*?[A-Za-z0-9!#$&^_.+-]*))$]]

-- ---- Accept-Encoding (RFC 9110 §12.5.3) -------------------------------------------------------

-- A qvalue (RFC 9110 §12.4.2): "0", "0.5", "1.000"; nil when malformed.
local function qvalue(text)
  if match(text, "^0%.?%d?%d?%d?$") or match(text, "^1%.?0?0?0?$") then return tonumber(text) end
  return nil
end

-- The weight of each coding the client named, lower-case: { gzip = 1, br = 0.8, ["*"] = 0 }.
-- An entry with a malformed weight or other parameters is ignored; a repeated coding keeps its
-- highest weight; x-gzip is gzip (RFC 9110 §8.4.1.3).
local function parse_accept_encoding(header)
  local weights = {}
  for item in gmatch(header, "[^,]+") do
    local name, params = match(item, "^[ \t]*([^; \t]+)[ \t]*(.-)[ \t]*$")
    if name then
      name = lower(name)
      if name == "x-gzip" then name = "gzip" end
      local q = 1
      if params ~= "" then
        local text = match(params, "^;[ \t]*[qQ]=([%d.]+)$")
        q = text and qvalue(text)
      end
      if q and (weights[name] or -1) < q then weights[name] = q end
    end
  end
  return weights
end

-- Parsed headers of this worker, by header text: browsers send a handful of distinct values.
-- Emptied when full, so odd values from a client cannot grow it.
local parsed, parsed_count, PARSED_MAX = {}, 0, 256

local function accept_weights(header)
  local w = parsed[header]
  if w then return w end
  w = parse_accept_encoding(header)
  if parsed_count >= PARSED_MAX then parsed, parsed_count = {}, 0 end
  parsed[header] = w
  parsed_count = parsed_count + 1
  return w
end

-- The coding to use: the configured algorithm the client weighs highest (q > 0), the server's
-- order breaking ties; nil when none is acceptable or the client prefers identity outright.
-- `*` weighs every coding the client did not name, identity included.
local function negotiate(algorithms, header)
  local weights = accept_weights(header)
  local star = weights["*"]
  local best, best_q = nil, 0
  for _, coding in ipairs(algorithms) do
    local q = weights[coding] or star or 0
    if q > best_q then best, best_q = coding, q end
  end
  if not best then return nil end
  -- Identity unnamed is acceptable but expresses no preference over a named coding.
  local identity = weights.identity
  if identity and identity > best_q then return nil end
  return best
end

-- ---- The conf, compiled once ------------------------------------------------------------------

-- conf.types as lookups: exact types, and (prefix, suffix) pairs for wildcards.
local function compile_types(types)
  local exact, wild, any = {}, {}, false
  for _, t in ipairs(types) do
    t = lower(t)
    if t == "*" or t == "*/*" then
      any = true
    else
      local star = find(t, "*", 1, true)
      if star then
        wild[#wild + 1] = { sub(t, 1, star - 1), sub(t, star + 1) }
      else
        exact[t] = true
      end
    end
  end
  return { exact = exact, wild = wild, any = any }
end

local compiled = setmetatable({}, { __mode = "k" })

local function compile(conf)
  local c = compiled[conf]
  if not c then
    c = { types = compile_types(conf.types), levels = { gzip = conf.gzip_level, br = conf.brotli_level } }
    compiled[conf] = c
  end
  return c
end

local function type_allowed(types, content_type)
  if types.any then return true end
  local t = match(content_type, "^[ \t]*([^; \t]+)")
  if not t then return false end
  t = lower(t)
  if types.exact[t] then return true end
  for _, w in ipairs(types.wild) do
    local prefix, suffix = w[1], w[2]
    if #t >= #prefix + #suffix and sub(t, 1, #prefix) == prefix and (suffix == "" or sub(t, -#suffix) == suffix) then
      return true
    end
  end
  return false
end

-- ---- Decisions --------------------------------------------------------------------------------

local function has_token(value, token)
  return value ~= nil and find(lower(value), "%f[%w!#$%%&'*+.^_`|~-]" .. token .. "%f[^%w!#$%%&'*+.^_`|~-]") ~= nil
end

-- Whether this response may be compressed at all, whatever the client accepts.
local function eligible(conf, c)
  if request.get_method() == "HEAD" then return false end
  local status = response.get_status()
  if not status or status < 200 or status == 204 or status == 206 or status == 304 then return false end
  local upstream = response.get_upstream_status()
  if not upstream or upstream == 0 then return false end
  local encoding = response.get_header("content-encoding")
  if encoding and lower(encoding) ~= "identity" then return false end
  if response.get_header("content-range") then return false end
  if has_token(response.get_header("cache-control"), "no%-transform") then return false end
  local length = tonumber(response.get_header("content-length"))
  if length and (length == 0 or length < conf.min_length) then return false end
  local content_type = response.get_header("content-type")
  return content_type ~= nil and type_allowed(c.types, content_type)
end

local function add_vary()
  local vary = response.get_header("vary")
  if vary and (has_token(vary, "accept%-encoding") or match(vary, "^[ \t]*%*[ \t]*$")) then return end
  response.add_header("Vary", "Accept-Encoding")
end

local function compress_response(coding)
  response.set_header("Content-Encoding", coding)
  -- The bytes change, so a strong validator no longer holds (RFC 9110 §8.8.1).
  local etag = response.get_header("etag")
  if etag and sub(etag, 1, 2) ~= "W/" then response.set_header("ETag", "W/" .. etag) end
  -- Ranges of the compressed bytes are not offered.
  response.set_header("Accept-Ranges", nil)
end

-- For an eligible response: the stream to compress it with, the head rewritten for it; nil when
-- the client accepts none of conf.algorithms.
local function start(conf, c)
  add_vary()
  local accept = request.get_header("accept-encoding")
  local coding = accept and negotiate(conf.algorithms, accept)
  if not coding then return nil end
  local stream, err = compress.new(coding, c.levels[coding])
  if not stream then
    turnpike.log.error("cannot compress: ", err)
    return nil
  end
  compress_response(coding)
  return stream
end

return {
  name = "compression",
  version = "1.0",
  -- Below the bundled plugins that change responses (response-rewrite, 899): their changes are
  -- what gets compressed. A plugin of yours that reads or rewrites the body needs a higher one.
  priority = 890,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      -- The server's preference, used when the client weighs codings equally.
      algorithms = { type = "array", minItems = 1, maxItems = 2, items = { type = "string", enum = { "br", "gzip" } },
                     default = { "br", "gzip" } },
      types = { type = "array", minItems = 1, items = { type = "string", pattern = TYPE }, default = DEFAULT_TYPES },
      min_length = { type = "integer", minimum = 0, default = 256 },
      gzip_level = { type = "integer", minimum = 1, maximum = 9, default = 5 },
      brotli_level = { type = "integer", minimum = 0, maximum = 11, default = 4 },
    },
  },

  check_schema = function(conf)
    local seen = {}
    for i, coding in ipairs(conf.algorithms) do
      if seen[coding] then return false, "conf.algorithms[" .. i .. "]: " .. coding .. " is listed twice" end
      seen[coding] = true
    end
    return true
  end,

  header_filter = function(conf, ctx)
    local c = compile(conf)
    local stream = eligible(conf, c) and start(conf, c)
    if not stream then
      -- Passes as it is, with its Content-Length, and costs no body_filter call per piece.
      response.skip_body_filter()
      return
    end
    ctx.compression_stream = stream
  end,

  body_filter = function(conf, ctx)
    local stream = ctx.compression_stream
    if not stream then return end
    local out, err
    if is_last_chunk() then
      out, err = stream:finish(get_body_chunk())
      ctx.compression_stream = nil
    else
      out, err = stream:write(get_body_chunk())
    end
    -- A failing compressor cannot be hidden any more (the head is out): the error closes the
    -- connection after this response.
    if not out then error("compression failed: " .. err) end
    set_body_chunk(out)
  end,

  -- A response that ended early (the client left, the upstream broke) frees its stream now
  -- instead of at the next garbage collection.
  log = function(conf, ctx)
    local stream = ctx.compression_stream
    if stream then
      stream:free()
      ctx.compression_stream = nil
    end
  end,
}
