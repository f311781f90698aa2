-- Handlers of spec/ngx/10-fleet_spec.lua: one client per worker for the account in RCTASKS_NGX_KEY,
-- RCTASKS_NGX_SECRET, RCTASKS_NGX_URL on the Redis in RCTASKS_REDIS_URL (its budget RCTASKS_NGX_LIMIT,
-- "L/W"), shared with every other worker, nginx and process on that Redis.
--   init_worker: serve()   this worker's background scheduler (records and board in Redis)
--   /fleet-load?task=ID&secs=S   gets of the task as fast as the budget lets, for S seconds
--   /fleet-spawn?ids=A,B   background waits;   /fleet-result?ids=A,B   their recorded states
local cjson = require "cjson.safe"
local rctasks = require "rctasks"
local background = require "rctasks.background"

local M = {}

local WAIT = { interval = 0.2, max_interval = 0.5, jitter = 0, timeout = 60 }

local c
local function client()
  if c then return c end
  local l, w = (os.getenv("RCTASKS_NGX_LIMIT") or ""):match("^(%d+)/([%d.]+)$")
  c = rctasks.new{ api_key = os.getenv("RCTASKS_NGX_KEY"), secret_key = os.getenv("RCTASKS_NGX_SECRET"),
                   base_url = os.getenv("RCTASKS_NGX_URL"), retry = { base = 0.05 },
                   redis = { url = os.getenv("RCTASKS_REDIS_URL"), timeout = 2 },
                   limiter = l and { limit = tonumber(l), window = tonumber(w) } or nil }
  return c
end

local function out(v, status)
  local body = cjson.encode(v)
  ngx.status = status or 200
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

local function ids()
  local l = {}
  for id in (ngx.var.arg_ids or ""):gmatch("[^,]+") do l[#l + 1] = id end
  return l
end

function M.serve() assert(background.serve(client(), { wait = WAIT })) end

function M.load()
  local stop, n, failed = ngx.now() + tonumber(ngx.var.arg_secs), 0, 0
  while ngx.now() < stop do
    local t = client():get(ngx.var.arg_task)
    n = n + 1
    if not t then failed = failed + 1 end
    ngx.update_time()
  end
  return out({ sent = n, failed = failed, worker = ngx.worker.id() })
end

function M.spawn()
  for _, id in ipairs(ids()) do assert(background.spawn_wait(client(), id, { wait = WAIT })) end
  return out({ ok = true, worker = ngx.worker.id() }, 202)
end

function M.result()
  local states = {}
  for i, id in ipairs(ids()) do
    local r = background.result(id, { client = client() })
    states[i] = r and r.state or "none"
  end
  return out({ states = states })
end

return M
