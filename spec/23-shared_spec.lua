-- Many clients of one account sharing a coordination store (played in one process: each client a
-- coroutine on one virtual clock, see spec/helpers/fleet.lua; the same code runs across processes
-- and hosts on a Redis store, spec/28-fleet_redis_spec.lua): one poll per task however many wait
-- on it, a poller that dies is replaced, every caller gets the same outcome, one request budget,
-- and a store that fails makes nobody fail.
local rctasks = require "rctasks"
local cjson = require "cjson"
local fleetmod = require "helpers.fleet"
local memory = require "rctasks.store.memory"

local KEY, SECRET = "fleet-account-key-0123", "fleet-secret-key-0123"

-- Tasks t1..tN that complete at `ends[id]` on the fleet's clock.
local function api(ends)
  local function task(id, now)
    local status = now >= ends[id] and "processing-completed" or "processing-in-progress"
    return { taskId = id, status = status, commandType = "subscriptionCreateRequest",
             response = status == "processing-completed" and { resourceId = 100 } or nil }
  end
  return function(req, fleet)
    local id = req.url:match("/tasks/([%w%-]+)$")
    if id then
      if not ends[id] then return { 404, "" } end
      return { 200, cjson.encode(task(id, fleet.t)) }
    end
    if req.url:find("/tasks$") then
      local list = {}
      for tid in pairs(ends) do list[#list + 1] = task(tid, fleet.t) end
      return { 200, cjson.encode({ tasks = list }) }
    end
    return { 404, "" }
  end
end

local function shared_store(fleet)
  local st = memory.new{ now = fleet.now }
  st.shared = true -- a stand-in for a store other processes see (shdict, Redis)
  return st
end

-- A store the clients share, read through current() (a spec may swap it for an emptied one); while
-- down() says so, every call fails as an unreachable server's would.
local function flaky(current, down)
  return setmetatable({ shared = true }, { __index = function(_, k)
    local f = current()[k]
    if type(f) ~= "function" then return f end
    return function(_, ...)
      if down and down() then return nil, "connection refused" end
      return f(current(), ...)
    end
  end })
end

local function client(fleet, tr, st, extra)
  local o = { api_key = KEY, secret_key = SECRET, base_url = "https://api.example.test/v1", transport = tr,
              now = fleet.now, sleep = fleet.sleep, store = st, limiter = false }
  for k, v in pairs(extra or {}) do o[k] = v end
  return rctasks.new(o)
end

describe("clients sharing a store", function()
  it("poll each task once per round, however many wait on it, and all get the same task", function()
   for seed = 1, 10 do -- the schedule's jitter is random: ten seeds, each its own handovers
    math.randomseed(seed)
    local fleet = fleetmod.new()
    local ends = {}
    for i = 1, 20 do ends["t" .. i] = fleet.t + 30 + i end
    local tr, st = fleet:transport(api(ends)), shared_store(fleet)
    local got = {}
    for w = 1, 100 do -- 100 waiters, 5 on each task, in 4 "processes" (clients)
      local c = client(fleet, tr, st)
      fleet:spawn(function()
        local id = "t" .. ((w - 1) % 20 + 1)
        local t = assert(c:wait(id, { timeout = 600 }))
        got[#got + 1] = t
      end)
    end
    fleet:run()
    assert.equal(100, #got)
    for _, t in ipairs(got) do assert.equal("processing-completed", t.status) end
    -- per second of the clock: a round is one GET /tasks (20 tasks watched), never 100 requests
    local worst = 0
    for s = 1000, 1100 do worst = math.max(worst, fleet:count(s, s + 1)) end
    assert.is_true(worst <= 3, "seed " .. seed .. ": a second held " .. worst .. " requests")
    assert.is_true(#fleet.requests < 40, #fleet.requests .. " requests in all")
    -- the store names the account by the SHA-256 of its key, and holds neither key anywhere
    local account = require("rctasks.core").sha256(KEY)
    assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      require("rctasks.core").sha256("abc"))
    for k, v in pairs(st.data) do
      assert.is_truthy(k:find(account, 1, true), k)
      for _, s in ipairs({ k, v }) do
        assert.is_nil(s:find(KEY, 1, true)); assert.is_nil(s:find(SECRET, 1, true))
      end
    end
   end
  end)

  it("without the store, the same waiters poll about once each per round (the control)", function()
    local fleet = fleetmod.new()
    local ends = {}
    for i = 1, 20 do ends["t" .. i] = fleet.t + 30 + i end
    local tr = fleet:transport(api(ends))
    for w = 1, 100 do
      local c = client(fleet, tr, nil)
      fleet:spawn(function() assert(c:wait("t" .. ((w - 1) % 20 + 1), { timeout = 600 })) end)
    end
    fleet:run()
    assert.is_true(#fleet.requests >= 500, #fleet.requests .. " requests")
  end)

  it("takes the poll over when the poller dies (its lease, then a follower's read), and all still finish", function()
    local fleet = fleetmod.new()
    local ends = { t1 = fleet.t + 100 }
    local tr, st = fleet:transport(api(ends)), shared_store(fleet)
    local done = 0
    local first = fleet:spawn(function() client(fleet, tr, st):wait("t1", { timeout = 600 }) end)
    for _ = 1, 3 do
      local c = client(fleet, tr, st)
      fleet:spawn(function() assert(c:wait("t1", { timeout = 600 })); done = done + 1 end, fleet.t + 0.5)
    end
    fleet:run(fleet.t + 10) -- the first waiter leads...
    fleet:kill(first)       -- ...and its process dies
    local died = fleet.t
    fleet:run()
    assert.equal(3, done)
    local gap = 0
    local last = died
    for _, r in ipairs(fleet.requests) do
      if r.at >= died then gap = math.max(gap, r.at - last); last = r.at end
    end
    -- the dead poller's lease covered its next sleep (at most 30 s) and 5 s; a follower reads every 5 s
    assert.is_true(gap <= 30 + 5 + 5 + 1, "no poll for " .. gap .. " s after the poller died")
  end)

  it("polls alone, and says so once, while the store fails; sharing resumes after", function()
    local fleet = fleetmod.new()
    local ends = { t1 = fleet.t + 60 }
    local tr, st = fleet:transport(api(ends)), shared_store(fleet)
    local down = true
    local store = flaky(function() return st end, function() return down end)
    local events = {}
    local c = client(fleet, tr, store, { on_event = function(kind, msg) events[#events + 1] = { kind, msg } end })
    fleet:spawn(function() assert(c:wait("t1", { timeout = 600 })) end)
    fleet:spawn(function() down = false end, fleet.t + 20)
    fleet:run()
    assert.equal(2, #events, cjson.encode(events))
    assert.equal("store", events[1][1]); assert.matches("polling alone", events[1][2], 1, true)
    assert.is_nil(events[2][2]) -- works again
  end)

  it("share one request budget: no window sees more than the limit from all clients together", function()
    local fleet = fleetmod.new()
    local ends = { t1 = math.huge }
    local tr, st = fleet:transport(api(ends)), shared_store(fleet)
    for _ = 1, 4 do
      local c = client(fleet, tr, st, { limiter = nil })
      local l = { limit = 5, window = 10 }
      c = client(fleet, tr, st, { limiter = rctasks.limiter.stored{ store = st, key = "acct", limit = l.limit,
                                                                    window = l.window, margin = 0 } })
      fleet:spawn(function() for _ = 1, 10 do c:get("t1") end end)
    end
    fleet:run()
    assert.equal(40, #fleet.requests)
    for i = 1, #fleet.requests - 5 do
      assert.is_true(fleet.requests[i + 5].at - fleet.requests[i].at >= 10 - 1e-9, "6 sends within a window")
    end
  end)

  it("keeps to a local share of the budget while the store fails: never unlimited, never stopped", function()
    local fleet = fleetmod.new()
    local st = shared_store(fleet)
    local down = false
    local store = flaky(function() return st end, function() return down end)
    local limiters = {}
    for i = 1, 4 do
      limiters[i] = rctasks.limiter.stored{ store = store, key = "acct", limit = 20, window = 10, margin = 0 }
      limiters[i]:acquire(fleet.t) -- each says it shares the budget
    end
    for i = 1, 4 do limiters[i].next_beat = -math.huge; limiters[i]:acquire(fleet.t) end -- and counts the others
    down = true
    local sent = 0
    for _ = 1, 100 do if limiters[1]:acquire(fleet.t + 1) == 0 then sent = sent + 1 end end
    assert.is_true(sent >= 1 and sent <= 5, sent .. " sends: a quarter of the budget, 4 clients sharing it")
  end)

  it("counts in its local share the sends the store allowed, only those, and keeps them as the share changes",
     function()
    local fleet = fleetmod.new()
    local st = shared_store(fleet)
    local down = false
    local store = flaky(function() return st end, function() return down end)
    local a = rctasks.limiter.stored{ store = store, key = "acct", limit = 20, window = 10, margin = 0 }
    local others = {}
    for i = 1, 3 do
      others[i] = rctasks.limiter.stored{ store = store, key = "acct", limit = 20, window = 10, margin = 0 }
    end
    local sent, refused = 0, 0
    for _ = 1, 30 do -- a alone at first: the whole budget is its to spend, and the store refuses the rest
      if a:acquire(fleet.t) == 0 then sent = sent + 1 else refused = refused + 1 end
    end
    assert.same({ 20, 10 }, { sent, refused })
    for i = 1, 3 do others[i]:acquire(fleet.t + 1) end -- three more clients join: a's share is now 5
    a.next_beat = -math.huge
    a:acquire(fleet.t + 1)
    assert.equal(4, a.members)
    down = true -- its 20 sends (not the 10 refused ones) are in its share's log: nothing more this window
    local wait = a:acquire(fleet.t + 2)
    assert.is_true(wait > 0, "a sent its whole share already")
    assert.is_true(wait <= 10 / 4, "it asks the store again within a quarter window, not " .. wait .. " s later")
    local later = 0
    for _ = 1, 50 do if a:acquire(fleet.t + 10.5) == 0 then later = later + 1 end end
    assert.equal(5, later) -- a window on, its share of 5 and no more
  end)

  it("counts the clients that only read what another polls: when the store fails each keeps to limit / clients",
     function()
    local fleet = fleetmod.new()
    local ends = { t1 = fleet.t + 60 }
    local tr, st = fleet:transport(api(ends)), shared_store(fleet)
    local down = false
    local store = flaky(function() return st end, function() return down end)
    local events = {}
    for i = 1, 4 do
      events[i] = {}
      local c = client(fleet, tr, store, { limiter = { limit = 20, window = 10 },
        on_event = function(kind, msg) if kind == "budget" then table.insert(events[i], msg or "back") end end })
      fleet:spawn(function() assert(c:wait("t1", { timeout = 600 })) end, fleet.t + i * 0.1)
    end
    fleet:spawn(function() down = true end, fleet.t + 20)
    fleet:spawn(function() down = false end, fleet.t + 40)
    fleet:run()
    for i = 1, 4 do -- the poller and the three that only read: each a quarter, each told once each way
      assert.equal(2, #events[i], cjson.encode(events[i]))
      assert.matches("keeps to 5 requests per", events[i][1], 1, true)
      assert.equal("back", events[i][2])
    end
  end)

  it("keeps each client to its share for a window after the store comes back, or is found emptied", function()
    local fleet = fleetmod.new()
    local st = shared_store(fleet)
    local view = flaky(function() return st end)
    local limiters = {}
    for i = 1, 4 do
      limiters[i] = rctasks.limiter.stored{ store = view, key = "acct", limit = 20, window = 10, margin = 0 }
      limiters[i]:acquire(fleet.t)
    end
    for i = 1, 4 do limiters[i].next_beat = -math.huge; limiters[i]:acquire(fleet.t + 1) end -- each counts 4
    st = shared_store(fleet) -- restarted without its data: the budget's log of the last window is gone
    local function sends(l, at)
      local n = 0
      for _ = 1, 50 do if l:acquire(at) == 0 then n = n + 1 end end
      return n
    end
    assert.equal(3, sends(limiters[1], fleet.t + 4)) -- its share of 5, less the 2 it sent this window
    assert.is_true(sends(limiters[1], fleet.t + 15) > 5, "a window on, the store decides again")
  end)

  it("lets others run every 256 tasks of a long round (inside nginx: a 1 ms sleep)", function()
    local fleet = fleetmod.new()
    local pauses = 0
    local b = require("rctasks.board").new(shared_store(fleet), "acct",
                                           { lease = 35, pause = function() pauses = pauses + 1 end })
    local ids = {}
    for i = 1, 1000 do ids[i] = "t" .. i end
    assert.is_true(b:interest(ids, 60))
    assert.equal(3, pauses) -- 1000 interests: after the 256th, 512th and 768th
  end)

  it("keeps to `share` of the budget when the store never answered (default a quarter), then limit/clients", function()
    local down = { shared = true, budget = function() return nil, "down" end, set = function() return nil, "down" end,
                   keys = function() return nil, "down" end, budget_used = function() return nil, "down" end }
    for _, case in ipairs({ { nil, 100 }, { 0.5, 200 }, { 1, 400 } }) do
      local l = rctasks.limiter.stored{ store = down, key = "acct", limit = 400, window = 10, margin = 0,
                                        share = case[1] }
      local sent = 0
      for _ = 1, 1000 do if l:acquire(1000) == 0 then sent = sent + 1 end end
      assert.equal(case[2], sent)
    end
    assert.has_error(function() rctasks.limiter.stored{ store = down, share = 0 } end,
      "rctasks.limiter.stored: share must be in (0, 1]")
  end)
end)
