-- A fleet inside a real nginx on the suite's Redis: its 2 workers and a plain Lua process
-- (spec/helpers/member.lua) keep to one request budget of the account together, and background
-- waits recorded in Redis survive a full stop of nginx: a new nginx finishes every one of them.
local socket = require "socket"
local H = require "ngx.harness"
local R = require "helpers.redis"
local sim = require "helpers.sim"

local URL = R.url()
local L, W = 20, 2

local function conf()
  return H.config{
    workers = 2, reuseport = true,
    main = "env RCTASKS_NGX_KEY; env RCTASKS_NGX_SECRET; env RCTASKS_NGX_URL; env RCTASKS_REDIS_URL; "
      .. "env RCTASKS_NGX_LIMIT;",
    http = "  init_worker_by_lua_block { require('fleet_handlers').serve() }",
    server = table.concat({
      "    location = /fleet-load { content_by_lua_block { require('fleet_handlers').load() } }",
      "    location = /fleet-spawn { content_by_lua_block { require('fleet_handlers').spawn() } }",
      "    location = /fleet-result { content_by_lua_block { require('fleet_handlers').result() } }",
    }, "\n"),
  }
end

local function start(acct)
  local stage = {}
  for i, part in ipairs(H.STAGE) do stage[i] = part end
  stage[#stage + 1] = "spec/ngx/fleet_handlers.lua"
  return H.start(conf(), { stage = stage, env = { RCTASKS_NGX_KEY = acct.key, RCTASKS_NGX_SECRET = acct.secret,
    RCTASKS_NGX_URL = sim.url(), RCTASKS_REDIS_URL = URL, RCTASKS_NGX_LIMIT = L .. "/" .. W } })
end

describe("nginx in a fleet on Redis", function()
  if not URL then
    pending("RCTASKS_REDIS_URL is not set: start one with scripts/redis start DIR (make test does)")
    return
  end

  it("shares one budget between its workers and a plain Lua process: no 429, no window over L", function()
    local acct = sim.account({ rate_limit = L, rate_window = W })
    local task = sim.task(acct.key, { queue = false })
    local srv = start(acct)
    finally(function() srv:stop() end)
    local f = require("helpers.members").new()
    finally(function() f:close() end)
    local secs = 3 * W
    local t0 = socket.gettime()
    f:spawn("gets", { MEMBER_KEY = acct.key, MEMBER_SECRET = acct.secret, MEMBER_URL = sim.url(), MEMBER_REDIS = URL,
                      MEMBER_LIMIT = L .. "/" .. W, MEMBER_TASK = task, MEMBER_UNTIL = t0 + secs })
    local conns = {}
    for i = 1, 6 do conns[i] = H.open(srv, "/fleet-load?task=" .. task .. "&secs=" .. secs) end
    local by_worker = {}
    for i = 1, 6 do
      local status, body = H.finish(conns[i])
      assert.equal(200, status, body)
      local v = sim.decode(body)
      by_worker[v.worker] = (by_worker[v.worker] or 0) + v.sent
      assert.equal(0, v.failed)
    end
    assert.is_true(f:wait(20), "the process did not finish")
    local lines = f:lines(f.members[1])
    local process = lines[#lines].sent
    local st = sim.stats(acct.key, { window = W })
    print(string.format("\n  nginx (workers %s) and a process on one budget (%d per %g s, %g s): %d requests "
      .. "(process %d), busiest window %d, %d 429s", require("cjson").encode(by_worker), L, W, secs, st.requests,
      process, st.busiest.requests, st.rate_limited))
    assert.equal(0, st.rate_limited)
    assert.is_true(st.busiest.requests <= L, st.busiest.requests .. " requests within " .. W .. " s")
    assert.is_true(st.requests >= 0.8 * L * secs / W, st.requests .. " requests: the budget went unused")
    assert.is_true(process >= 1, "the process sent nothing")
    assert.is_nil(H.log(srv):find("[error]", 1, true), H.log(srv))
  end)

  it("finishes background waits recorded in Redis after a full stop and start of nginx", function()
    local acct = sim.account({ step = 2 })
    local ids = {}
    for i = 1, 6 do ids[i] = sim.task(acct.key, { queue = false, outcome = i == 6 and "error" or nil }) end
    local list = table.concat(ids, ",")
    local srv = start(acct)
    local stopped = false
    finally(function() if not stopped then srv:stop() end end)
    assert.equal(202, (srv:post("/fleet-spawn?ids=" .. list)))
    socket.sleep(1)
    local _, before = srv:get("/fleet-result?ids=" .. list)
    for i, st in ipairs(before.states) do assert.equal("waiting", st, "task " .. i .. " before the stop") end
    local pid = H.read(srv.dir .. "/logs/nginx.pid"):match("%d+")
    srv:stop()
    stopped = true
    assert.is_false(os.execute("kill -0 " .. pid .. " 2>/dev/null") == true, "the old nginx still runs")
    local again = start(acct) -- a new nginx: its own prefix, port and workers; only Redis is the same
    finally(function() again:stop() end)
    local t0 = socket.gettime()
    local states
    repeat
      socket.sleep(0.2)
      local status, v = again:get("/fleet-result?ids=" .. list)
      assert.equal(200, status)
      states = v.states
      local waiting = 0
      for _, st in ipairs(states) do if st ~= "completed" and st ~= "failed" then waiting = waiting + 1 end end
    until waiting == 0 or socket.gettime() - t0 > 30
    print(string.format("  background waits across a full nginx stop and start: %s, %.1f s after the start",
      table.concat(states, " "), socket.gettime() - t0))
    for i, st in ipairs(states) do assert.equal(i == 6 and "failed" or "completed", st, "task " .. i) end
  end)
end)
