-- Spec/23's fleet across real processes on a real redis-server: each member a plain Lua process
-- (spec/helpers/member.lua) with `redis = url`, on one simulator account. One request budget for
-- all of them (no 429, no window over the limit, the budget used), one poll per task, a poller
-- killed with SIGKILL replaced once its lease runs out, Redis's faults (stopped, restarted, never
-- there, frozen) met by every member without a raise or a lost outcome, and a keyed run with
-- `journal = true` sending once for two processes. Each has its control: the same without Redis.
local cjson = require "cjson"
local socket = require "socket"
local R = require "helpers.redis"
local sim = require "helpers.sim"
local sys = require "helpers.sys"

local URL = R.url()
if not URL then
  describe("a fleet of processes on Redis", function()
    pending("RCTASKS_REDIS_URL is not set: start one with scripts/redis start DIR (make test does)")
  end)
  return
end

local fleet = require("helpers.members").new

-- The account's environment for members; o: more variables.
local function vars(acct, o)
  local v = { MEMBER_KEY = acct.key, MEMBER_SECRET = acct.secret, MEMBER_URL = sim.url() }
  for k, x in pairs(o or {}) do v[k] = x end
  return v
end

local L, W = 20, 2 -- the strict budget of these specs, and the sim account's own rate limit

-- ===== a: the budget =====

-- 4 members sending gets as fast as their budget lets them for `secs`; the account's stats after.
local function flood(redis, secs)
  local acct = sim.account({ rate_limit = L, rate_window = W })
  local task = sim.task(acct.key, { queue = false })
  local f = fleet()
  finally(function() f:close() end)
  local at = socket.gettime() + 0.5
  for _ = 1, 4 do
    f:spawn("gets", vars(acct, { MEMBER_REDIS = redis or "", MEMBER_LIMIT = L .. "/" .. W, MEMBER_AT = at,
                                 MEMBER_UNTIL = at + secs, MEMBER_TASK = task }))
  end
  assert.is_true(f:wait(secs + 20), "members did not finish: " .. tostring(sys.read(f.members[1].err)))
  local sent = {}
  for i, m in ipairs(f.members) do
    assert.equal("", sys.read(m.err))
    local l = f:lines(m)
    sent[i] = l[#l].sent
  end
  return sim.stats(acct.key, { window = W }), sent
end

describe("4 processes on one Redis", function()
  it("share one request budget: no 429, no window of W s over L requests, and the budget used", function()
    local secs = 3 * W
    local st, sent = flood(URL, secs)
    print(string.format("\n  fleet budget (%d per %g s, 4 processes, %g s): %d requests (%s), busiest window %d,"
      .. " %d 429s", L, W, secs, st.requests, table.concat(sent, "+"), st.busiest.requests, st.rate_limited))
    assert.equal(0, st.rate_limited)
    assert.is_true(st.busiest.requests <= L, st.busiest.requests .. " requests within " .. W .. " s")
    assert.is_true(st.requests >= 0.8 * L * secs / W, st.requests .. " requests: the budget went unused")
    for i, n in ipairs(sent) do assert.is_true(n >= 1, "process " .. i .. " sent nothing") end
  end)

  it("without Redis (the control), each keeps its own budget and the account gets 429s", function()
    local st = flood(nil, W)
    print(string.format("  without Redis: %d requests, busiest window %d, %d 429s", st.requests,
      st.busiest.requests, st.rate_limited))
    assert.is_true(st.rate_limited > 0 and st.busiest.requests > L)
  end)

  -- ===== b: one poll per task =====

  -- Tasks ending about `life` s from now: each completed with resource 100 + i, the last one failed.
  local function tasks(acct, n)
    local ids, want = {}, {}
    for i = 1, n do
      local failed = i == n
      ids[i] = sim.task(acct.key, { queue = false, resourceId = 100 + i, outcome = failed and "error" or nil })
      want[ids[i]] = failed and { status = "processing-error", kind = "task" } or
        { status = "processing-completed", rid = 100 + i }
    end
    return ids, want
  end

  -- Every member's outcomes are what the task ended in, and the same for all of them.
  local function same_outcomes(f, ids, want)
    local first
    for i, m in ipairs(f.members) do
      if not m.killed then
        assert.equal("", sys.read(m.err), "process " .. i .. " wrote to stderr")
        local got = {}
        for _, l in ipairs(f:lines(m)) do if l.id then got[#got + 1] = l end end
        assert.equal(#ids, #got, "process " .. i .. " answered " .. #got .. " outcomes")
        for j, g in ipairs(got) do
          assert.equal(ids[j], g.id)
          assert.equal(want[g.id].status, g.status, "process " .. i .. ", task " .. j .. ": " .. cjson.encode(g))
          assert.equal(want[g.id].kind, g.kind)
          if want[g.id].rid then assert.equal(want[g.id].rid, g.rid) end
          g.at = nil
        end
        first = first or got
        assert.same(first, got)
      end
    end
  end

  -- 4 members waiting on the same 4 tasks; requests per round of `interval`.
  local function waiters(redis, interval)
    local acct = sim.account({ step = 1.5 })
    local ids, want = tasks(acct, 4)
    local f = fleet()
    finally(function() f:close() end)
    local t0 = socket.gettime()
    for _ = 1, 4 do
      f:spawn("wait", vars(acct, { MEMBER_REDIS = redis or "", MEMBER_TASKS = table.concat(ids, ","),
                                   MEMBER_INTERVAL = interval }))
    end
    assert.is_true(f:wait(30), "members did not finish")
    local took = socket.gettime() - t0
    same_outcomes(f, ids, want)
    local st = sim.stats(acct.key)
    return st.requests / (took / interval), st, took
  end

  it("poll each task once a round for all of them, and every process gets the same outcomes", function()
    local per_round, st, took = waiters(URL, 0.2)
    local _, ctl = waiters(nil, 0.2)
    print(string.format("  one poll per task: 4 processes on 4 tasks for %.1f s: %.2f requests a round with Redis"
      .. " (%d), %d without", took, per_round, st.requests, ctl.requests))
    assert.is_true(per_round <= 1.5, per_round .. " requests a round")
    assert.is_true(ctl.requests >= 2.5 * st.requests, "the control made " .. ctl.requests)
  end)

  -- ===== c: lease take-over =====

  it("takes the poll over when the poller is killed: the others finish within its lease and a round", function()
    local acct = sim.account({ step = 2 })
    local ids, want = tasks(acct, 3)
    local f = fleet()
    finally(function() f:close() end)
    local iv = 0.5
    for _ = 1, 4 do
      f:spawn("wait", vars(acct, { MEMBER_REDIS = URL, MEMBER_TASKS = table.concat(ids, ","), MEMBER_INTERVAL = iv,
                                   MEMBER_LEASE_MARGIN = os.getenv("RCTASKS_FLEET_LEASE_MARGIN") }))
    end
    socket.sleep(1.2)
    -- the poller: the member that sent the latest request; killed just after it went to sleep
    local victim, slept
    local deadline = socket.gettime() + 5
    repeat
      local latest = 0
      for _, m in ipairs(f.members) do
        for _, l in ipairs(f:lines(m)) do if l.request and l.at > latest then latest, victim = l.at, m end end
      end
      local l = victim and f:lines(victim)
      local last = l and l[#l]
      if last and last.sleep and last.sleep >= 0.2 and socket.gettime() - last.at < 0.1 then slept = last.sleep end
      if not slept then socket.sleep(0.01) end
    until slept or socket.gettime() > deadline
    assert.is_truthy(slept, "no poller found asleep")
    f:kill(victim)
    local killed = victim.killed
    assert.is_true(f:wait(30), "the others did not finish")
    same_outcomes(f, ids, want)
    local finish = 0
    for _, m in ipairs(f.members) do
      if not m.killed then
        for _, l in ipairs(f:lines(m)) do if l.id then finish = math.max(finish, l.at) end end
      end
    end
    local lease = slept + 5 -- the dead poller's lease: its sleep and the margin
    local first = sim.stats(acct.key, { since = killed }).times[1]
    print(string.format("  take-over: the poller killed asleep (%.2f s); next poll %.2f s later, all done %.2f s"
      .. " after the kill (lease %.2f s)", slept, first - killed, finish - killed, lease))
    assert.is_true(first - killed >= lease - 1, "polled while the dead poller's lease ran")
    assert.is_true(finish - killed <= lease + iv + 1, "done " .. (finish - killed) .. " s after the kill")
  end)

  -- ===== d: Redis's faults =====

  -- 4 members waiting on 3 tasks through `srv` under the strict budget; `fault(srv)` at 1 s,
  -- `heal(srv)` at 3 s (`before(srv)`: before they start). Returns the fleet, account stats, events.
  local function faulted(o)
    local srv = R.start()
    finally(function() srv:stop() end)
    local acct = sim.account({ step = 2.25, rate_limit = L, rate_window = W })
    local ids, want = tasks(acct, 3)
    local f = fleet()
    finally(function() f:close() end)
    if o.before then o.before(srv) end
    local t0 = socket.gettime()
    for _ = 1, 4 do
      f:spawn("wait", vars(acct, { MEMBER_REDIS = srv.url, MEMBER_TASKS = table.concat(ids, ","),
                                   MEMBER_LIMIT = os.getenv("RCTASKS_FLEET_NO_LIMIT") and "" or L .. "/" .. W }))
    end
    socket.sleep(math.max(0, t0 + 1 - socket.gettime()))
    if o.fault then o.fault(srv) end
    socket.sleep(math.max(0, t0 + 3 - socket.gettime()))
    if o.heal then o.heal(srv) end
    assert.is_true(f:wait(40), "members did not finish")
    same_outcomes(f, ids, want)
    local st = sim.stats(acct.key, { window = W })
    -- While the store fails each member keeps to the local share it announced (on_event's message).
    local shares = 0
    for i, m in ipairs(f.members) do
      local n, w, sends = nil, nil, {}
      for _, l in ipairs(f:lines(m)) do
        if l.event == "budget" and l.down then
          n, w = l.message:match("keeps to (%d+) requests per ([%d.]+) s")
          n, w = tonumber(n), tonumber(w)
          shares = shares + n
        elseif l.event == "budget" then break
        elseif l.request and n then sends[#sends + 1] = l.at end
      end
      for j = (n or 0) + 1, #sends do
        assert.is_true(sends[j] - sends[j - n] >= w - 0.05,
          "process " .. i .. " sent over its share of " .. tostring(n))
      end
    end
    -- The fleet: the members' shares add up to L (waiting members count too), and a store back
    -- from a failure or found empty keeps each to its share for a window: no window over L, no 429.
    assert.is_true(st.busiest.requests <= L, st.busiest.requests .. " requests within " .. W .. " s")
    assert.equal(0, st.rate_limited)
    local events = {}
    for i, m in ipairs(f.members) do
      events[i] = {}
      for _, l in ipairs(f:lines(m)) do
        if l.event then
          events[i][l.event] = events[i][l.event] or {}
          table.insert(events[i][l.event], l.down and "down" or "back")
        end
      end
    end
    print(string.format("  %s: %d requests, busiest window %d, %d 429s, local shares %d in all; events of"
      .. " process 1: %s", o.name, st.requests, st.busiest.requests, st.rate_limited, shares, cjson.encode(events[1])))
    return events
  end

  -- Each member said once that the store went, and once that it is back, for each of `kinds`.
  local function once_each_way(events, kinds)
    for i, e in ipairs(events) do
      for _, kind in ipairs(kinds) do
        assert.same({ "down", "back" }, e[kind] or {}, "process " .. i .. ", " .. kind .. ": " .. cjson.encode(e))
      end
    end
  end

  local function pid(srv) return sys.read(srv.dir .. "/redis.pid"):match("%d+") end

  it("Redis stopped mid-wait, then started: every wait ends in its outcome, the budget kept, told once each way",
     function()
    once_each_way(faulted{ name = "Redis stopped mid-wait", fault = function(s) s:down() end,
                           heal = function(s) s:restart() end }, { "store", "budget" })
  end)

  it("Redis restarted (its data gone) mid-wait: the same, and one poller again after", function()
    local events = faulted{ name = "Redis restarted", fault = function(s) s:restart() end }
    for i, e in ipairs(events) do -- a restart is quick: a member may not have met it; one that did says so both ways
      assert.same(e.store and { "down", "back" } or nil, e.store, "process " .. i .. ", store")
      assert.same(e.budget and { "down", "back" } or nil, e.budget, "process " .. i .. ", budget")
    end
  end)

  it("Redis unreachable from the start, there later: the same", function()
    once_each_way(faulted{ name = "Redis unreachable from the start", before = function(s) s:down() end,
                           heal = function(s) s:restart() end }, { "store", "budget" })
  end)

  it("Redis frozen (SIGSTOP) for 2 s, past the store's timeout: the same", function()
    local frozen
    finally(function() if frozen then sys.sh("kill -CONT " .. frozen) end end)
    once_each_way(faulted{ name = "Redis frozen",
                           fault = function(s) frozen = pid(s); sys.sh("kill -STOP " .. frozen) end,
                           heal = function() sys.sh("kill -CONT " .. frozen); frozen = nil end }, { "store", "budget" })
  end)

  -- ===== e: the journal in Redis =====

  it("runs one keyed create once for two processes at the same time (journal = true)", function()
    local function two(store)
      local acct = sim.account()
      local f = fleet()
      finally(function() f:close() end)
      local at = socket.gettime() + 0.3
      for _ = 1, 2 do
        f:spawn("run", vars(acct, { MEMBER_REDIS = URL, MEMBER_STORE = store, MEMBER_NAME = "fleet-rule",
                                    MEMBER_AT = at }))
      end
      assert.is_true(f:wait(30), "members did not finish")
      local got = {}
      for i, m in ipairs(f.members) do
        assert.equal("", sys.read(m.err))
        for _, l in ipairs(f:lines(m)) do if l.ok ~= nil then got[i] = l end end
      end
      return sim.stats(acct.key), got
    end
    local st, got = two(nil)
    assert.is_true(got[1].ok, cjson.encode(got[1]))
    assert.is_true(got[2].ok, cjson.encode(got[2]))
    assert.equal(1, st.created.acl_rule)
    assert.equal(got[1].id, got[2].id)
    local ctl = two("memory") -- each process its own journal: both send
    print(string.format("  keyed run in two processes: %d rule created with the journal in Redis, %d without",
      st.created.acl_rule, ctl.created.acl_rule or 0))
    assert.equal(2, ctl.created.acl_rule)
  end)
end)
