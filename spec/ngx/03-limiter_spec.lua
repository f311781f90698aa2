-- One request budget per account across nginx workers: the limiter in an ngx.shared.DICT.
local sim = require "helpers.sim"
local H = require "ngx.harness"

describe("the shared limiter across 2 nginx workers", function()
  local srv

  setup(function()
    srv = H.start(H.config{
      workers = 2,
      reuseport = true, -- the kernel spreads connections over both workers
      http = "  lua_shared_dict rctasks 1m;",
      server = "    location = /gets { content_by_lua_block { require('handlers').gets() } }",
    })
  end)

  teardown(function() if srv then srv:stop() end end)

  -- `n` concurrent requests to nginx, one task GET each, for an account limited to 10 per 2 s.
  local function drive(n, extra)
    local a = sim.account({ rate_limit = 10, rate_window = 2 })
    local id = sim.task(a.key, {})
    local conns = {}
    for i = 1, n do conns[i] = H.open(srv, "/gets?n=1&id=" .. id, H.account_headers(a, extra)) end
    local ok, workers, failures = 0, {}, {}
    for i = 1, n do
      local status, body = H.finish(conns[i])
      assert.equal(200, status)
      local v = sim.decode(body)
      ok = ok + v.ok
      workers[v.worker] = true
      for _, f in ipairs(v.failures) do failures[#failures + 1] = f end
    end
    return ok, workers, sim.stats(a.key), failures
  end

  it("keeps all workers together under the budget: no 429 from the server", function()
    local ok, workers, stats, failures = drive(24, { ["x-test-limit"] = "10/2" })
    assert.is_true(workers[0] and workers[1], "both workers must have served requests")
    assert.equal(24, ok, table.concat(failures, "; "))
    assert.equal(24, stats.requests)
    assert.equal(0, stats.rate_limited)
  end)

  it("with only per-worker limiters the same load overruns the budget (the control)", function()
    local _, workers, stats = drive(24, { ["x-test-local-limit"] = "10/2", ["x-test-retry"] = "off" })
    assert.is_true(workers[0] and workers[1], "both workers must have served requests")
    assert.truthy(stats.rate_limited > 0, "expected 429s without the shared budget")
  end)
end)
