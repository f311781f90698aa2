-- The retry rules and the request limiter, through libcurl against the simulator's faults and
-- its own rate limit.
local rctasks = require "rctasks"
local core = require "rctasks.core"
local sim = require "helpers.sim"

local FAST_RETRY = { base = 0.02, max_delay = 0.1, busy_base = 0.02, busy_max_delay = 0.1 }

-- A client on a fresh account; `retries` collects what on_retry saw.
local function fresh(cfg, retry, extra)
  local acct = sim.account(cfg)
  local retries = {}
  local policy = { on_retry = function(info) retries[#retries + 1] = info end }
  for k, v in pairs(FAST_RETRY) do policy[k] = v end
  for k, v in pairs(retry or {}) do policy[k] = v end
  local opts = { api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), retry = policy }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return rctasks.new(opts), acct, retries
end

local function route(acct, name) return sim.stats(acct.key).by_route[name] or 0 end

describe("retries against the simulator", function()
  it("retries a 429 without Retry-After after a jittered backoff, and reports it to on_retry", function()
    local c, acct, retries = fresh()
    local id = sim.task(acct.key, {})
    sim.faults(acct.key, { { kind = "status", status = 429, body = "json" } })
    assert(c:get(id))
    assert.equal(1, #retries)
    assert.equal(429, retries[1].error.status)
    assert.is_nil(retries[1].error.retry_after)
    assert.is_true(retries[1].delay >= 0 and retries[1].delay <= FAST_RETRY.busy_base)
    assert.equal(2, sim.stats(acct.key).requests)
  end)

  it("waits what the sim's own 429 says in Retry-After, then gets through", function()
    -- 2 requests a second, then 429 with Retry-After: 1; the client's limiter is off to earn it
    local c, acct, retries = fresh({ rate_limit = 2, rate_window = 1, retry_after = 1 }, nil, { limiter = false })
    local id = sim.task(acct.key, {})
    assert(c:get(id)); assert(c:get(id))
    local t0 = core.now()
    assert(c:get(id))
    assert.is_true(core.now() - t0 >= 0.9)
    assert.equal(1, #retries)
    assert.equal(429, retries[1].error.status)
    assert.equal(1, retries[1].delay)
    assert.equal(1, sim.stats(acct.key).rate_limited)
  end)

  it("rides out a burst of 503s shorter than the attempt budget", function()
    local c, acct, retries = fresh(nil, { attempts = 4 })
    local id = sim.task(acct.key, {})
    sim.faults(acct.key, { { kind = "status", status = 503, times = 3 } })
    local t = assert(c:get(id))
    assert.equal(id, t.taskId)
    assert.equal(3, #retries)
    for i, r in ipairs(retries) do assert.equal(i, r.attempt); assert.equal(503, r.error.status) end
    assert.equal(4, sim.stats(acct.key).requests)
  end)

  it("gives up on a 503 burst longer than the attempt budget with the last 503", function()
    local c, acct = fresh(nil, { attempts = 3 })
    local id = sim.task(acct.key, {})
    sim.faults(acct.key, { { kind = "status", status = 503, times = 10 } })
    local t, err = c:get(id)
    assert.is_nil(t)
    assert.equal("http", err.kind); assert.equal(503, err.status); assert.is_true(err.retryable)
    assert.equal(3, sim.stats(acct.key).requests)
  end)

  it("retries a GET whose connection was reset, before or in the middle of the answer", function()
    for _, kind in ipairs({ "reset", "reset_mid" }) do
      local c, acct, retries = fresh()
      local id = sim.task(acct.key, {})
      sim.faults(acct.key, { { kind = kind } })
      assert(c:get(id))
      assert.equal(1, #retries)
      assert.equal("transport", retries[1].error.kind)
      assert.equal(2, route(acct, "GET /v1/tasks/{id}"))
    end
  end)

  it("waits a task through resets, 502s and 504s between polls", function()
    local c, acct = fresh({ step = 0.05 })
    local id = sim.task(acct.key, {})
    sim.faults(acct.key, { { kind = "reset" }, { kind = "status", status = 502 }, { kind = "status", status = 504 } })
    local t = assert(c:wait(id, { interval = 0.02, max_interval = 0.05, jitter = 0, timeout = 10 }))
    assert.is_true(t:ok())
    assert.equal(3, sim.stats(acct.key).faults)
  end)

  it("does not resend a POST that may have reached the server (reset, 503)", function()
    for _, f in ipairs({ { kind = "reset" }, { kind = "status", status = 503 } }) do
      local c, acct, retries = fresh()
      sim.faults(acct.key, { f })
      local t, err = c:submit("POST", "/subscriptions", { name = "once" })
      assert.is_nil(t)
      assert.is_true(err.retryable) -- worth retrying for a GET, but not for this POST
      assert.equal(0, #retries)
      assert.equal(1, route(acct, "POST /v1/subscriptions"))
      assert.equal(0, #assert(c:request("GET", "/subscriptions")).subscriptions)
    end
  end)

  it("resends a POST the server refused unprocessed (429), or any POST with retry_post", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 429, body = "json" } })
    assert(c:submit("POST", "/subscriptions", { name = "after-429" }))
    assert.equal(2, route(acct, "POST /v1/subscriptions"))

    local c2, acct2 = fresh(nil, { retry_post = true })
    sim.faults(acct2.key, { { kind = "status", status = 503 } })
    assert(c2:submit("POST", "/subscriptions", { name = "opted-in" }))
    assert.equal(2, route(acct2, "POST /v1/subscriptions"))
  end)

  it("never retries a 400, 401 or 500", function()
    for _, st in ipairs({ 400, 401, 500 }) do
      local c, acct, retries = fresh()
      local id = sim.task(acct.key, {})
      sim.faults(acct.key, { { kind = "status", status = st } })
      local _, err = c:get(id)
      assert.equal(st, err.status)
      assert.equal(0, #retries)
      assert.equal(1, route(acct, "GET /v1/tasks/{id}"))
    end
  end)
end)

describe("the limiter against the simulator", function()
  -- The sim counts a fixed window from its first request; the client's sliding window is a bit
  -- longer so that loopback jitter cannot move a send into the sim's next window.
  local SIM = { rate_limit = 4, rate_window = 0.5 }

  it("keeps a burst of requests within a small budget: the sim never answers 429", function()
    local sent = {} -- when each request left, recorded by the transport
    local curl = require("rctasks.transport.curl").new()
    local recorder = { request = function(_, req) sent[#sent + 1] = core.now(); return curl:request(req) end }
    local c, acct = fresh(SIM, nil, { retry = false, limiter = { limit = 4, window = 0.6 }, transport = recorder })
    local id = sim.task(acct.key, {})
    for _ = 1, 10 do assert(c:get(id)) end
    curl:close()
    local st = sim.stats(acct.key)
    assert.equal(0, st.rate_limited)
    assert.equal(10, st.requests)
    for i = 5, 10 do -- any 5 consecutive requests span at least the client's window
      assert.is_true(sent[i] - sent[i - 4] >= 0.59, "5 requests within " .. (sent[i] - sent[i - 4]) .. "s")
    end
  end)

  it("is what keeps the sim from answering 429: the same burst without it is refused", function()
    local c, acct = fresh(SIM, nil, { retry = false, limiter = false })
    local id = sim.task(acct.key, {})
    local refused = 0
    for _ = 1, 10 do
      local _, err = c:get(id)
      if err and err.status == 429 then refused = refused + 1 end
    end
    assert.is_true(refused > 0)
    assert.equal(refused, sim.stats(acct.key).rate_limited)
  end)

  it("holds sends until the window has passed when the server says X-Rate-Limit-Remaining: 0", function()
    -- budget 3 per 1.5 s on the sim: the 3rd answer says 0 remaining; the client (its own budget
    -- 100 per 1.5 s) holds the 4th send until its window has passed, and the sim takes it
    local c, acct = fresh({ rate_limit = 3, rate_window = 1.5 }, nil, { retry = false,
      limiter = { limit = 100, window = 1.5 } })
    local id = sim.task(acct.key, {})
    assert(c:get(id)); assert(c:get(id)); assert(c:get(id))
    local t0 = core.now()
    assert(c:get(id))
    assert.is_true(core.now() - t0 >= 1.4, "held " .. (core.now() - t0) .. " s")
    assert.equal(0, sim.stats(acct.key).rate_limited)
  end)
end)
