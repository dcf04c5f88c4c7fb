-- key-auth: a client proves who it is with an API key, sent in a header or a query argument.
-- The key belongs to a consumer (consumers[].plugins.key-auth.key); the consumer is attached to
-- the request, so its own plugins run and its name is in the access log.
--
--   routes:
--     - name: api
--       plugins:
--         key-auth: { header: apikey, hide_credentials: true }
--   consumers:
--     - username: alice
--       plugins:
--         key-auth: { key: "alice-secret-key" }
local turnpike = require "turnpike"

local request, consumer = turnpike.request, turnpike.consumer

local JSON = { ["content-type"] = "application/json" }

local function deny(message)
  return turnpike.exit(401, '{"error":"unauthorized","message":"' .. message .. '"}', JSON)
end

return {
  name = "key-auth",
  version = "1.0",
  priority = 2500,

  schema = {
    type = "object",
    properties = {
      header = { type = "string", default = "apikey", minLength = 1 },
      query = { type = "string", default = "apikey", minLength = 1 },
      -- Remove the key from the request before it goes upstream.
      hide_credentials = { type = "boolean", default = false },
    },
  },

  consumer_schema = {
    type = "object",
    properties = {
      key = { type = "string", minLength = 1 },
    },
    required = { "key" },
  },

  access = function(conf, ctx)
    local key = request.get_header(conf.header)
    local from_query = false
    if not key then
      key = request.get_uri_args()[conf.query]
      if type(key) == "table" then key = key[1] end
      from_query = key ~= nil
    end
    if type(key) ~= "string" or key == "" then return deny("missing API key") end

    local who = consumer.find(ctx, "key-auth", "key", key)
    if not who then return deny("invalid API key") end
    consumer.attach(ctx, who)

    if conf.hide_credentials then
      if from_query then
        local args = request.get_uri_args()
        args[conf.query] = nil
        request.set_uri_args(args)
      else
        request.set_header(conf.header, nil)
      end
    end
  end,
}
