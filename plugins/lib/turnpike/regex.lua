-- turnpike.regex: PCRE2 regular expressions (with its JIT), compiled once.
--
--   local regex = require "turnpike.regex"
--   local re = assert(regex.compile([[^/users/(?<id>\d+)$]], "i"))
--   local m = re:match(path)          -- nil, or { [0] = whole, [1] = "42", id = "42" }
--   local from, to = re:find(s, init)
--   local out, n = re:gsub(s, "<$1>")  -- $1..$9, ${name}, $$
--   regex.find(s, [[\d+]], "i")       -- one-shot forms (match, find, gsub) with a compile cache
--
-- Matching is bounded: a pattern that backtracks catastrophically answers nil, "match limit"
-- instead of holding the worker. The C side is src/lua/regex.cc (include/turnpike/lua/regex.h):
-- it reuses one match data per worker thread, so a match allocates only its result strings.
local ffi = require "ffi"

ffi.cdef [[
typedef struct tp_regex tp_regex;
tp_regex* tp_regex_compile(const char* pattern, size_t len, const char* flags, char* err,
                           size_t err_len);
void tp_regex_free(tp_regex* re);
int64_t tp_regex_live(void);
int tp_regex_capture_count(const tp_regex* re);
int tp_regex_name_count(const tp_regex* re);
const char* tp_regex_name(const tp_regex* re, int i, int* group);
int tp_regex_match(const tp_regex* re, const char* subject, size_t len, size_t offset,
                   size_t* ovector, int max_pairs);
int tp_regex_gsub(const tp_regex* re, const char* subject, size_t len, const char* replacement,
                  size_t rlen, const char** out, size_t* out_len);
const char* tp_regex_last_error(void);
]]

local C = ffi.C
local sub, type, tostring = string.sub, type, tostring

local NOMATCH, LIMIT = -1, -2

local errbuf = ffi.new("char[256]")
local group_out = ffi.new("int[1]")
local out_ptr = ffi.new("const char*[1]")
local out_len = ffi.new("size_t[1]")

local regex = {}

local Regex = {}
Regex.__index = Regex

-- The error of a failed match: nil and why.
local function failed(rc)
  if rc == LIMIT then return nil, "match limit" end
  return nil, ffi.string(C.tp_regex_last_error())
end

-- Compiles `pattern`. flags: a string of "i" (caseless), "m" (multiline), "s" (dot matches
-- newline), "x" (extended), "u" (UTF-8), "U" (ungreedy), "D" ($ only at the very end), "J"
-- (duplicate names). Returns the compiled regex, or nil and PCRE2's message with the offset.
function regex.compile(pattern, flags)
  if type(pattern) ~= "string" then
    return nil, "pattern must be a string, got " .. type(pattern)
  end
  if flags ~= nil and type(flags) ~= "string" then
    return nil, "flags must be a string, got " .. type(flags)
  end
  local code = C.tp_regex_compile(pattern, #pattern, flags or "", errbuf, 256)
  if code == nil then return nil, ffi.string(errbuf) end
  code = ffi.gc(code, C.tp_regex_free)
  local pairs_count = C.tp_regex_capture_count(code) + 1
  local names = {}
  for i = 0, C.tp_regex_name_count(code) - 1 do
    local name = ffi.string(C.tp_regex_name(code, i, group_out))
    names[#names + 1] = { name = name, group = group_out[0] }
  end
  return setmetatable({
    code = code,
    pairs = pairs_count,
    names = names,
    ovector = ffi.new("size_t[?]", 2 * pairs_count),  -- reused by every match of this regex
  }, Regex)
end

-- string.find's convention for a start position: 1-based, negative counts from the end.
-- Returns a 0-based byte offset, or nil past the end.
local function start_offset(subject, init)
  local len = #subject
  init = init or 1
  if init < 0 then
    init = len + init + 1
    if init < 1 then init = 1 end
  elseif init == 0 then
    init = 1
  end
  if init > len + 1 then return nil end
  return init - 1
end

local function run(self, subject, init)
  if type(subject) ~= "string" then
    error("regex: subject must be a string, got " .. type(subject), 3)
  end
  local offset = start_offset(subject, init)
  if not offset then return NOMATCH end
  return C.tp_regex_match(self.code, subject, #subject, offset, self.ovector, self.pairs)
end

-- The first match at or after `init` (default 1) as a table: [0] the whole match, [n] group n
-- (false when the group did not take part), and each named group by name. Nil when there is
-- none; nil, "match limit" (or another error) when the match could not finish.
function Regex:match(subject, init)
  local rc = run(self, subject, init)
  if rc < 0 then
    if rc == NOMATCH then return nil end
    return failed(rc)
  end
  local ov, m, len = self.ovector, {}, #subject
  for i = 0, rc - 1 do
    local from = tonumber(ov[2 * i])
    if from > len then  -- SIZE_MAX: the group did not take part
      m[i] = false
    else
      m[i] = sub(subject, from + 1, tonumber(ov[2 * i + 1]))
    end
  end
  local names = self.names
  for i = 1, #names do
    local n = names[i]
    -- With duplicate names ("J"), the first group of that name that matched.
    if m[n.name] == nil or m[n.name] == false then m[n.name] = m[n.group] end
  end
  return m
end

-- The first match's byte positions, 1-based and inclusive like string.find; nil when none.
function Regex:find(subject, init)
  local rc = run(self, subject, init)
  if rc < 0 then
    if rc == NOMATCH then return nil end
    return failed(rc)
  end
  local ov = self.ovector
  return tonumber(ov[0]) + 1, tonumber(ov[1])
end

-- Every match replaced by `replacement`: $0..$9 or ${n} a group, ${name} a named group, $$ a
-- dollar sign (an unset group gives ""). Returns the new string and the number of matches.
function Regex:gsub(subject, replacement)
  if type(subject) ~= "string" then
    error("regex: subject must be a string, got " .. type(subject), 2)
  end
  replacement = tostring(replacement)
  local rc = C.tp_regex_gsub(self.code, subject, #subject, replacement, #replacement, out_ptr,
                             out_len)
  if rc < 0 then return failed(rc) end
  if rc == 0 then return subject, 0 end
  return ffi.string(out_ptr[0], out_len[0]), rc
end

-- One-shot calls with a cache ------------------------------------------------------------------
-- For code ported from ngx.re ("jo" options): the pattern is compiled on first use and kept.
-- The cache is per worker and bounded; when it is full it is emptied, so a plugin that builds
-- patterns from request data cannot grow it without limit (it only loses the cache's benefit).

regex.cache_size = 256
local cache, cached = {}, 0

local function compiled(pattern, flags)
  flags = flags or ""
  local by_pattern = cache[flags]
  local re = by_pattern and by_pattern[pattern]
  if re then return re end
  local err
  re, err = regex.compile(pattern, flags)
  if not re then return nil, err end
  if cached >= regex.cache_size then cache, cached = {}, 0 end
  by_pattern = cache[flags]
  if not by_pattern then
    by_pattern = {}
    cache[flags] = by_pattern
  end
  by_pattern[pattern] = re
  cached = cached + 1
  return re
end

-- re:match with a cached compile; nil, err when the pattern is bad.
function regex.match(subject, pattern, flags, init)
  local re, err = compiled(pattern, flags)
  if not re then return nil, err end
  return re:match(subject, init)
end

-- re:find with a cached compile.
function regex.find(subject, pattern, flags, init)
  local re, err = compiled(pattern, flags)
  if not re then return nil, err end
  return re:find(subject, init)
end

-- re:gsub with a cached compile.
function regex.gsub(subject, pattern, replacement, flags)
  local re, err = compiled(pattern, flags)
  if not re then return nil, err end
  return re:gsub(subject, replacement)
end

return regex
