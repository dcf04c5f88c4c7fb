-- turnpike.hash: a stable, well-mixed 32-bit hash of strings, for sticky choices (traffic-split's
-- gray percentages, any plugin that must send the same key the same way on every node).
--
--   local hash = require "turnpike.hash"
--   hash.murmur3("user-42")          --> 3,000,883,591-like unsigned 32-bit number
--   hash.murmur3("user-42", seed)
--   hash.bucket("user-42", 10000)    --> 0 .. 9999, the same on every node, worker and version
--   crc = hash.crc32(piece, crc)     --> CRC-32 (zlib's) of a body fed piece by piece, from 0
--
-- MurmurHash3 (x86, 32-bit), as Austin Appleby published it: every node and every release must
-- put a key in the same bucket (a user must not flip between versions), so the function is fixed
-- by a public definition and checked against its published test values
-- (tests/unit/lua/lib_hash_test.cc). Murmur3 rather than CRC32: CRC is linear, so keys that differ
-- in a few bits (user-1, user-2, ...) land in related buckets; Murmur3's finalizer spreads them
-- (an avalanche: one input bit changes each output bit with probability about 1/2). Pure Lua with
-- LuaJIT's bit operations, compiled by the JIT: no FFI crossing, a 20-byte key in tens of ns.
local bit = require "bit"
local ffi = require "ffi"

ffi.cdef [[
uint32_t tp_compress_crc32(uint32_t crc, const char* data, size_t len);
]]
local C = ffi.C

local band, bxor, rshift, lshift, rol, tobit = bit.band, bit.bxor, bit.rshift, bit.lshift, bit.rol, bit.tobit
local byte = string.byte

-- a * b modulo 2^32. A double holds 53 bits, so the product is taken in two halves of `a`, each
-- partial product below 2^48 and exact.
local function mul32(a, b)
  local lo = band(a, 0xffff)
  local hi = rshift(a, 16)
  return tobit(lo * b + lshift(tobit(hi * b), 16))
end

local C1, C2 = 0xcc9e2d51, 0x1b873593

local function mix(h, k)
  k = mul32(rol(mul32(k, C1), 15), C2)
  return tobit(mul32(rol(bxor(h, k), 13), 5) + 0xe6546b64)
end

local hash = {}

-- MurmurHash3_x86_32 of `s` with `seed` (default 0), as an unsigned number (0 .. 2^32 - 1).
function hash.murmur3(s, seed)
  local len = #s
  local h = tobit(seed or 0)
  local blocks = len - len % 4
  for i = 1, blocks, 4 do
    local b1, b2, b3, b4 = byte(s, i, i + 3)
    h = mix(h, b1 + lshift(b2, 8) + lshift(b3, 16) + lshift(b4, 24))
  end
  local rest = len - blocks
  if rest > 0 then
    local k = byte(s, blocks + 1)
    if rest > 1 then k = k + lshift(byte(s, blocks + 2), 8) end
    if rest > 2 then k = k + lshift(byte(s, blocks + 3), 16) end
    h = bxor(h, mul32(rol(mul32(k, C1), 15), C2))
  end
  h = bxor(h, len)
  h = mul32(bxor(h, rshift(h, 16)), 0x85ebca6b)
  h = mul32(bxor(h, rshift(h, 13)), 0xc2b2ae35)
  h = bxor(h, rshift(h, 16))
  if h < 0 then h = h + 4294967296 end
  return h
end

-- The bucket of `s` among `n` (0 .. n - 1), by murmur3 with seed 0. The modulo's bias is below
-- n / 2^32 (2.3e-6 for 10,000 buckets).
function hash.bucket(s, n)
  return hash.murmur3(s) % n
end

-- CRC-32 (zlib's, as in gzip trailers) of `s`, continuing `crc` (default 0: a new digest), as an
-- unsigned number: `crc = hash.crc32(piece, crc)` over a body's pieces digests the whole body
-- without keeping it (zlib's table-driven code, several GB/s). A checksum for telling bodies
-- apart, not a cryptographic hash (turnpike.crypto has those) and not for sticky keys (murmur3).
function hash.crc32(s, crc)
  return tonumber(C.tp_compress_crc32(crc or 0, s, #s))
end

return hash
