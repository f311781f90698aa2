-- The fleet benchmarks' cases (bench/fleet.lua runs them): each starts what it measures against
-- the servers of bench/fleet_env.lua, and returns plain figures (counts first: the claims).
local socket = require "socket"
local sim = require "helpers.sim"
local E = require "fleet_env"

local M = {}

-- The most of `times` (sorted) inside any half-open window [t, t + w).
function M.worst_window(times, w)
  local worst, j = 0, 1
  for i = 1, #times do
    while times[i] - times[j] >= w do j = j + 1 end
    worst = math.max(worst, i - j + 1)
  end
  return worst
end

function M.between(times, from, to)
  local l = {}
  for _, t in ipairs(times) do if t >= from and t < to then l[#l + 1] = t end end
  return l
end

-- The most of `times` (sorted) inside any window [t, t + w) that holds the moment `at`.
function M.worst_across(times, w, at)
  return M.worst_window(M.between(times, at - w, at + w), w)
end

function M.percentile(list, p)
  if #list == 0 then return nil end
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(p * #s))]
end

local function within(times, from, to)
  local n = 0
  for _, t in ipairs(times) do if t >= from and t < to then n = n + 1 end end
  return n
end

local function sorted_times(key)
  local st = sim.stats(key, { since = 0 }) -- every request time the simulator keeps (its last 20000)
  local times = st.times or {}
  table.sort(times)
  return st, times
end

-- Budget: `procs` plain-Lua clients and the budget nginx's workers share one key under
-- limit/window for `seconds`. mode: "redis" (shared), "none" (the control), "fault" (Redis
-- SIGKILLed at a third of the run, restarted empty at two thirds).
function M.budget(S, mode, ngx_base)
  local acct = sim.account{ rate_limit = S.limit, rate_window = S.window }
  local id = sim.task(acct.key, { queue = false })
  local envf = E.account_env(acct, "budget-" .. mode)
  local redis = mode == "none" and "none" or E.REDIS_URL
  local start = socket.gettime() + 2
  local readers = {}
  for i = 1, S.procs do
    readers[i] = E.spawn(envf, { "mode=budget", "limit=" .. S.limit, "window=" .. S.window, "redis=" .. redis,
                                 "id=" .. id, "start=" .. string.format("%.3f", start), "seconds=" .. S.seconds })
  end
  local run = "budget-" .. mode .. "-" .. math.floor(start)
  local status = E.http("POST", ngx_base .. "/budget/start", { run = run, key = acct.key, secret = acct.secret,
    url = E.SIM_URL, redis = mode ~= "none" and E.REDIS_URL or "", limit = S.limit, window = S.window, id = id,
    start = start, seconds = S.seconds })
  assert(status == 202, "the budget nginx took the job")
  local down, up, restart
  if mode == "fault" then
    E.sleep_until(start + S.seconds / 3)
    down = socket.gettime()
    E.kill_redis()
    E.sleep_until(start + 2 * S.seconds / 3)
    restart = socket.gettime()
    E.restart_redis()
    up = socket.gettime()
  end
  local r = { mode = mode, ok = 0, lost = 0, events = 0, procs = S.procs }
  for _, read in ipairs(readers) do
    local x = read()
    r.ok, r.lost, r.events = r.ok + x.ok, r.lost + x.lost, r.events + x.events
  end
  local deadline = socket.gettime() + S.window + 60
  local res
  repeat
    local _, v = E.http("GET", ngx_base .. "/budget/result?run=" .. run)
    res = v
    if #res.results < res.workers then socket.sleep(0.2) end
  until #res.results >= res.workers or socket.gettime() > deadline
  assert(#res.results >= res.workers, "every nginx worker of the budget run reported")
  for _, x in ipairs(res.results) do r.ok, r.lost, r.events = r.ok + x.ok, r.lost + x.lost, r.events + x.events end
  r.workers = res.workers
  local st, times = sorted_times(acct.key)
  r.requests, r.rate_limited = st.requests, st.rate_limited
  r.in_run = within(times, start, start + S.seconds)
  r.budget = S.limit * S.seconds / S.window
  r.used = r.in_run / r.budget
  r.worst = M.worst_window(times, S.window)
  if down then
    -- where the worst windows lie: across the kill, inside the outage, across the restart
    r.down, r.up = down - start, up - start
    r.worst_kill = M.worst_across(times, S.window, down)
    r.worst_down = M.worst_window(M.between(times, down, restart), S.window)
    r.worst_restart = M.worst_across(times, S.window, restart)
  end
  assert(r.requests > 0 and #times == st.requests, "the sim logged every request")
  return r
end

-- Shared watches: `waiters` waits across `procs` processes on `tasks` tasks ending between
-- `first` and `last` s from now, polled every `interval` s. mode as for the budget.
function M.watch(S, mode)
  local acct = sim.account{ rate_limit = 100000000 }
  local ids, t0 = {}, socket.gettime()
  for i = 1, S.tasks do
    local ends = S.first + (S.last - S.first) * (i - 1) / math.max(1, S.tasks - 1)
    sim.config(acct.key, { step = math.max(0.01, (ends - (socket.gettime() - t0)) / 2) })
    ids[i] = sim.task(acct.key, { queue = false })
  end
  local envf = E.account_env(acct, "watch-" .. mode)
  local redis = mode == "none" and "none" or E.REDIS_URL
  local start = socket.gettime() + 1
  local readers = {}
  local per = S.waiters // S.procs
  for p = 1, S.procs do
    -- waiter i of process p waits on ids[(p - 1) * per + i], wrapped: every task gets waiters/tasks
    local mine = {}
    for i = 1, per do mine[i] = ids[((p - 1) * per + i - 1) % #ids + 1] end
    readers[p] = E.spawn(envf, { "mode=watch", "redis=" .. redis, "ids=" .. table.concat(mine, ","),
      "waiters=" .. per, "interval=" .. S.interval, "start=" .. string.format("%.3f", start),
      "timeout=" .. (S.last + 120) })
  end
  local down, up
  if mode == "fault" then
    -- down before the first task ends, up again while the others end
    E.sleep_until(start + S.first / 2)
    down = socket.gettime()
    E.kill_redis()
    E.sleep_until(t0 + (S.first + S.last) / 2)
    E.restart_redis()
    up = socket.gettime()
  end
  local r = { mode = mode, ok = 0, lost = 0, events = 0, waiters = per * S.procs }
  local notices = {}
  for _, read in ipairs(readers) do
    local x = read()
    r.ok, r.lost, r.events = r.ok + x.ok, r.lost + x.lost, r.events + x.events
    for v in tostring(x.notices):gmatch("[^,]+") do notices[#notices + 1] = tonumber(v) end
  end
  local st, times = sorted_times(acct.key)
  r.requests = st.requests
  local span = #times > 0 and (times[#times] - start) or 0
  r.rounds = math.max(1, span / S.interval)
  r.per_round = r.requests / r.rounds
  r.worst_round = M.worst_window(times, S.interval)
  r.notice_p50, r.notice_p95 = M.percentile(notices, 0.5), M.percentile(notices, 0.95)
  r.notice_max = M.percentile(notices, 1)
  if down then r.down, r.up = down - start, up - start end
  return r
end

-- Background waits at scale: `n` waits in the scale nginx's one worker, polled every `interval` s.
function M.scale(S, base)
  local acct = sim.account{ rate_limit = 100000000, step = S.step }
  local ids = {}
  for i = 1, S.n do ids[i] = sim.task(acct.key, { queue = false }) end
  assert(E.http("POST", base .. "/bg/setup", { key = acct.key, secret = acct.secret, url = E.SIM_URL,
                                               interval = S.interval }) == 200)
  local r = { n = S.n, interval = S.interval }
  local _, idle = E.http("GET", base .. "/mem")
  r.ping_idle = M.ping(base, S.wrk)
  local t_spawn = socket.gettime()
  for i = 1, #ids, 1000 do
    local part = {}
    for j = i, math.min(i + 999, #ids) do part[#part + 1] = ids[j] end
    local status, v = E.http("POST", base .. "/bg/spawn", { ids = part, timeout = 600 })
    assert(status == 202, "spawn: " .. tostring(type(v) == "table" and v.error or v))
  end
  r.spawn_s = socket.gettime() - t_spawn
  socket.sleep(2 * S.interval + 1) -- the scheduler has picked every record up and polled
  local _, busy = E.http("GET", base .. "/mem")
  r.ping_busy = M.ping(base, S.wrk)
  local _, c = E.http("GET", base .. "/bg/count")
  r.waiting_at_ping = c.counts.waiting or 0
  r.lua_per_task = (busy.lua - idle.lua) / S.n
  r.dict_per_task = (busy.dict_used - idle.dict_used) / S.n
  local deadline = socket.gettime() + 2 * S.step + 120
  repeat
    socket.sleep(0.5)
    _, c = E.http("GET", base .. "/bg/count")
  until (c.counts.completed or 0) + (c.counts.failed or 0) + (c.counts.error or 0) + (c.counts.timeout or 0) >= S.n
    or socket.gettime() > deadline
  local t_done = socket.gettime()
  r.completed, r.lost = c.counts.completed or 0, S.n - (c.counts.completed or 0)
  local st, times = sorted_times(acct.key)
  r.requests = within(times, t_spawn, t_done + 1)
  r.rounds = math.max(1, (t_done - t_spawn) / S.interval)
  r.per_round = r.requests / r.rounds
  r.worst_round = M.worst_window(times, S.interval)
  r.list_requests = st.by_route["GET /v1/tasks"] or 0
  return r
end

-- /ping latency percentiles (ms) from wrk over `seconds`.
function M.ping(base, seconds)
  local out = E.must("wrk -t1 -c4 -d" .. seconds .. "s --latency " .. base .. "/ping")
  local function ms(label)
    local v, unit = out:match("%s" .. label .. "%s+([%d%.]+)(%a+)")
    v = tonumber(v)
    if not v then return nil end
    return v * ({ us = 0.001, ms = 1, s = 1000 })[unit]
  end
  local p99 = ms("99%%")
  if not p99 then error("bench/fleet: wrk gave no p99:\n" .. out, 0) end
  return { p50 = ms("50%%"), p99 = p99, rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)")) }
end

return M
