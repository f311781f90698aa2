-- The retry policy and the request limiter, on a virtual clock.
local rctasks = require "rctasks"
local fake = require "helpers.fake"

local ID = fake.ID
local OK = { 200, fake.task_body(ID, "received") }

local client = fake.client

describe("retry policy", function()
  it("retries a 503 and reports each retry to on_retry", function()
    local seen = {}
    local c, tr = client({ { 503, "" }, { 503, "" }, OK },
      { retry = { on_retry = function(i) seen[#seen + 1] = i end } })
    assert(c:get(ID))
    assert.equal(3, #tr.requests)
    assert.equal(2, #seen)
    assert.equal(1, seen[1].attempt); assert.equal(503, seen[1].error.status)
    assert.is_true(seen[2].delay >= 0 and seen[2].delay <= 1.0) -- full jitter under 0.5 * 2
  end)

  it("stops after `attempts` tries and returns the last error", function()
    local c, tr = client({ { 502, "" } }, { retry = { attempts = 3 } })
    local _, err = c:get(ID)
    assert.equal(502, err.status); assert.is_true(err.retryable)
    assert.equal(3, #tr.requests)
  end)

  it("sleeps exactly what Retry-After says, in seconds or as an HTTP date", function()
    local c, _, clock = client({ { 429, "", { ["retry-after"] = "7" } }, OK })
    assert(c:get(ID))
    assert.same({ 7 }, clock.slept)
    local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 30)
    assert.near(30, rctasks.errors.retry_after(date), 2)
  end)

  it("does not resend a POST that may have reached the server", function()
    for _, a in ipairs({ { 503, "" }, { 502, "" }, { err = { code = "CURLE_RECV_ERROR", retryable = true } } }) do
      local c, tr = client({ a, OK })
      local _, err = c:submit("POST", "/subscriptions", "{}")
      assert.is_not_nil(err); assert.equal(1, #tr.requests)
    end
  end)

  it("resends a POST that never left, one refused with 429, or when retry_post is set", function()
    for _, a in ipairs({ { err = { code = "CURLE_COULDNT_CONNECT", retryable = true, unsent = true } },
                         { 429, "" } }) do
      local c, tr = client({ a, OK })
      assert(c:submit("POST", "/subscriptions", "{}"))
      assert.equal(2, #tr.requests)
    end
    local c, tr = client({ { 503, "" }, OK }, { retry = { retry_post = true } })
    assert(c:submit("POST", "/subscriptions", "{}"))
    assert.equal(2, #tr.requests)
  end)

  it("does not retry a 400, 401, 404 or 500", function()
    for _, st in ipairs({ 400, 401, 404, 500 }) do
      local c, tr = client({ { st, "" }, OK })
      local _, err = c:get(ID)
      assert.equal(st, err.status); assert.equal(1, #tr.requests)
    end
  end)

  it("raises on unknown policy options", function()
    assert.has_error(function() rctasks.retry.new{ tries = 3 } end, "rctasks.retry: unknown option 'tries'")
    assert.has_error(function() rctasks.retry.new{ attempts = "3" } end)
  end)
end)

describe("limiter", function()
  it("never lets more than `limit` requests into any window", function()
    local c, tr = client({ OK }, { limiter = { limit = 5, window = 2 } })
    for _ = 1, 23 do assert(c:get(ID)) end
    local times = {}
    for i, r in ipairs(tr.requests) do times[i] = r.at end
    for i = 1, #times do
      local n = 0
      for j = i, #times do if times[j] < times[i] + 2 then n = n + 1 end end
      assert.is_true(n <= 5, "window from request " .. i .. " holds " .. n)
    end
    assert.is_true(times[#times] - times[1] >= 8) -- 23 requests at 5 per 2 s
  end)

  it("refuses a limit that is not a whole number", function()
    assert.has_error(function() rctasks.limiter.new{ limit = 1.5, window = 1 } end)
    assert.has_error(function() client({ OK }, { limiter = { limit = 1.5, window = 1 } }) end)
  end)

  it("defaults to the API's 400 requests per minute", function()
    local fake_clock = fake.clock()
    local tr = fake.transport({ OK }, fake_clock)
    local c = rctasks.new{ api_key = "k", secret_key = "s", transport = tr, now = fake_clock.now,
                           sleep = fake_clock.sleep }
    for _ = 1, 401 do assert(c:get(ID)) end
    assert.equal(tr.requests[1].at, tr.requests[400].at) -- 400 at once
    assert.is_true(tr.requests[401].at - tr.requests[1].at >= 60 - 1e-9) -- the 401st a minute later
  end)

  it("follows X-Rate-Limit-Remaining: at 0 nothing goes until the window has passed", function()
    local c, tr = client({ { 200, fake.task_body(ID, "received"), { ["x-rate-limit-remaining"] = "0" } }, OK },
      { limiter = { limit = 10, window = 60 } })
    assert(c:get(ID)); assert(c:get(ID))
    assert.is_true(tr.requests[2].at - tr.requests[1].at >= 60 - 1e-9, tr.requests[2].at - tr.requests[1].at)
  end)

  it("follows X-Rate-Limit-Remaining: n left means limit - n used, whoever used them", function()
    local c, tr = client({ { 200, fake.task_body(ID, "received"), { ["x-rate-limit-remaining"] = "4" } }, OK },
      { limiter = { limit = 10, window = 60 } })
    for _ = 1, 6 do assert(c:get(ID)) end
    local t = {}
    for i, r in ipairs(tr.requests) do t[i] = r.at - tr.requests[1].at end
    assert.equal(0, t[5]) -- the first and 4 more at once: 10 - 4 were used
    assert.is_true(t[6] >= 60 - 1e-9, "the sixth waited " .. t[6])
  end)

  it("retries a 429 for minutes (the API's 'too many changes at once'), a POST too: 1 s doubling to 60 s", function()
    local answers = {}
    for i = 1, 9 do answers[i] = { 429, "" } end
    answers[10] = OK
    local c, tr, clock = client(answers)
    assert(c:submit("POST", "/subscriptions", "{}"))
    assert.equal(10, #tr.requests)
    for i, d in ipairs(clock.slept) do
      assert.is_true(d <= math.min(60, 2 ^ (i - 1)) + 1e-9, "delay " .. i .. ": " .. d)
    end
    c, tr = client({ { 429, "" } })
    local _, err = c:get(ID)
    assert.equal(429, err.status)
    assert.equal(10, #tr.requests)
  end)

  it("retries a 408 (the request never arrived whole), a POST too", function()
    for _, method in ipairs({ "GET", "POST" }) do
      local c, tr = client({ { 408, "" }, OK })
      assert(c:submit(method, "/subscriptions", method == "POST" and "{}" or nil))
      assert.equal(2, #tr.requests)
    end
  end)

  it("holds the next request when the server says X-Rate-Limit-Remaining: 0", function()
    local c, tr = client({ { 200, fake.task_body(ID, "received"), { ["x-rate-limit-remaining"] = "0" } }, OK },
      { limiter = { limit = 400, window = 60 } })
    assert(c:get(ID)); assert(c:get(ID))
    assert.is_true(tr.requests[2].at - tr.requests[1].at >= 60 / 400 - 1e-9)
  end)
end)
