-- Case 3, waiting for one task of `duration` seconds on a clock sped up `scale` times:
--   strategy=rctasks  client:wait(id) (its default schedule)
--   strategy=fixed3   get, then sleep 3 s, until done (a typical shell loop)
--   strategy=gosdk    the Go SDK's schedule: 1 s doubling to a 30 s cap, plus up to 100 ms jitter
-- Every strategy polls through the same rctasks client (same transport, same decode), so only the
-- schedule differs. Both sides are scaled: the sim's `step` makes the task end after
-- duration/scale real seconds, and the client's now/sleep run `scale` times faster.
-- usage: RCTASKS_SIM_URL=... lua bench/wait.lua strategy=rctasks duration=60 scale=50
-- Prints requests (counted by the sim) and time-to-notice in task seconds: from the completed
-- task's own `timestamp` to the moment the wait returned.
local lib = require "lib"
local sim = require "helpers.sim"
local core = require "rctasks.core"
local rctasks = require "rctasks"

local a = lib.args(arg)
local strategy, duration, scale = lib.need(a, "strategy"), lib.need(a, "duration"), lib.need(a, "scale")

-- The task turns processing-in-progress after `step` and ends `step` later.
local acct = sim.account{ step = duration / scale / 2, lag = 0, rate_limit = 1000000 }
local function now() return core.now() * scale end
local function sleep(s) core.sleep(s / scale) end
local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), now = now, sleep = sleep }

local id = sim.task(acct.key, { queue = false })

local function poll_loop(next_delay)
  while true do
    local t = assert(c:get(id))
    if t:done() then return t end
    sleep(next_delay())
  end
end

local t
if strategy == "rctasks" then
  t = assert(c:wait(id, { timeout = 4 * duration + 60 }))
elseif strategy == "fixed3" then
  t = poll_loop(function() return 3 end)
elseif strategy == "gosdk" then
  local delay = 1
  t = poll_loop(function()
    local d = delay + 0.1 * math.random()
    delay = math.min(delay * 2, 30)
    return d
  end)
else
  error("bench/wait: unknown strategy " .. tostring(strategy))
end
local noticed = lib.wall()
assert(t:ok(), "the task completed")
local stats = sim.stats(acct.key)
c:close()
lib.emit{ case = "wait", strategy = strategy, duration = duration, scale = scale, lua = lib.interpreter(),
  requests = stats.requests, notice = (noticed - t:time()) * scale }
