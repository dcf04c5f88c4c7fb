-- fault-injection: makes a share of requests fail or slow, to test how clients and services
-- cope: `abort` answers with a status instead of proxying, `delay` waits before proxying.
--
--   routes:
--     - name: chaos
--       plugins:
--         fault-injection:
--           delay: { duration: 0.5, percentage: 20 }          # seconds
--           abort: { http_status: 503, body: "injected fault", percentage: 10 }
--
-- Each request is drawn independently: with both, a request may be delayed, then aborted. The
-- delay does not hold the worker (turnpike.sleep). percentage defaults to 100.
--
-- It acts in before_proxy, after authentication: requests that would be refused anyway are not
-- counted, and a consumer's own fault-injection conf (consumers[].plugins) applies to its
-- requests.
local turnpike = require "turnpike"
local crypto = require "turnpike.crypto"

local random = math.random

-- LuaJIT's generator starts from the same state in every worker: seed it once from the system's
-- generator, so workers (and restarts) do not all pick the same requests.
local seeded = false

local function hit(percentage)
  if percentage >= 100 then return true end
  if not seeded then
    local b1, b2, b3, b4 = crypto.random_bytes(4):byte(1, 4)
    math.randomseed(((b1 * 256 + b2) * 256 + b3) * 256 + b4)
    seeded = true
  end
  return random() * 100 < percentage
end

local percentage = { type = "number", minimum = 0, maximum = 100, default = 100 }

return {
  name = "fault-injection",
  version = "1.0",
  priority = 11000,

  schema = {
    type = "object",
    additionalProperties = false,
    properties = {
      abort = {
        type = "object",
        additionalProperties = false,
        required = { "http_status" },
        properties = {
          http_status = { type = "integer", minimum = 200, maximum = 599 },
          body = { type = "string", maxLength = 65536 },
          percentage = percentage,
        },
      },
      delay = {
        type = "object",
        additionalProperties = false,
        required = { "duration" },
        properties = {
          duration = { type = "number", minimum = 0, maximum = 60 },
          percentage = percentage,
        },
      },
    },
  },

  check_schema = function(conf)
    if not conf.abort and not conf.delay then return false, "conf: give abort, delay or both" end
    return true
  end,

  before_proxy = function(conf)
    local delay, abort = conf.delay, conf.abort
    if delay and hit(delay.percentage) then turnpike.sleep(delay.duration) end
    if abort and hit(abort.percentage) then return turnpike.exit(abort.http_status, abort.body) end
  end,
}
