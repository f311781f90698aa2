-- One plain-Lua process of the fleet benchmarks (bench/fleet.lua starts several at once):
--   mode=budget  client:get(id) in a loop from `start` (epoch) for `seconds`, under
--                limiter = { limit =, window = } (shared through `redis` when given)
--   mode=watch   `waiters` waits (coroutines, one client) on the task ids in `ids` (comma-separated),
--                waiter i on ids[(i - 1) % #ids + 1]; the schedule: every `interval` s, no backoff
-- Keys and the sim's URL come from the environment (BENCH_KEY, BENCH_SECRET, BENCH_URL: a sourced
-- file, never the command line). redis=none: no shared store (the control).
-- Prints RESULT ok= lost= (calls that ended in an error) events= ... and, for watch, the
-- time-to-notice of each waiter (notices=a,b,...: from the task's end to the wait's return, s).
local lib = require "lib"
local core = require "rctasks.core"
local rctasks = require "rctasks"

local a = lib.args(arg)
local mode = lib.need(a, "mode")
local redis = a.redis ~= "none" and a.redis or nil

local events = 0
local sleep = core.sleep

-- Waiters are coroutines: a wait's sleep yields to the loop below, which resumes the earliest.
local sleepers = {}
local function co_sleep(s)
  local co, main = coroutine.running()
  if main or not sleepers[co] then return core.sleep(s) end
  sleepers[co].wake = core.now() + s
  coroutine.yield()
end
if mode == "watch" then sleep = co_sleep end

local opts = { api_key = os.getenv("BENCH_KEY"), secret_key = os.getenv("BENCH_SECRET"),
               base_url = os.getenv("BENCH_URL"), redis = redis, sleep = sleep,
               on_event = function() events = events + 1 end }
if mode == "budget" then
  opts.limiter = { limit = lib.need(a, "limit"), window = lib.need(a, "window") }
else
  opts.limiter = false -- the watch runs count polls, not the budget
end
local c = rctasks.new(opts)

local function until_epoch(t)
  local d = t - lib.wall()
  if d > 0 then core.sleep(d) end
end

if mode == "budget" then
  local id = lib.need(a, "id")
  until_epoch(lib.need(a, "start"))
  local stop = lib.need(a, "start") + lib.need(a, "seconds")
  local ok, lost, status429 = 0, 0, 0
  while lib.wall() < stop do
    local t, err = c:get(id)
    if t then ok = ok + 1 else
      lost = lost + 1
      if err.status == 429 then status429 = status429 + 1 end
    end
  end
  lib.emit{ mode = mode, ok = ok, lost = lost, lost429 = status429, events = events }
elseif mode == "watch" then
  local ids = {}
  for id in tostring(lib.need(a, "ids")):gmatch("[^,]+") do ids[#ids + 1] = id end
  local interval = lib.need(a, "interval")
  local wopts = { interval = interval, max_interval = interval, backoff = 1, jitter = a.jitter or 0,
                  timeout = a.timeout or 300 }
  local ok, lost, notices = 0, 0, {}
  for i = 1, lib.need(a, "waiters") do
    local id = ids[(i - 1) % #ids + 1]
    local co = coroutine.create(function()
      local t, err = c:wait(id, wopts)
      local at = lib.wall()
      if t and t.status == "processing-completed" then
        ok = ok + 1
        notices[#notices + 1] = string.format("%.3f", at - t:time())
      else
        lost = lost + 1
        io.stderr:write("waiter on ", id, ": ", tostring(err or (t and t.status)), "\n")
      end
    end)
    sleepers[co] = { wake = 0 }
  end
  until_epoch(a.start or 0)
  while next(sleepers) do
    local first, wake
    for co, s in pairs(sleepers) do
      if not wake or s.wake < wake then first, wake = co, s.wake end
    end
    local d = wake - core.now()
    if d > 0 then core.sleep(d) end
    local okr, err = coroutine.resume(first)
    if not okr then error(err) end
    if coroutine.status(first) == "dead" then sleepers[first] = nil end
  end
  lib.emit{ mode = mode, ok = ok, lost = lost, events = events,
            notices = #notices > 0 and table.concat(notices, ",") or "none" }
else
  error("bench/fleet_client: unknown mode " .. tostring(mode))
end
c:close()
