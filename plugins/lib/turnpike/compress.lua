-- turnpike.compress: streaming gzip and brotli compressors, one stream per response.
--
--   local compress = require "turnpike.compress"
--   local s = assert(compress.new("gzip", 5))   -- or "br" (brotli), level 0-11
--   local out = s:write(piece)                  -- the compressed bytes ready now (maybe "")
--   local tail = s:finish(last_piece)           -- the rest and the trailer; the stream is freed
--   s:free()                                    -- a response that ends early: free it now
--
-- Memory per stream is bounded whatever the body's size (gzip 256 KiB, brotli about 1.5 MiB,
-- plus an output buffer the size of one piece, reused). A stream that is neither finished nor
-- freed is freed by the garbage collector. The C side is src/lua/compress.cc
-- (include/turnpike/lua/compress.h).
local ffi = require "ffi"

ffi.cdef [[
typedef struct tp_compress tp_compress;
tp_compress* tp_compress_new(int algorithm, int level, char* err, size_t err_len);
int tp_compress_write(tp_compress* s, const char* data, size_t len, int finish, const char** out,
                      size_t* out_len);
void tp_compress_free(tp_compress* s);
int64_t tp_compress_live(void);
]]

local C = ffi.C
local type, tostring, tonumber = type, tostring, tonumber

local ALGORITHMS = { gzip = 1, br = 2 }
local ERROR, FINISHED = -1, -2

local errbuf = ffi.new("char[128]")
local out_ptr = ffi.new("const char*[1]")
local out_len = ffi.new("size_t[1]")

local compress = {}

local Stream = {}
Stream.__index = Stream

-- A new stream for `algorithm` ("gzip" or "br") at `level` (gzip 1-9, brotli 0-11): the
-- stream, or nil and why.
function compress.new(algorithm, level)
  local id = ALGORITHMS[algorithm]
  if not id then return nil, "unknown algorithm " .. tostring(algorithm) .. " (gzip, br)" end
  if type(level) ~= "number" or level % 1 ~= 0 then
    return nil, "level must be an integer, got " .. tostring(level)
  end
  local ptr = C.tp_compress_new(id, level, errbuf, 128)
  if ptr == nil then return nil, ffi.string(errbuf) end
  return setmetatable({ ptr = ffi.gc(ptr, C.tp_compress_free) }, Stream)
end

-- Runs one write; the stream is freed after `finish` and after an error.
local function write(self, data, finish)
  local ptr = self.ptr
  if not ptr then return nil, "stream is finished" end
  data = data or ""
  if type(data) ~= "string" then data = tostring(data) end
  local rc = C.tp_compress_write(ptr, data, #data, finish and 1 or 0, out_ptr, out_len)
  if rc ~= 0 then
    self:free()
    return nil, rc == FINISHED and "stream is finished" or "compressor failed"
  end
  local out = ffi.string(out_ptr[0], tonumber(out_len[0]))
  if finish then self:free() end
  return out
end

-- Compresses `data`: the compressed bytes produced so far (often "" for small pieces: the
-- compressor collects input until it has a block), or nil and why.
function Stream:write(data) return write(self, data, false) end

-- Compresses the last `data` (optional) and ends the stream: the remaining bytes with the
-- trailer. The stream is freed; later writes answer nil, "stream is finished".
function Stream:finish(data) return write(self, data, true) end

-- Frees the stream now (a response that ends before its last piece). Safe to call twice.
function Stream:free()
  local ptr = self.ptr
  if ptr then
    self.ptr = nil
    ffi.gc(ptr, nil)
    C.tp_compress_free(ptr)
  end
end

-- Streams made and not yet freed in the whole process (all workers).
function compress.live() return tonumber(C.tp_compress_live()) end

return compress
