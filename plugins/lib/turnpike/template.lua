-- turnpike.template: the URI templates of proxy-rewrite and redirect.
--
--   local template = require "turnpike.template"
--   local parts = template.parse("/users/{id}/profile")   -- once per conf
--   template.expand(parts)              -- "/users/42/profile", {id} from the route's path params
--   template.substitute("/v2/$1", m)    -- with m from turnpike.regex re:match
local turnpike = require "turnpike"

local request = turnpike.request
local concat, find, sub, type, tonumber = table.concat, string.find, string.sub, type, tonumber

local template = {}

-- "/users/{id}/x" → { "/users/", { param = "id" }, "/x" }.
function template.parse(text)
  local parts, pos = {}, 1
  while true do
    local from, to, name = find(text, "{([%w_]+)}", pos)
    if not from then break end
    if from > pos then parts[#parts + 1] = sub(text, pos, from - 1) end
    parts[#parts + 1] = { param = name }
    pos = to + 1
  end
  if pos <= #text then parts[#parts + 1] = sub(text, pos) end
  return parts
end

-- The parts with each {param} replaced by the request's route parameter ("" when absent).
function template.expand(parts)
  local out = {}
  for i = 1, #parts do
    local p = parts[i]
    out[i] = type(p) == "string" and p or (request.get_param(p.param) or "")
  end
  return concat(out)
end

-- `replacement` with $0-$9 and ${n} replaced by the groups of `m` (a regex match), ${name} by
-- named groups and "$$" by a dollar sign; a group that did not take part gives "", a lone "$"
-- stays.
function template.substitute(replacement, m)
  local out, pos = {}, 1
  while true do
    local from = find(replacement, "$", pos, true)
    if not from then break end
    out[#out + 1] = sub(replacement, pos, from - 1)
    local digit = find(replacement, "^%d", from + 1)
    local name = not digit and replacement:match("^{([%w_]+)}", from + 1)
    if digit then
      out[#out + 1] = m[tonumber(sub(replacement, from + 1, from + 1))] or ""
      pos = from + 2
    elseif name then
      out[#out + 1] = m[tonumber(name) or name] or ""
      pos = from + #name + 3
    else
      out[#out + 1] = "$"
      pos = sub(replacement, from + 1, from + 1) == "$" and from + 2 or from + 1
    end
  end
  out[#out + 1] = sub(replacement, pos)
  return concat(out)
end

return template
