-- wait() on a virtual clock: its schedule, deadline, 404 tolerance, retries and callbacks.
local fake = require "helpers.fake"

local ID = fake.ID

local client = fake.client

local function statuses(list)
  local a = {}
  for i, s in ipairs(list) do
    a[i] = type(s) == "table" and s or { 200, fake.task_body(ID, s,
      s == "processing-error" and ',"response":{"error":{"type":"SUBSCRIPTION_PROVISION_FAILURE",' ..
        '"status":"400 BAD_REQUEST","description":"Provisioning failed"}}' or nil) }
  end
  return a
end

describe("wait", function()
  it("returns the final task once it is processing-completed", function()
    local c, tr = client(statuses({ "received", "processing-in-progress", "processing-completed" }))
    local t = assert(c:wait(ID))
    assert.is_true(t:ok())
    assert.equal(3, #tr.requests)
  end)

  it("calls on_update for the first status and each change, with the previous task", function()
    local seen = {}
    local c = client(statuses({ "received", "received", "processing-in-progress",
      "processing-in-progress", "processing-completed" }))
    assert(c:wait(ID, { on_update = function(t, prev)
      seen[#seen + 1] = (prev and prev.status or "nil") .. ">" .. t.status
    end }))
    assert.same({ "nil>received", "received>processing-in-progress",
      "processing-in-progress>processing-completed" }, seen)
  end)

  it("fails with kind task, the API error and the task on processing-error", function()
    local c = client(statuses({ "received", "processing-error" }))
    local t, err = c:wait(ID)
    assert.is_nil(t)
    assert.equal("task", err.kind)
    assert.equal("processing-error", err.task.status)
    assert.equal("SUBSCRIPTION_PROVISION_FAILURE", err.code)
    local line = tostring(err)
    assert.matches(ID, line, 1, true)
    assert.matches("SUBSCRIPTION_PROVISION_FAILURE: Provisioning failed", line, 1, true)
  end)

  it("fails on a status outside the spec instead of polling forever", function()
    local c, tr = client(statuses({ "received", "processing-paused" }))
    local _, err = c:wait(ID)
    assert.equal("task", err.kind)
    assert.matches("unknown status 'processing-paused'", err.message, 1, true)
    assert.equal(2, #tr.requests)
  end)

  it("polls on the Go SDK's schedule: 1s doubling to a 30s cap, plus at most 0.1s jitter", function()
    local c, _, clock = client(statuses({ "received" }))
    local _, err = c:wait(ID, { timeout = 200 })
    assert.equal("timeout", err.kind)
    local want = { 1, 2, 4, 8, 16, 30, 30, 30, 30, 30 }
    for i, w in ipairs(want) do
      assert.is_true(clock.slept[i] >= w and clock.slept[i] <= w + 0.1, "sleep " .. i .. " " .. clock.slept[i])
    end
  end)

  it("never sleeps past the deadline and returns the last task seen", function()
    local c, tr, clock = client(statuses({ "received", "processing-in-progress" }))
    local start = clock.t
    local _, err = c:wait(ID, { timeout = 10 })
    assert.equal("timeout", err.kind)
    assert.is_true(clock.t - start <= 10 + 1e-9)
    assert.equal("processing-in-progress", err.task.status)
    assert.equal(ID, err.task_id)
    assert.matches("last status processing-in-progress", tostring(err), 1, true)
    assert.is_true(#tr.requests >= 4)
  end)

  it("waits through the 404s of a task the task service has not seen yet", function()
    local c = client(statuses({ { 404, "" }, { 404, "" }, { 404, "" }, "received", "processing-completed" }))
    assert(c:wait(ID))
  end)

  it("gives up after five early 404s", function()
    local c, tr = client(statuses({ { 404, "" } }))
    local _, err = c:wait(ID)
    assert.equal("http", err.kind); assert.equal(404, err.status)
    assert.equal(ID, err.task_id)
    assert.equal(6, #tr.requests)
  end)

  it("treats a 404 after the task was seen as fatal", function()
    local c = client(statuses({ "received", { 404, "" } }))
    local _, err = c:wait(ID)
    assert.equal(404, err.status)
    assert.equal("received", err.task.status)
  end)

  it("retries 429, 502, 503, 504 and connection failures inside the deadline, each seen by on_retry", function()
    local attempts = {}
    local c = client(statuses({ { 429, "" }, { 502, "" }, { 503, "" }, { 504, "" },
      { err = { code = "CURLE_COULDNT_CONNECT", retryable = true, unsent = true } },
      "processing-completed" }), { retry = { on_retry = function(i) attempts[#attempts + 1] = i.attempt end } })
    assert(c:wait(ID))
    assert.same({ 1, 2, 3, 4, 5 }, attempts)
  end)

  it("stops at once on a 500 or 401", function()
    for _, st in ipairs({ 500, 401 }) do
      local c, tr = client(statuses({ { st, "" } }))
      local _, err = c:wait(ID)
      assert.equal(st, err.status); assert.equal(1, #tr.requests)
    end
  end)

  it("lets Retry-After stretch a poll beyond max_interval, but not past the deadline", function()
    local c, _, clock = client(statuses({ { 429, "", { ["retry-after"] = "45" } }, "processing-completed" }))
    assert(c:wait(ID, { max_interval = 5 }))
    assert.equal(45, clock.slept[1])
    c, _, clock = client(statuses({ { 429, "", { ["retry-after"] = "45" } }, "processing-completed" }))
    local _, err = c:wait(ID, { timeout = 20 })
    assert.equal("timeout", err.kind)
    assert.is_true(clock.slept[1] <= 20)
  end)

  it("wait_all names the failing list request when it times out on it", function()
    local c = client({ { 503, "" } })
    local out = c:wait_all({ ID, "a", "b" }, { timeout = 5 })
    assert.equal("timeout", out[1].err.kind)
    assert.matches("last error: HTTP 503", out[1].err.message, 1, true)
    assert.equal(503, out[3].err.cause.status)
  end)

  it("says it was the request budget that ended a wait before its deadline", function()
    local c, tr, clock = client(statuses({ "received", "received" }), { limiter = { limit = 1, window = 600 } })
    local _, err = c:wait(ID, { timeout = 60 })
    assert.equal("timeout", err.kind)
    assert.equal(1, #tr.requests)
    assert.matches("last error: request budget exhausted before the deadline", err.message, 1, true)
    assert.is_true(clock.t < 1000 + 60, "it ends as soon as the budget cannot make the deadline, not at it")
  end)

  it("raises on unknown or ill-typed options", function()
    local c = client(statuses({ "processing-completed" }))
    assert.has_error(function() c:wait(ID, { timout = 5 }) end, "rctasks.wait: unknown option 'timout'")
    assert.has_error(function() c:wait(ID, { timeout = "5" }) end)
    assert.has_error(function() c:wait(ID, { on_update = 1 }) end)
  end)

  it("propagates an error raised by on_update", function()
    local c = client(statuses({ "received" }))
    assert.has_error(function() c:wait(ID, { on_update = function() error("stop here") end }) end)
  end)
end)
