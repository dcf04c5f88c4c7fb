-- turnpike.ipset: sets of IPv4 and IPv6 addresses and CIDR blocks, and lookups of a client
-- address in them (ip-restriction, traffic-split).
--
--   local ipset = require "turnpike.ipset"
--   local family, why = ipset.parse("10.0.0.0/8")       -- 4 or 6; nil and why for a bad entry
--   local set = ipset.new({ "10.0.0.0/8", "2001:db8::/32", "192.168.1.17" })  -- entries checked first
--   ipset.contains(set, turnpike.request.get_client_ip())  --> true / false
--
-- A set is one hash set of network keys per prefix length, so a lookup probes only the prefix
-- lengths the list has (at most 33 for IPv4, 129 for IPv6) whatever the number of entries. An
-- IPv4-mapped IPv6 address (::ffff:10.1.2.3) is looked up as its IPv4 address.
local bit = require "bit"

local band, lshift = bit.band, bit.lshift
local tonumber, sub, find, format = tonumber, string.sub, string.find, string.format
local byte = string.byte

-- ---- Parsing addresses ------------------------------------------------------------------------

-- "a.b.c.d" → a 32-bit integer (bit library range), or nil. A byte loop rather than a pattern
-- with captures, which LuaJIT would not compile: this runs on every request.
local function parse_ipv4(s)
  local n = #s
  if n < 7 or n > 15 then return nil end
  local addr, part, digits, dots = 0, 0, 0, 0
  for i = 1, n do
    local c = byte(s, i)
    if c >= 48 and c <= 57 then
      part = part * 10 + c - 48
      digits = digits + 1
      if digits > 3 or part > 255 then return nil end
    elseif c == 46 and digits > 0 and dots < 3 then
      addr = addr * 256 + part
      part, digits, dots = 0, 0, dots + 1
    else
      return nil
    end
  end
  if dots ~= 3 or digits == 0 then return nil end
  return bit.tobit(addr * 256 + part)
end

-- RFC 4291 §2.2 text forms ("2001:db8::1", "::ffff:10.1.2.3") → 32 lower-case hex digits, or nil.
-- The hex form makes an IPv6 network key a prefix of the string (see network_key6).
local function parse_ipv6(s)
  if find(s, "%", 1, true) then return nil end  -- zone ids name an interface, not a network
  local groups = {}
  local head, tail = s, nil
  local gap = find(s, "::", 1, true)
  if gap then
    head, tail = sub(s, 1, gap - 1), sub(s, gap + 2)
    if find(tail, "::", 1, true) then return nil end
  end
  -- Appends the groups of `part` to `out`; a dotted quad may end only the address.
  local function split(part, out, at_end)
    if part == "" then return true end
    local pieces = {}
    for piece in (part .. ":"):gmatch("([^:]*):") do pieces[#pieces + 1] = piece end
    for i, piece in ipairs(pieces) do
      if at_end and i == #pieces and find(piece, ".", 1, true) then
        local v4 = parse_ipv4(piece)  -- a trailing dotted quad is the last 32 bits (§2.2 item 3)
        if not v4 then return false end
        out[#out + 1] = band(bit.rshift(v4, 16), 0xffff)
        out[#out + 1] = band(v4, 0xffff)
      elseif piece:match("^%x%x?%x?%x?$") then
        out[#out + 1] = tonumber(piece, 16)
      else
        return false
      end
    end
    return true
  end
  local first, last = {}, {}
  if not split(head, first, tail == nil) or (tail and not split(tail, last, true)) then return nil end
  local missing = 8 - #first - #last
  if (gap and missing < 1) or (not gap and missing ~= 0) then return nil end
  for _, g in ipairs(first) do groups[#groups + 1] = g end
  for _ = 1, missing do groups[#groups + 1] = 0 end
  for _, g in ipairs(last) do groups[#groups + 1] = g end
  return format("%04x%04x%04x%04x%04x%04x%04x%04x", unpack(groups))
end

local V4_MAPPED = "00000000000000000000ffff"

-- The network of `addr` under a /bits prefix, as a hash key.
local function network_key4(addr, bits)
  if bits == 0 then return 0 end
  return band(addr, lshift(-1, 32 - bits))
end

local HEX = "0123456789abcdef"
local NIBBLE_MASK = { [1] = 8, [2] = 12, [3] = 14 }

local function network_key6(hex, bits)
  local rest = bits % 4
  local whole = (bits - rest) / 4
  if rest == 0 then return sub(hex, 1, whole) end
  local nibble = band(tonumber(sub(hex, whole + 1, whole + 1), 16), NIBBLE_MASK[rest])
  return sub(hex, 1, whole) .. sub(HEX, nibble + 1, nibble + 1)
end

-- "10.0.0.0/8", "2001:db8::/32" or a bare address → family (4 or 6), address, prefix length;
-- nil and why for anything else.
local function parse_entry(entry)
  local addr, bits = entry:match("^([^/]+)/(%d+)$")
  if not addr then addr = entry end
  local v4 = parse_ipv4(addr)
  if v4 then
    bits = bits and tonumber(bits) or 32
    if bits > 32 then return nil, "an IPv4 prefix length is at most 32" end
    return 4, v4, bits
  end
  local v6 = parse_ipv6(addr)
  if v6 then
    bits = bits and tonumber(bits) or 128
    if bits > 128 then return nil, "an IPv6 prefix length is at most 128" end
    return 6, v6, bits
  end
  return nil, "not an IP address or CIDR block"
end

-- ---- The set of networks, built once per conf -------------------------------------------------

-- { [4] = { lengths = {32, 24, ...}, [bits] = { [key] = true } }, [6] = {...} }
local function build_set(entries)
  local set = { [4] = { lengths = {} }, [6] = { lengths = {} } }
  for _, entry in ipairs(entries) do
    local family, addr, bits = parse_entry(entry)
    local fam = set[family]
    local by_length = fam[bits]
    if not by_length then
      by_length = {}
      fam[bits] = by_length
      fam.lengths[#fam.lengths + 1] = bits
    end
    by_length[family == 4 and network_key4(addr, bits) or network_key6(addr, bits)] = true
  end
  return set
end

local function contains(set, ip)
  local v4 = parse_ipv4(ip)
  if not v4 then
    local hex = parse_ipv6(ip)
    if not hex then return false end
    if sub(hex, 1, 24) == V4_MAPPED then
      v4 = tonumber(sub(hex, 25), 16)
    else
      local fam = set[6]
      local lengths = fam.lengths
      for i = 1, #lengths do
        local bits = lengths[i]
        if fam[bits][network_key6(hex, bits)] then return true end
      end
      return false
    end
  end
  local fam = set[4]
  local lengths = fam.lengths
  for i = 1, #lengths do
    local bits = lengths[i]
    if fam[bits][network_key4(v4, bits)] then return true end
  end
  return false
end

return { parse = parse_entry, new = build_set, contains = contains }
