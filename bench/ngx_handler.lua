-- Handlers of the bench's front nginx (bench/nginx/front.conf.in): each answers one task status
-- after one GET of the task from the fixed-body nginx. Keys and target come from `env` directives.
-- luacheck: globals ngx
local M = {}

local key, secret = os.getenv("BENCH_KEY"), os.getenv("BENCH_SECRET")
local base, id = os.getenv("BENCH_BASE"), os.getenv("BENCH_ID")

local client -- one per worker, as a real app keeps it (its connections go to the cosocket pool)

-- rctasks inside nginx: client:get over the cosocket transport (the default in a content phase).
function M.rctasks()
  if not client then
    client = require("rctasks").new{ api_key = key, secret_key = secret, base_url = base, limiter = false }
  end
  local t, err = client:get(id)
  if not t then
    ngx.status = 502
    return ngx.say(tostring(err))
  end
  ngx.say(t.status)
end

-- The nginx-native peer: a subrequest to a keep-alive proxy_pass, then cjson.decode.
local cjson = require "cjson"
function M.capture()
  ngx.req.set_header("x-api-key", key)
  ngx.req.set_header("x-api-secret-key", secret)
  ngx.req.set_header("accept", "application/json")
  local res = ngx.location.capture("/proxy/" .. id)
  if res.status ~= 200 then
    ngx.status = 502
    return ngx.say("status ", res.status)
  end
  ngx.say(cjson.decode(res.body).status)
end

return M
