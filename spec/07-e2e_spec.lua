-- get, list and wait end to end: the real libcurl transport against the local simulator.
local rctasks = require "rctasks"
local core = require "rctasks.core"
local sim = require "helpers.sim"

local FAST = { interval = 0.02, max_interval = 0.1, jitter = 0 }

local function fresh(cfg, extra)
  local acct = sim.account(cfg)
  local opts = { api_key = acct.key, secret_key = acct.secret, base_url = sim.url() }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return rctasks.new(opts), acct
end

local function opts(more)
  local o = {}
  for k, v in pairs(FAST) do o[k] = v end
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

describe("against the simulator", function()
  it("waits a task through its statuses to processing-completed, with an integer resourceId", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, { commandType = "databaseCreateRequest", resourceId = 51055029 })
    local seen = {}
    local t = assert(c:wait(id, opts({ timeout = 10, on_update = function(x) seen[#seen + 1] = x.status end })))
    assert.is_true(t:ok())
    assert.equal(51055029, t:resource_id())
    if math.type then assert.equal("integer", math.type(t:resource_id())) end
    assert.equal("processing-completed", seen[#seen])
    assert.is_true(#seen >= 2)
    assert.is_number(t:time())
  end)

  it("provisions a subscription: POST answers a task whose completion links the resource", function()
    local c = fresh()
    local answer = assert(c:request("POST", "/subscriptions", '{"name":"e2e"}'))
    local id = answer.taskId
    local t = assert(c:wait(id, opts({ timeout = 10 })))
    assert.is_number(t:resource_id())
    assert.matches("/subscriptions/" .. t:resource_id() .. "$", t:link("resource"))
  end)

  it("reports processing-error as kind task with the API's error type and the task id", function()
    local c, acct = fresh({ outcomes = { "error" } })
    local id = sim.task(acct.key, {})
    local t, err = c:wait(id, opts({ timeout = 10 }))
    assert.is_nil(t)
    assert.equal("task", err.kind)
    assert.is_string(err.code)
    assert.equal("processing-error", err.task.status)
    assert.matches(id, tostring(err), 1, true)
    assert.matches(err.code, tostring(err), 1, true)
  end)

  it("ends the wait on a status the spec does not know", function()
    local c, acct = fresh({ outcomes = { "status:processing-paused" } })
    local _, err = c:wait(sim.task(acct.key, {}), opts({ timeout = 10 }))
    assert.equal("task", err.kind)
    assert.equal("processing-paused", err.task.status)
  end)

  it("times out at the deadline on a task that never ends, with the last task seen", function()
    local c, acct = fresh({ outcomes = { "stuck" } })
    local id = sim.task(acct.key, {})
    local t0 = core.now()
    local _, err = c:wait(id, opts({ timeout = 0.4 }))
    local took = core.now() - t0
    assert.equal("timeout", err.kind)
    assert.equal(id, err.task_id)
    assert.is_table(err.task)
    assert.is_true(took >= 0.35 and took < 3, "took " .. took)
  end)

  it("waits through the early 404s of a brand-new task", function()
    local c, acct = fresh({ lag = 0.3 })
    local id = sim.task(acct.key, {})
    local _, err404 = c:get(id)
    assert.equal(404, err404.status)
    assert(c:wait(id, opts({ interval = 0.1, timeout = 10 })))
  end)

  it("rides out a 429 with Retry-After, then succeeds", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, {})
    sim.faults(acct.key, { { kind = "status", status = 429, body = "json", retry_after = "1" } })
    local t0 = core.now()
    assert(c:get(id))
    assert.is_true(core.now() - t0 >= 0.9)
  end)

  it("reuses one connection for successive requests (keep-alive)", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, {})
    for _ = 1, 20 do assert(c:get(id)) end
    assert(c:list())
    local st = sim.stats(acct.key)
    assert.equal(1, st.connections)
    assert.is_true(st.requests >= 21)
  end)

  it("lists the account's tasks, most recent first", function()
    local c, acct = fresh()
    local a = sim.task(acct.key, {})
    local b = sim.task(acct.key, {})
    local list = assert(c:list())
    assert.equal(2, #list)
    assert.equal(b, list[1].taskId); assert.equal(a, list[2].taskId)
  end)

  it("answers an unknown task with a 404 error that names it and never the keys", function()
    local c, acct = fresh()
    local id = "00000000-0000-4000-8000-000000000000"
    local _, err = c:get(id)
    assert.equal(404, err.status)
    local line = tostring(err)
    assert.matches(id, line, 1, true)
    assert.not_matches(acct.key, line, 1, true); assert.not_matches(acct.secret, line, 1, true)
  end)

  it("reports a wrong secret as HTTP 401 with nginx's page title", function()
    local _, acct = fresh()
    sim.task(acct.key, {}) -- binds the real secret
    local bad = rctasks.new{ api_key = acct.key, secret_key = "not-the-secret", base_url = sim.url() }
    local _, err = bad:list()
    assert.equal(401, err.status)
    assert.matches("401 Authorization Required", err.message, 1, true)
  end)

  it("speaks TLS with verification: the test CA works, the system store refuses", function()
    local c, acct = fresh(nil, { base_url = sim.tls_url(), ca_file = sim.ca() })
    local id = sim.task(acct.key, {})
    assert(c:get(id))
    local strict = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.tls_url(),
      retry = false }
    local _, err = strict:get(id)
    assert.equal("transport", err.kind)
    assert.equal("tls", err.code)
    assert.is_truthy(err.curl_code:match("VERIFICATION") or err.curl_code:match("CACERT"), err.curl_code)
  end)

  it("fails fast with a transport error when nothing listens", function()
    local c = rctasks.new{ api_key = "k", secret_key = "s", base_url = "http://127.0.0.1:9/v1", retry = false }
    local _, err = c:get("00000000-0000-4000-8000-000000000000")
    assert.equal("transport", err.kind)
    assert.equal("connect", err.code); assert.equal("CURLE_COULDNT_CONNECT", err.curl_code)
    assert.is_true(err.retryable)
  end)
end)
