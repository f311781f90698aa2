-- Handlers of the fleet benchmarks' nginx (bench/nginx/fleet.conf.in). Keys, the sim's URL and the
-- Redis URL arrive in POST bodies (loopback, access_log off), never in a URL nginx could log.
--   POST /budget/start {run=, key=, secret=, url=, redis= (or absent: the control), limit=, window=,
--                       id=, start= (epoch), seconds=}: every worker runs client:get(id) in a loop
--                       from `start` for `seconds` in a timer (each worker sees the job in the
--                       control dict within 50 ms), then records {ok=, lost=, events=}
--   GET  /budget/result?run=  {results = [...]}, one per worker done
--   POST /bg/setup {key=, secret=, url=, interval=}: this worker's client and background scheduler
--   POST /bg/spawn {ids=[...], timeout=}: spawn_wait each     GET /bg/count: states of the spawned
--   GET  /mem: Lua memory of this worker after a full collection, bytes used in the shared dict
-- luacheck: globals ngx
local cjson = require "cjson.safe"
local rctasks = require "rctasks"
local background = require "rctasks.background"

local M = {}

local function out(v, status)
  ngx.status = status or 200
  ngx.say(cjson.encode(v))
end

local function body()
  ngx.req.read_body()
  local v = cjson.decode(ngx.req.get_body_data() or "")
  if type(v) ~= "table" then out({ error = "a JSON object body" }, 400); return ngx.exit(400) end
  return v
end

local ctl = function() return ngx.shared.fleetctl end

local function run_budget(premature, job)
  if premature then return end
  local events = 0
  local c = rctasks.new{ api_key = job.key, secret_key = job.secret, base_url = job.url, redis = job.redis,
                         limiter = { limit = job.limit, window = job.window },
                         on_event = function() events = events + 1 end }
  ngx.update_time()
  if job.start > ngx.now() then ngx.sleep(job.start - ngx.now()) end
  local stop = job.start + job.seconds
  local ok, lost = 0, 0
  while true do
    ngx.update_time()
    if ngx.now() >= stop then break end
    local t = c:get(job.id)
    if t then ok = ok + 1 else lost = lost + 1 end
  end
  ctl():set("res:" .. job.run .. ":" .. ngx.worker.id(),
    cjson.encode({ ok = ok, lost = lost, events = events, worker = ngx.worker.id() }))
end

local taken -- the last job this worker started

local function check_job(premature)
  if premature then return end
  local s = ctl():get("job")
  local job = s and cjson.decode(s)
  if job and job.run ~= taken then
    taken = job.run
    ngx.timer.at(0, run_budget, job)
  end
end

function M.init_worker() ngx.timer.every(0.05, check_job) end

function M.budget_start()
  local job = body()
  job.redis = job.redis ~= "" and job.redis or nil
  ctl():set("job", cjson.encode(job))
  return out({ ok = true }, 202)
end

function M.budget_result()
  local res = {}
  for w = 0, ngx.worker.count() - 1 do
    local s = ctl():get("res:" .. tostring(ngx.var.arg_run) .. ":" .. w)
    if s then res[#res + 1] = cjson.decode(s) end
  end
  return out({ results = res, workers = ngx.worker.count() })
end

local bg_client, spawned = nil, {}

function M.bg_setup()
  local o = body()
  if not bg_client then
    bg_client = rctasks.new{ api_key = o.key, secret_key = o.secret, base_url = o.url,
                             store = require("rctasks.store.shdict").new() }
    assert(background.serve(bg_client, { wait = { interval = o.interval, max_interval = o.interval, jitter = 0 } }))
  end
  return out({ ok = true, worker = ngx.worker.id() })
end

function M.bg_spawn()
  local o = body()
  local n = 0
  for _, id in ipairs(o.ids or {}) do
    local ok, err = background.spawn_wait(bg_client, id, { wait = { timeout = o.timeout } })
    if not ok then return out({ error = tostring(err) }, 500) end
    spawned[#spawned + 1] = id
    n = n + 1
  end
  return out({ ok = true, n = n }, 202)
end

function M.bg_count()
  local counts = {}
  for _, id in ipairs(spawned) do
    local r = background.result(id, { client = bg_client })
    local s = r and r.state or "none"
    counts[s] = (counts[s] or 0) + 1
  end
  return out({ counts = counts, n = #spawned })
end

function M.mem()
  collectgarbage("collect")
  local d = ngx.shared.rctasks
  return out({ lua = collectgarbage("count") * 1024, dict_used = d:capacity() - d:free_space(),
               worker = ngx.worker.id() })
end

return M
