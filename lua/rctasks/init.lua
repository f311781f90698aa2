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

local function getenv(name)
  local v = os.getenv(name)
  return v ~= "" and v or nil
end

-- The default client, made from the environment on first use (a missing key raises here).
function M.default()
  if not default then
    default = client.new{
      api_key = getenv("REDISCLOUD_ACCESS_KEY") or error("rctasks: REDISCLOUD_ACCESS_KEY is not set", 3),
      secret_key = getenv("REDISCLOUD_SECRET_KEY") or error("rctasks: REDISCLOUD_SECRET_KEY is not set", 3),
      base_url = getenv("REDISCLOUD_URL"),
    }
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
