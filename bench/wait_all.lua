-- Case 3b, waiting for many tasks at once (n tasks of `duration` seconds, all running in parallel,
-- on a clock sped up `scale` times; see bench/wait.lua):
--   mode=wait_all   client:wait_all(ids)
--   mode=each       client:wait(id) for each id in turn (what a script without wait_all does)
-- usage: RCTASKS_SIM_URL=... lua bench/wait_all.lua mode=wait_all n=50 duration=60 scale=50
-- Prints requests (counted by the sim) and the time until every task was known done, in task seconds.
local lib = require "lib"
local sim = require "helpers.sim"
local core = require "rctasks.core"
local rctasks = require "rctasks"

local a = lib.args(arg)
local mode, n = lib.need(a, "mode"), lib.need(a, "n")
local duration, scale = lib.need(a, "duration"), lib.need(a, "scale")

local acct = sim.account{ step = duration / scale / 2, lag = 0, rate_limit = 1000000 }
local function now() return core.now() * scale end
local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), now = now,
  sleep = function(s) core.sleep(s / scale) end }

-- Create the tasks over one keep-alive connection (the control API needs no keys), so that
-- they start within a few milliseconds of each other.
local origin = sim.origin()
local h = core.http(require("rctasks.transport.curl").options())
local ids = {}
for i = 1, n do
  local status, _, body = h:request("POST", origin .. "/sim/accounts/" .. acct.key .. "/tasks", nil,
    '{"queue":false}')
  assert(status == 200, "task creation failed")
  ids[i] = assert(sim.decode(body)).taskId
end
h:close()

local t0 = now()
if mode == "wait_all" then
  local results = c:wait_all(ids, { timeout = 4 * duration + 60 })
  for i, r in ipairs(results) do assert(r.id == ids[i] and r.task and r.task:ok(), "every task completed") end
elseif mode == "each" then
  for _, id in ipairs(ids) do assert(c:wait(id, { timeout = 4 * duration + 60 })) end
else
  error("bench/wait_all: unknown mode " .. tostring(mode))
end
local elapsed = now() - t0
local stats = sim.stats(acct.key)
c:close()
lib.emit{ case = "wait_all", mode = mode, n = n, duration = duration, scale = scale, lua = lib.interpreter(),
  requests = stats.requests, elapsed = elapsed }
