-- Handlers of the Redis store's nginx spec (spec/ngx/08-redis_spec.lua). They run inside nginx,
-- where rctasks.redis rides cosockets. The server: the x-redis-url header (a password may be in
-- it: never in the URL, which nginx logs), else RCTASKS_REDIS_URL (an `env` directive).
local cjson = require "cjson.safe"
local redis = require "rctasks.redis"

local M = {}

-- JSON to the specs' HTTP/1.0 client (nginx neither chunks nor keeps the connection then).
local function out(v)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(v))
end

local function url() return ngx.var.http_x_redis_url or os.getenv("RCTASKS_REDIS_URL") end

local clients = {} -- per worker and URL, as an application would keep one
local function client()
  local u = url()
  clients[u] = clients[u] or redis.new{ url = u, timeout = 5 }
  return clients[u]
end

-- spec/21 (the checks every store passes) run in this request: busted's describe, it,
-- before_each and teardown stood in for, luassert as `assert`, and ngx.sleep as the spec's sleep (it yields).
function M.store_spec()
  local chunk = assert(loadfile(assert(package.searchpath("21-store_spec", package.path))))
  local results, befores, names = {}, {}, {}
  local env = setmetatable({}, { __index = _G })
  env.assert = require "luassert"
  env.describe = function(name, fn)
    local depth = #befores
    names[#names + 1] = name
    fn()
    names[#names] = nil
    for i = #befores, depth + 1, -1 do befores[i] = nil end
  end
  env.before_each = function(fn) befores[#befores + 1] = fn end
  env.it = function(name, fn)
    local ok, err = pcall(function()
      for _, b in ipairs(befores) do b() end
      fn()
    end)
    results[#results + 1] = { name = table.concat(names, " / ") .. " / " .. name, ok = ok,
                              err = not ok and tostring(err) or nil }
  end
  env.require = function(m)
    if m == "socket" then return { sleep = ngx.sleep } end
    return require((m:gsub("^helpers%.", ""))) -- staged flat: helpers/sys.lua is sys.lua
  end
  local teardowns = {}
  env.teardown = function(fn) teardowns[#teardowns + 1] = fn end
  setfenv(chunk, env)
  chunk()
  for _, fn in ipairs(teardowns) do fn() end
  return out({ results = results, worker = ngx.worker.id() })
end

-- One command: ?cmd=BLPOP&args=k,1 -> { ok, v, err, kind, secs }
function M.call()
  local args = {}
  for a in (ngx.var.arg_args or ""):gmatch("[^,]+") do args[#args + 1] = a end
  local c = ngx.var.arg_timeout and redis.new{ url = url(), timeout = tonumber(ngx.var.arg_timeout) } or client()
  ngx.update_time()
  local t0 = ngx.now()
  local ok, v, err, kind = pcall(c.call, c, ngx.var.arg_cmd, unpack(args))
  ngx.update_time()
  return out({ ok = ok, v = v, err = err, kind = kind, secs = ngx.now() - t0, worker = ngx.worker.id() })
end

-- Made in init_by_lua (creating a client there must work); used in init_worker, which has no
-- cosockets, and from a timer, which has.
M.init_client = nil

function M.init() M.init_client = redis.new{ url = os.getenv("RCTASKS_REDIS_URL"), timeout = 2 } end

function M.init_worker()
  local function note(where, ok, v, err, kind)
    ngx.shared.probe:set(where, cjson.encode({ ok = ok, v = v, err = err, kind = kind }))
  end
  note("init_worker", pcall(M.init_client.call, M.init_client, "PING"))
  ngx.timer.at(0, function() note("timer", pcall(M.init_client.call, M.init_client, "PING")) end)
end

function M.probe()
  return out({ init_worker = cjson.decode(ngx.shared.probe:get("init_worker") or "null"),
               timer = cjson.decode(ngx.shared.probe:get("timer") or "null") })
end

return M
