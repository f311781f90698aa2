-- rctasks: the asynchronous tasks of the Redis Cloud REST API, from Lua and from nginx.
--   local rctasks = require "rctasks"
--   local task, err = rctasks.wait(task_id, { timeout = 1800 })
-- The module-level calls use rctasks.default(), one client per Lua state (one per nginx worker)
-- configured from REDISCLOUD_ACCESS_KEY, REDISCLOUD_SECRET_KEY and REDISCLOUD_URL on first use.
local check = require "rctasks.check"
local client = require "rctasks.client"
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local env = require "rctasks.env"
local url = require "rctasks.url"

local M = {
  VERSION = core.version,
  new = client.new,
  escape = url.escape,
  null = core.null,
  decode = core.decode,
  errors = require "rctasks.errors",
  limiter = require "rctasks.limiter",
  retry = require "rctasks.retry",
  task = require "rctasks.task",
}

local function required(name)
  local v = env.getenv(name)
  if v then return v end
  -- nginx clears its workers' environment: say what the config needs.
  local hint = env.ngx() and " in nginx's environment (export it before starting nginx; nginx.conf"
    .. " also needs `env " .. name .. ";`)" or ""
  check.fail("rctasks: " .. name .. " is not set" .. hint)
end

-- Client options from REDISCLOUD_ACCESS_KEY, REDISCLOUD_SECRET_KEY, REDISCLOUD_URL; a missing key raises.
function M.env_options()
  return { api_key = required("REDISCLOUD_ACCESS_KEY"), secret_key = required("REDISCLOUD_SECRET_KEY"),
           base_url = env.getenv("REDISCLOUD_URL"), journal = env.getenv("RCTASKS_JOURNAL") }
end

local default -- one per Lua state

-- The default client, made from the environment on first use. Inside nginx with a
-- `lua_shared_dict rctasks`, its request budget is shared by all workers.
function M.default()
  if not default then
    local opts = M.env_options()
    local ngx = env.ngx()
    local dict = defaults.shared_dict
    if ngx and ngx.shared and ngx.shared[dict] then -- one budget and one poll per task for all workers
      opts.store = require("rctasks.store.shdict").new{ dict = dict }
    end
    default = client.new(opts)
  end
  return default
end

-- The default client's methods (client.lua documents each).
function M.get(id) return M.default():get(id) end
function M.list() return M.default():list() end
function M.wait(id, opts) return M.default():wait(id, opts) end
function M.wait_all(ids, opts) return M.default():wait_all(ids, opts) end
function M.request(method, path, body) return M.default():request(method, path, body) end
function M.submit(method, path, body) return M.default():submit(method, path, body) end
function M.run(method, path, body, opts) return M.default():run(method, path, body, opts) end
function M.wait_ready(path, opts) return M.default():wait_ready(path, opts) end
function M.wait_gone(path, opts) return M.default():wait_gone(path, opts) end
function M.wait_status(path, opts) return M.default():wait_status(path, opts) end
function M.pipeline(steps, opts) return M.default():pipeline(steps, opts) end

return M
