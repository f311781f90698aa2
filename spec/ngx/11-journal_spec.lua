-- Keyed runs inside nginx, with the journal and its locks in the workers' shared dict
-- (journal = true on a shdict store): two workers running one key at once send one request, and a
-- run waiting for another's lock waits on cosockets and timers, never blocking its worker.
local sim = require "helpers.sim"
local H = require "ngx.harness"
local socket = require "socket"

describe("the journal inside nginx", function()
  local srv, acct

  setup(function()
    acct = sim.account({ step = 0.3 })
    srv = H.start(H.config{
      workers = 2,
      main = "env RCTASKS_NGX_KEY; env RCTASKS_NGX_SECRET; env RCTASKS_NGX_URL;",
      http = "  lua_shared_dict rctasks 4m;",
      server = table.concat({
        "    location = /journal-run { content_by_lua_block { require('handlers').journal_run() } }",
        "    location = /ping { content_by_lua_block { require('handlers').ping() } }",
      }, "\n"),
    }, { env = { RCTASKS_NGX_KEY = acct.key, RCTASKS_NGX_SECRET = acct.secret, RCTASKS_NGX_URL = sim.url() } })
  end)

  teardown(function() if srv then srv:stop() end end)

  it("sends one create for one key, however many workers run it at once", function()
    local conns = {}
    for i = 1, 6 do conns[i] = srv:open("/journal-run?key=rule&name=from-nginx") end
    local ids, workers = {}, {}
    for i = 1, 6 do
      local status, body = H.finish(conns[i])
      assert.equal(200, status)
      local v = assert(sim.decode(body))
      assert.is_nil(v.err, v.err and v.err.message)
      ids[v.id] = true
      workers[v.worker] = true
    end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equal(1, n)
    assert.equal(1, sim.stats(acct.key).by_route["POST /v1/acl/redisRules"])
    assert.is_true(next(workers) ~= nil)
  end)

  it("keeps the worker serving while a run waits for the subscription's lock", function()
    -- a change to subscription 9 waits for the lock the first request's change holds (the
    -- subscription does not exist: each change ends as the API says, after its wait)
    local c1 = srv:open("/journal-run?key=a&method=PUT&path=/subscriptions/9/databases/1")
    local c2 = srv:open("/journal-run?key=b&method=PUT&path=/subscriptions/9/databases/2")
    local worst = 0
    local t_end = socket.gettime() + 1
    while socket.gettime() < t_end do
      local t0 = socket.gettime()
      assert.equal(200, (srv:get("/ping")))
      worst = math.max(worst, socket.gettime() - t0)
      socket.sleep(0.05)
    end
    for _, c in ipairs({ c1, c2 }) do
      local status, body = H.finish(c)
      assert.equal(200, status)
      local v = assert(sim.decode(body))
      assert.equal("SUBSCRIPTION_NOT_FOUND", v.err.code)
    end
    assert.is_true(worst < 0.5, "a /ping took " .. worst .. " s")
  end)
end)
