-- rctasks: the asynchronous tasks of the Redis Cloud REST API, from Lua and from nginx.
--   local rctasks = require "rctasks"
--   local task, err = rctasks.wait(task_id, { timeout = 1800 })
-- Module-level calls use a default client configured from the environment on first use:
-- REDISCLOUD_ACCESS_KEY, REDISCLOUD_SECRET_KEY and REDISCLOUD_URL (optional).
local client = require "rctasks.client"
local core = require "rctasks.core"

local M = {
  VERSION = core.version,
  new = client.new,
  escape = client.escape,
  null = core.null,
  decode = core.decode,
  errors = require "rctasks.errors",
  retry = require "rctasks.retry",
  task = require "rctasks.task",
}

local default -- one per Lua state (one per nginx worker)

local function getenv(name, level)
  local v = os.getenv(name)
  if v and v ~= "" then return v end
  if level then
    -- nginx clears its workers' environment: say what the config needs.
    local hint = rawget(_G, "ngx") and " in nginx's environment (export it before starting nginx; nginx.conf" ..
      " also needs `env " .. name .. ";`)" or ""
    error("rctasks: " .. name .. " is not set" .. hint, level + 1)
  end
end

-- Client options from REDISCLOUD_ACCESS_KEY, REDISCLOUD_SECRET_KEY, REDISCLOUD_URL; a missing key raises.
function M.env_options(level)
  level = (level or 1) + 1
  return { api_key = getenv("REDISCLOUD_ACCESS_KEY", level), secret_key = getenv("REDISCLOUD_SECRET_KEY", level),
           base_url = getenv("REDISCLOUD_URL") }
end

-- The default client, made from the environment on first use. Inside nginx with a
-- `lua_shared_dict rctasks`, its request budget is shared by all workers.
function M.default()
  if not default then
    local ngx = rawget(_G, "ngx")
    if ngx and ngx.shared and ngx.shared.rctasks then
      default = require("rctasks.ngx").new(M.env_options(2), { dict = "rctasks" })
    else
      default = client.new(M.env_options(2))
    end
  end
  return default
end

function M.get(id) return M.default():get(id) end
function M.list() return M.default():list() end
function M.wait(id, opts) return M.default():wait(id, opts) end

-- The workflow helpers on the default client too (rctasks.run, rctasks.pipeline, ...).
for _, name in ipairs({ "request", "submit", "run", "wait_ready", "wait_all", "pipeline" }) do
  M[name] = function(...) local c = M.default(); return c[name](c, ...) end
end

return M
