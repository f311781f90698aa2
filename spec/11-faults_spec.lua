-- The fault matrix: every fault the simulator can inject, driven through client:get, client:list
-- and client:wait over the real libcurl transport. Each row says what each call must end with:
-- retried to success, or nil, err with the right kind, retryable flag and status/code. Every call
-- also must not raise, must return within its time budget, and its error must name the task id
-- (get, wait) and carry no key. The README section "When the network or the server misbehaves" is this table in prose.
local rctasks = require "rctasks"
local core = require "rctasks.core"
local curl = require "rctasks.transport.curl"
local socket = require "socket"
local sys = require "helpers.sys"
local free_port = sys.free_port
local sim = require "helpers.sim"

local TIMEOUT = 0.3                       -- per-request timeout: stalls and trickles are cut here
local MAX_BODY = 1024 * 1024
local RETRY = { attempts = 3, base = 0.02, max_delay = 0.05, busy_attempts = 3, busy_base = 0.02,
                busy_max_delay = 0.05 }
local WAIT = { timeout = 3, interval = 0.02, max_interval = 0.05, jitter = 0 }
local MARGIN = 1.5                        -- generous: the machine is shared and noisy

-- get and list: every attempt may take the whole timeout, plus the backoffs between them.
local CALL_BUDGET = RETRY.attempts * TIMEOUT + (RETRY.attempts - 1) * RETRY.max_delay

local OK = { ok = true }
local function fail(kind, retryable, fields)
  local e = { kind = kind, retryable = retryable }
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

-- A body the list call chokes on (the sim's shape faults mangle single tasks).
local function list_body(json)
  return { { kind = "status", status = 200, text = json, content_type = "application/json" } }
end

local function burst(fault, n)
  local f = { times = n }
  for k, v in pairs(fault) do f[k] = v end
  return { f }
end

-- A LuaSocket listener standing in for "another host": a redirect must never reach it.
local trap = assert(socket.bind("127.0.0.1", 0))
local _, trap_port = trap:getsockname()
trap:settimeout(0)
local TRAP_URL = "http://127.0.0.1:" .. trap_port .. "/v1/tasks/stolen"
local function trap_hits()
  local n = 0
  while true do
    local c = trap:accept()
    if not c then return n end
    n = n + 1
    c:close()
  end
end

local BIG = { code = "too_large", curl_code = "CURLE_FILESIZE_EXCEEDED" }
local REFUSED = { code = "connect", curl_code = "CURLE_COULDNT_CONNECT" }
local TIMEDOUT = { code = "timeout", curl_code = "CURLE_OPERATION_TIMEDOUT" }
local ROWS = {
  { name = "connection refused (nothing listens on the port)", refused = true,
    get = fail("transport", true, REFUSED),
    list = fail("transport", true, REFUSED),
    wait = fail("timeout", true, { cause = REFUSED }), wait_timeout = 0.5 },
  { name = "reset before answering, once", faults = { { kind = "reset" } }, get = OK, list = OK, wait = OK },
  { name = "reset before answering, past the retry budget", faults = burst({ kind = "reset" }, 4),
    get = fail("transport", true, { code = "closed", curl_code = "CURLE_GOT_NOTHING" }),
    list = fail("transport", true, { code = "closed", curl_code = "CURLE_GOT_NOTHING" }), wait = OK },
  { name = "reset mid-body (short of Content-Length), once", faults = { { kind = "reset_mid" } },
    get = OK, list = OK, wait = OK },
  { name = "reset mid-body (short of Content-Length), past the retry budget",
    faults = burst({ kind = "reset_mid" }, 4),
    get = fail("transport", true, { code = "closed", curl_code = "CURLE_PARTIAL_FILE" }),
    list = fail("transport", true, { code = "closed", curl_code = "CURLE_PARTIAL_FILE" }), wait = OK },
  { name = "headers then a stall past the timeout, once", faults = { { kind = "stall", seconds = 5 } },
    get = OK, list = OK, wait = OK },
  { name = "headers then a stall past the timeout, past the retry budget",
    faults = burst({ kind = "stall", seconds = 5 }, 4),
    get = fail("transport", true, TIMEDOUT),
    list = fail("transport", true, TIMEDOUT), wait = OK },
  { name = "trickling body (slowloris), cut at the request timeout, once",
    faults = { { kind = "trickle", chunk = 4, delay = 0.05 } }, get = OK, list = OK, wait = OK },
  { name = "trickling body (slowloris), every time",
    faults = burst({ kind = "trickle", chunk = 4, delay = 0.05 }, 50),
    get = fail("transport", true, TIMEDOUT),
    list = fail("transport", true, TIMEDOUT),
    wait = fail("timeout", true, { cause = TIMEDOUT }), wait_timeout = 1 },
  { name = "500 once (not a gateway: the API failed, not retried)", faults = { { kind = "status", status = 500 } },
    get = fail("http", false, { status = 500 }), list = fail("http", false, { status = 500 }),
    wait = fail("http", false, { status = 500 }) },
  { name = "502 once", faults = { { kind = "status", status = 502 } }, get = OK, list = OK, wait = OK },
  { name = "503 once", faults = { { kind = "status", status = 503 } }, get = OK, list = OK, wait = OK },
  { name = "504 once", faults = { { kind = "status", status = 504 } }, get = OK, list = OK, wait = OK },
  { name = "502 burst shorter than the retry budget", faults = burst({ kind = "status", status = 502 }, 2),
    get = OK, list = OK, wait = OK },
  { name = "503 burst shorter than the retry budget", faults = burst({ kind = "status", status = 503 }, 2),
    get = OK, list = OK, wait = OK },
  { name = "504 burst longer than the retry budget", faults = burst({ kind = "status", status = 504 }, 4),
    get = fail("http", true, { status = 504 }), list = fail("http", true, { status = 504 }), wait = OK },
  { name = "503 burst longer than the retry budget",
    faults = burst({ kind = "status", status = 503, body = "html" }, 4),
    get = fail("http", true, { status = 503 }), list = fail("http", true, { status = 503 }), wait = OK },
  { name = "503 without end", faults = burst({ kind = "status", status = 503 }, 1000),
    get = fail("http", true, { status = 503 }), list = fail("http", true, { status = 503 }),
    wait = fail("timeout", true, { cause = { status = 503 } }), wait_timeout = 0.5 },
  { name = "429 without Retry-After", faults = { { kind = "status", status = 429, body = "json" } },
    get = OK, list = OK, wait = OK },
  { name = "429 with Retry-After: 1 (waited, then through)",
    faults = { { kind = "status", status = 429, retry_after = 1 } },
    get = OK, list = OK, wait = OK, min_took = 0.9, extra = 1 },
  { name = "429 without end", faults = burst({ kind = "status", status = 429 }, 1000),
    get = fail("http", true, { status = 429 }), list = fail("http", true, { status = 429 }),
    wait = fail("timeout", true, { cause = { status = 429 } }), wait_timeout = 0.5 },
  { name = "401 with nginx's HTML page", faults = { { kind = "status", status = 401, body = "html" } },
    get = fail("http", false, { status = 401, message = "401 Authorization Required" }),
    list = fail("http", false, { status = 401 }), wait = fail("http", false, { status = 401 }) },
  { name = "404 with an empty body (waited through while the task is new)",
    faults = { { kind = "status", status = 404, body = "empty" } },
    get = fail("http", false, { status = 404 }), list = fail("http", false, { status = 404 }), wait = OK },
  { name = "404 with Spring JSON (waited through while the task is new)",
    faults = { { kind = "status", status = 404, message = "Task not found" } },
    get = fail("http", false, { status = 404, message = "Task not found" }),
    list = fail("http", false, { status = 404 }), wait = OK },
  { name = "404 more often than a new task lags", faults = burst({ kind = "status", status = 404, body = "empty" }, 6),
    get = fail("http", false, { status = 404 }), list = fail("http", false, { status = 404 }),
    wait = fail("http", false, { status = 404 }) },
  { name = "invalid JSON", faults = { { kind = "invalid_json" } },
    get = fail("decode", false, { status = 200 }), list = fail("decode", false, { status = 200 }),
    wait = fail("decode", false, { status = 200 }) },
  { name = "wrong shape: status a number", faults = { { kind = "shape", variant = "status_number" } },
    get = fail("decode", false, { message = "status" }), list = fail("decode", false, { message = "status" }),
    wait = fail("decode", false, { message = "status" }) },
  { name = "wrong shape: links a string", faults = { { kind = "shape", variant = "links_string" } },
    get = fail("decode", false, { message = "links" }), list = fail("decode", false, { message = "links" }),
    wait = fail("decode", false, { message = "links" }) },
  { name = "wrong shape: tasks an object", faults = { { kind = "shape", variant = "tasks_object" } },
    get = fail("decode", false, { message = "taskId" }), list = fail("decode", false, { message = "tasks" }),
    wait = fail("decode", false, { message = "taskId" }) },
  { name = "wrong shape: not an object at all", faults = list_body('"processing-completed"'),
    get = fail("decode", false), list = fail("decode", false), wait = fail("decode", false) },
  { name = "body of 20 MB with Content-Length, cap 1 MiB", faults = { { kind = "big", bytes = 20 * 1024 * 1024 } },
    get = fail("transport", false, BIG), list = fail("transport", false, BIG),
    wait = fail("transport", false, BIG) },
  { name = "endless body without Content-Length, cap 1 MiB",
    faults = { { kind = "big", bytes = 2 ^ 40, length = false } },
    get = fail("transport", false, BIG), list = fail("transport", false, BIG),
    wait = fail("transport", false, BIG) },
  { name = "1 MiB of response headers", faults = { { kind = "huge_headers" } },
    get = fail("transport", false, BIG), list = fail("transport", false, BIG),
    wait = fail("transport", false, BIG) },
  { name = "gzip body never asked for (no Accept-Encoding is sent)", faults = { { kind = "gzip" } },
    get = fail("decode", false, { status = 200 }), list = fail("decode", false, { status = 200 }),
    wait = fail("decode", false, { status = 200 }) },
  { name = "302 redirect to another host (not followed)", trap = true,
    faults = { { kind = "redirect", location = TRAP_URL } },
    get = fail("http", false, { status = 302, message = TRAP_URL }), list = fail("http", false, { status = 302 }),
    wait = fail("http", false, { status = 302 }) },
  { name = "307 redirect to another host (not followed)", trap = true,
    faults = { { kind = "redirect", status = 307, location = TRAP_URL } },
    get = fail("http", false, { status = 307 }), list = fail("http", false, { status = 307 }),
    wait = fail("http", false, { status = 307 }) },
  { name = "unknown task status", faults = { { kind = "unknown_status", status = "processing-paused" } },
    get = OK, list = OK, wait = fail("task", false, { message = "processing-paused" }),
    check = function(call, v)
      if call == "get" then assert.equal("processing-paused", v.status); assert.is_false(v:done()) end
      if call == "list" then assert.equal("processing-paused", v[1].status) end
    end },
}

-- Every string anywhere in v (keys and values, nested), for the key check.
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do strings(k, out, seen); strings(x, out, seen) end
  end
  return out
end

local function call(row, name)
  local acct = sim.account()
  local base = row.refused and ("http://127.0.0.1:" .. free_port() .. "/v1") or sim.url()
  local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = base,
                         timeout = TIMEOUT, max_body = MAX_BODY, retry = RETRY }
  local id = sim.task(acct.key, {})
  local faults = row[name .. "_faults"] or row.faults
  if faults then sim.faults(acct.key, faults) end
  local wopts = {}
  for k, v in pairs(WAIT) do wopts[k] = v end
  wopts.timeout = row.wait_timeout or WAIT.timeout
  local t0 = core.now()
  local ok, v, err
  if name == "get" then ok, v, err = pcall(c.get, c, id)
  elseif name == "list" then ok, v, err = pcall(c.list, c)
  else ok, v, err = pcall(c.wait, c, id, wopts) end
  local took = core.now() - t0
  c:close()
  local budget = (name == "wait" and wopts.timeout + TIMEOUT or CALL_BUDGET) + (row.extra or 0)
  return ok, v, err, took, budget, id, acct
end

describe("fault matrix", function()
  for _, row in ipairs(ROWS) do
    for _, name in ipairs({ "get", "list", "wait" }) do
      local want = row[name]
      local outcome = want.ok and "retried to success" or
        ("nil, %s error%s"):format(want.kind, want.retryable and " (retryable)" or "")
      it(name .. ": " .. row.name .. " -> " .. outcome, function()
        if row.trap then trap_hits() end
        local ok, v, err, took, budget, id, acct = call(row, name)
        assert.is_true(ok, "a Lua error escaped: " .. tostring(v))
        assert.is_true(took <= budget + MARGIN, ("took %.2fs, budget %.2fs"):format(took, budget))
        if row.min_took then assert.is_true(took >= row.min_took, ("took only %.2fs"):format(took)) end
        if want.ok then
          assert.is_nil(err, err and tostring(err))
          assert.is_table(v)
          if name == "wait" then assert.is_true(v:ok()) end
          if name == "get" and not row.check then assert.equal(id, v.taskId) end
          if row.check then row.check(name, v) end
        else
          assert.is_nil(v)
          assert.is_table(err)
          assert.equal(want.kind, err.kind, tostring(err))
          assert.equal(want.retryable, err.retryable, tostring(err))
          if want.status then assert.equal(want.status, err.status, tostring(err)) end
          if want.code then assert.equal(want.code, err.code, tostring(err)) end
          if want.curl_code then assert.equal(want.curl_code, err.curl_code, tostring(err)) end
          if want.message then assert.matches(want.message, err.message, 1, true) end
          if want.cause then
            assert.is_table(err.cause, tostring(err))
            for k, x in pairs(want.cause) do assert.equal(x, err.cause[k], tostring(err)) end
            assert.matches("last error", tostring(err), 1, true)
          end
          if name ~= "list" then
            assert.equal(id, err.task_id)
            assert.matches(id, tostring(err), 1, true)
          end
          for _, s in ipairs(strings(err)) do
            assert.is_nil(s:find(acct.key, 1, true), "api key in the error")
            assert.is_nil(s:find(acct.secret, 1, true), "secret key in the error")
          end
        end
        if row.trap then assert.equal(0, trap_hits(), "the redirect reached the other host") end
      end)
    end
  end

  it("the redirect trap does see a request that is sent to it (so its silence above means something)", function()
    trap_hits()
    local h = core.http(curl.options{ timeout = 0.2 })
    h:request("GET", TRAP_URL, nil, nil, 0.2) -- the trap never answers: this times out, having connected
    h:close()
    assert.equal(1, trap_hits())
  end)

  it("a redirect to the same host is not followed either", function()
    local acct = sim.account()
    local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), retry = RETRY }
    local id = sim.task(acct.key, {})
    sim.faults(acct.key, { { kind = "redirect", location = sim.url() .. "/tasks/" .. id } })
    local t, err = c:get(id)
    c:close()
    assert.is_nil(t)
    assert.equal(302, err.status)
    assert.equal(1, sim.stats(acct.key).requests)
  end)
end)
