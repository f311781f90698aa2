-- rctasks inside a real nginx (2 workers): get/list/wait from content handlers and timers, the
-- cosocket transport's HTTP/1.1 (chunked, caps, timeouts, keep-alive), TLS, and phase refusal.
local sim = require "helpers.sim"
local H = require "ngx.harness"

local HANDLERS = { "get", "gets", "list", "wait", "spawn", "result", "raw", "chunked", "conn", "slow", "probe",
                   "init_get", "ping" }

local function locations(prefix, extra)
  local out = {}
  for _, name in ipairs(HANDLERS) do
    out[#out + 1] = ("    location = %s/%s { %s content_by_lua_block { require('handlers').%s() } }")
      :format(prefix, name, extra or "", name)
  end
  return table.concat(out, "\n")
end

local function wrong_ca(dir)
  local ok = os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
    .. "-subj /CN=not-the-sim-ca -keyout %s/wrong.key -out %s/wrong.pem >/dev/null 2>&1"):format(dir, dir))
  assert(ok == true or ok == 0, "openssl failed")
  return dir .. "/wrong.pem"
end

describe("rctasks in nginx (cosocket transport)", function()
  local srv, certdir, wrong, probe_acct, probe_task

  setup(function()
    certdir = H.tmpdir()
    wrong = wrong_ca(certdir)
    probe_acct = sim.account()
    probe_task = sim.task(probe_acct.key, {})
    local conf = H.config{
      workers = 2,
      main = "env RCTASKS_NGX_KEY; env RCTASKS_NGX_SECRET; env RCTASKS_NGX_URL; env RCTASKS_NGX_TASK;",
      http = table.concat({
        "  lua_shared_dict rctasks 1m;",
        "  lua_shared_dict probe 64k;",
        "  lua_ssl_verify_depth 3;",
        "  init_by_lua_block { require('handlers').init() }",
        "  init_worker_by_lua_block { require('handlers').init_worker() }",
      }, "\n"),
      server = table.concat({
        locations(""),
        locations("/tls", "lua_ssl_trusted_certificate " .. sim.ca() .. ";"),
        locations("/tls-wrong", "lua_ssl_trusted_certificate " .. wrong .. ";"),
        "    location = /close-conn { keepalive_timeout 0; content_by_lua_block { require('handlers').conn() } }",
        "    location = /short-keepalive { keepalive_timeout 1s; content_by_lua_block { require('handlers').conn() } }",
        "    location = /log-probe { content_by_lua_block { ngx.print('ok') }",
        "                            log_by_lua_block { require('handlers').log_probe() } }",
      }, "\n"),
    }
    srv = H.start(conf, { env = { RCTASKS_NGX_KEY = probe_acct.key, RCTASKS_NGX_SECRET = probe_acct.secret,
                                  RCTASKS_NGX_URL = sim.url(), RCTASKS_NGX_TASK = probe_task } })
  end)

  teardown(function()
    if srv then srv:stop() end
    if certdir then os.execute("rm -rf " .. certdir) end
  end)

  local function get(path, acct, extra)
    local status, v = srv:get(path, acct and H.account_headers(acct, extra))
    assert.equal(200, status, type(v) == "string" and v or nil)
    return v
  end

  local function self_url(path) return srv.base .. path end
  local function esc(s) return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)) end

  describe("from a content handler", function()
    it("gets a task by id", function()
      local a = sim.account()
      local id = sim.task(a.key, { resourceId = 4711 })
      local v = get("/get?id=" .. id, a)
      assert.is_true(v.ok)
      assert.equal(id, v.id)
      assert.truthy(v.self:find(id, 1, true))
    end)

    it("lists the account's tasks", function()
      local a = sim.account()
      local id1, id2 = sim.task(a.key, {}), sim.task(a.key, {})
      local v = get("/list", a)
      assert.is_true(v.ok)
      assert.equal(2, v.count)
      local seen = {}
      for _, id in ipairs(v.ids) do seen[id] = true end
      assert.is_true(seen[id1] and seen[id2])
    end)

    it("waits for a task and returns its resource id", function()
      local a = sim.account({ step = 0.1 })
      local id = sim.task(a.key, { resourceId = 51055029 })
      local v = get("/wait?id=" .. id, a)
      assert.is_true(v.ok, v.line)
      assert.equal("processing-completed", v.status)
      assert.equal(51055029, v.resource_id)
    end)

    it("ends a wait on a failed task with a task error naming the API error", function()
      local a = sim.account()
      local id = sim.task(a.key, { outcome = "error:SUBSCRIPTION_NOT_FOUND" })
      local v = get("/wait?id=" .. id, a)
      assert.is_false(v.ok)
      assert.equal("task", v.kind)
      assert.equal("SUBSCRIPTION_NOT_FOUND", v.code)
      assert.truthy(v.line:find(id, 1, true))
    end)

    it("answers 404 for an unknown task as an http error", function()
      local a = sim.account()
      local v = get("/get?id=0b7e2a52-0000-4000-8000-000000000000", a, { ["x-test-retry"] = "off" })
      assert.is_false(v.ok)
      assert.equal("http", v.kind)
      assert.equal(404, v.status)
    end)
  end)

  describe("in the background (ngx.timer)", function()
    it("returns at once and records the outcome where any worker can read it", function()
      local a = sim.account({ step = 0.3 })
      local id = sim.task(a.key, { resourceId = 99 })
      local status, v = srv:post("/spawn?id=" .. id, H.account_headers(a))
      assert.equal(202, status)
      assert.is_true(v.ok)
      local first = get("/result?id=" .. id)
      assert.is_true(first.found)
      assert.equal("waiting", first.result.state) -- the task takes 0.6 s: not done yet
      local r
      for _ = 1, 100 do
        r = get("/result?id=" .. id).result
        if r.state ~= "waiting" then break end
        require("socket").sleep(0.05)
      end
      assert.equal("completed", r.state)
      assert.equal("processing-completed", r.task_status)
      assert.equal(99, r.resource_id)
    end)

    it("records a failed task with its error line", function()
      local a = sim.account()
      local id = sim.task(a.key, { outcome = "error:PLANNER_TIMEOUT" })
      assert.equal(202, (srv:post("/spawn?id=" .. id, H.account_headers(a))))
      local r
      for _ = 1, 100 do
        r = get("/result?id=" .. id).result
        if r and r.state ~= "waiting" then break end
        require("socket").sleep(0.05)
      end
      assert.equal("failed", r.state)
      assert.equal("processing-error", r.task_status)
      assert.truthy(r.message:find(id, 1, true))
      assert.truthy(r.message:find("planner timeout", 1, true) or r.message:find("PLANNER_TIMEOUT", 1, true))
    end)

    it("does not start a second waiter for a task already tracked", function()
      local a = sim.account({ step = 0.2 })
      local id = sim.task(a.key, {})
      local _, v1 = srv:post("/spawn?id=" .. id, H.account_headers(a))
      local _, v2 = srv:post("/spawn?id=" .. id, H.account_headers(a))
      assert.is_nil(v1.note)
      assert.equal("exists", v2.note)
    end)
  end)

  describe("HTTP/1.1 over cosockets", function()
    it("reads a chunked body", function()
      local v = get("/raw?url=" .. esc(self_url("/chunked?n=5&size=1000")))
      assert.is_true(v.ok, v.message)
      assert.equal("chunked", v.headers["transfer-encoding"])
      assert.equal(5000, #v.body)
      assert.equal(string.rep("a", 1000) .. string.rep("b", 1000), v.body:sub(1, 2000))
    end)

    it("refuses a Content-Length body over max_body with code too_large", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      local url = sim.url() .. "/tasks/" .. id
      -- no keys on a raw request: the sim's 401 page is the body, larger than 20 bytes
      local v = get("/raw?max_body=20&url=" .. esc(url))
      assert.is_false(v.ok)
      assert.equal("too_large", v.code)
    end)

    it("refuses a chunked body over max_body with code too_large", function()
      local v = get("/raw?max_body=500&url=" .. esc(self_url("/chunked?n=10&size=100")))
      assert.is_false(v.ok)
      assert.equal("too_large", v.code)
    end)

    it("reports a refused connection as code connect, surely unsent", function()
      local v = get("/raw?url=" .. esc("http://127.0.0.1:" .. H.free_port() .. "/v1/tasks"))
      assert.is_false(v.ok)
      assert.equal("connect", v.code)
      assert.is_true(v.unsent)
      assert.is_true(v.retryable)
    end)

    it("refuses a URL it cannot use with code bad_url, surely unsent", function()
      for _, url in ipairs({ "ftp://127.0.0.1/v1/tasks", "http://", "http://127.0.0.1:99999/v1", "tasks" }) do
        local v = get("/raw?url=" .. esc(url))
        assert.is_false(v.ok, url)
        assert.equal("bad_url", v.code, url)
        assert.is_true(v.unsent, url)
        assert.is_false(v.retryable, url)
      end
    end)

    it("gives up on a server that answers too late with code timeout", function()
      local t0 = require("socket").gettime()
      local v = get("/raw?timeout=0.3&url=" .. esc(self_url("/slow?s=3")))
      assert.is_false(v.ok)
      assert.equal("timeout", v.code)
      assert.is_false(v.unsent)
      assert.truthy(require("socket").gettime() - t0 < 2.5, "the 0.3 s timeout did not cut the request")
    end)

    it("keeps connections alive: ten gets ride one connection", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      local v = get("/gets?n=10&id=" .. id, a)
      assert.equal(10, v.ok)
      -- 0 when the worker's pool already held a connection to the sim from an earlier test
      local n = sim.stats(a.key).connections
      assert.truthy(n <= 1, "connections: " .. n)
    end)

    it("keeps connections alive across requests to nginx (one pool per worker)", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      for _ = 1, 8 do assert.equal(1, get("/gets?n=1&id=" .. id, a).ok) end
      local s = sim.stats(a.key)
      assert.equal(8, s.requests)
      assert.truthy(s.connections <= 2, "connections: " .. s.connections)
    end)

    it("does not reuse a connection the server said to close", function()
      -- the three ride one connection (the first may be one an earlier test left in the pool)
      local kept = get("/raw?n=3&url=" .. esc(self_url("/conn")))
      local n1 = tonumber(kept.answers[1].body)
      assert.same({ n1 + 1, n1 + 2 }, { tonumber(kept.answers[2].body), tonumber(kept.answers[3].body) })
      -- the first may ride a pooled connection; after the server's "close", each one is fresh
      local closed = get("/raw?n=3&url=" .. esc(self_url("/close-conn")))
      assert.equal("close", closed.answers[1].headers.connection)
      assert.same({ "1", "1" }, { closed.answers[2].body, closed.answers[3].body })
    end)

    it("replaces a pooled connection the server closed while idle", function()
      local v = get("/raw?n=2&pause=1.5&url=" .. esc(self_url("/short-keepalive")))
      assert.is_true(v.ok, v.message)
      assert.equal("1", v.answers[2].body) -- a fresh connection, and no error
    end)
  end)

  describe("odd servers (simulator faults)", function()
    local function faulty(fault)
      local a = sim.account()
      local id = sim.task(a.key, {})
      sim.faults(a.key, { fault })
      return get("/get?id=" .. id, a, { ["x-test-retry"] = "off" })
    end

    it("stops reading a body larger than max_body with code too_large (Content-Length)", function()
      local v = faulty({ kind = "big", bytes = 9 * 1024 * 1024 })
      assert.equal("too_large", v.code)
      assert.is_false(v.retryable)
    end)

    it("stops reading a chunked body larger than max_body with code too_large", function()
      local v = faulty({ kind = "big", bytes = 9 * 1024 * 1024, length = false })
      assert.equal("too_large", v.code)
    end)

    it("refuses an endless header block with code bad_response", function()
      local v = faulty({ kind = "huge_headers" })
      assert.equal("bad_response", v.code)
    end)

    it("reports a connection reset before any answer as code closed, retryable", function()
      -- twice: a reset on a pooled connection looks stale and is tried once more on a fresh one
      local v = faulty({ kind = "reset", times = 2 })
      assert.equal("closed", v.code)
      assert.is_true(v.retryable)
      assert.is_false(v.unsent)
    end)

    it("reports a connection cut in the middle of the body as code closed", function()
      local v = faulty({ kind = "reset_mid" })
      assert.equal("closed", v.code)
      assert.truthy(v.message:find("complete", 1, true))
    end)

    it("retries a reset connection and then succeeds (the client's retry policy)", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      sim.faults(a.key, { { kind = "reset" } })
      local v = get("/get?id=" .. id, a)
      assert.is_true(v.ok, v.line)
      assert.equal(2, sim.stats(a.key).requests)
    end)
  end)

  describe("TLS", function()
    local function tls_headers(a, ca)
      return H.account_headers(a, { ["x-test-url"] = H.tls_url_by_name(), ["x-test-ca"] = ca })
    end

    it("verifies the server's certificate and host name, then reuses the TLS connection", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      local status, v = srv:get("/tls/gets?n=5&id=" .. id, tls_headers(a, sim.ca()))
      assert.equal(200, status)
      assert.equal(5, v.ok, table.concat(v.failures or {}, "; "))
      local s = sim.stats(a.key)
      assert.equal(1, s.connections)
      assert.equal(1, s.tls_handshakes)
    end)

    it("fails with code tls when the certificate is not from a trusted CA", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      for _ = 1, 5 do -- a handshake may complete at once or later: both must fail verification
        local _, v = srv:get("/tls-wrong/get?id=" .. id, tls_headers(a, wrong))
        assert.is_false(v.ok)
        assert.equal("transport", v.kind)
        assert.equal("tls", v.code, v.line)
        assert.truthy(v.message:find("certificate", 1, true))
      end
      assert.equal(0, sim.stats(a.key).requests)
    end)

    it("fails closed on an https URL with an IP address, saying to use a host name", function()
      local a = sim.account()
      local id = sim.task(a.key, {})
      local _, v = srv:get("/tls/get?id=" .. id, H.account_headers(a, { ["x-test-url"] = sim.tls_url(),
        ["x-test-ca"] = sim.ca() }))
      assert.is_false(v.ok)
      assert.equal("tls", v.code, v.line)
      assert.truthy(v.message:find("host name", 1, true))
    end)
  end)

  describe("phases without cosockets", function()
    it("refuses in init_worker with an error that points to ngx.timer.at, and works from that timer", function()
      local v
      for _ = 1, 50 do
        v = get("/probe")
        if type(v.init_worker) == "table" and type(v.timer) == "table" then break end
        require("socket").sleep(0.05)
      end
      assert.equal("transport", v.init_worker.kind)
      assert.equal("phase", v.init_worker.code)
      assert.truthy(v.init_worker.message:find("ngx.timer.at", 1, true))
      assert.truthy(v.init_worker.message:find("init_worker", 1, true))
      assert.is_true(v.timer.ok, v.timer.line)
      assert.is_string(v.timer.status)
    end)

    it("refuses in log_by_lua at once instead of blocking the worker", function()
      assert.equal(200, (srv:get("/log-probe")))
      local v
      for _ = 1, 50 do
        v = get("/probe")
        if type(v.log) == "table" then break end
        require("socket").sleep(0.05)
      end
      assert.equal("phase", v.log.code)
      assert.truthy(v.log.message:find("'log' phase", 1, true))
    end)

    it("uses a client created in init_by_lua from a content handler", function()
      local v = get("/init_get?id=" .. probe_task)
      assert.is_true(v.ok, v.line)
      assert.equal(probe_task, v.id)
    end)
  end)
end)
