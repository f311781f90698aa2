-- Security: TLS verification cannot be switched off (no option, no environment variable), keys never
-- travel in clear nor show up in errors or tostring, task ids and paths cannot steer the URL,
-- redirects are not followed, and a hostile server cannot make the client allocate without bound.
local rctasks = require "rctasks"
local core = require "rctasks.core"
local curl = require "rctasks.transport.curl"
local socket = require "socket"
local sys = require "helpers.sys"
local free_port = sys.free_port
local sim = require "helpers.sim"
local scripted = require "helpers.scripted"

local RETRY = { attempts = 2, base = 0.01, max_delay = 0.02, busy_attempts = 2, busy_base = 0.01,
                busy_max_delay = 0.02 }

local function fresh(extra, cfg)
  local acct = sim.account(cfg)
  local o = { api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), retry = RETRY }
  for k, v in pairs(extra or {}) do o[k] = v end
  return rctasks.new(o), acct
end

-- Every string reachable from v (keys, values, metatables' fields), for the key checks.
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do strings(k, out, seen); strings(x, out, seen) end
    strings(getmetatable(v), out, seen)
  end
  return out
end

local function assert_no_keys(v, acct, what)
  local all = strings(v)
  all[#all + 1] = tostring(v)
  for _, s in ipairs(all) do
    assert.is_nil(s:find(acct.key, 1, true), "api key in " .. what)
    assert.is_nil(s:find(acct.secret, 1, true), "secret key in " .. what)
  end
end

-- Resident set size of this process, bytes.
local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local pages = tonumber(f:read("*l"):match("^%d+%s+(%d+)"))
  f:close()
  return pages * 4096
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The same Lua (5.4 or LuaJIT) and the same module build, in a child process with `env` set.
local LUA = require("helpers.sys").LUA
local function child(env, script)
  local prelude = ("package.path = %q .. package.path; package.cpath = %q .. package.cpath; ")
    :format("lua/?.lua;lua/?/init.lua;", (package.cpath:gsub("build/asan/", "build/5.4/")) .. ";") -- no ASan child
  local cmd = "env " .. env .. " " .. LUA .. " -e " .. shell_quote(prelude .. script) .. " 2>&1"
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

describe("TLS verification", function()
  it("has no option to turn it off: insecure-sounding options raise as unknown", function()
    for _, name in ipairs({ "insecure", "ssl_verify", "verify", "ssl_verify_peer", "tls_verify", "verify_tls" }) do
      local ok, err = pcall(rctasks.new, { api_key = "a", secret_key = "b", [name] = false })
      assert.is_false(ok)
      assert.matches("unknown option '" .. name .. "'", err, 1, true)
      local core_ok, core_err = pcall(core.http, curl.options{ [name] = false })
      assert.is_false(core_ok)
      assert.matches("unknown option '" .. name .. "'", core_err, 1, true)
    end
  end)

  it("refuses the simulator's self-signed certificate unless its CA is given as ca_file", function()
    local acct = sim.account()
    local base = { api_key = acct.key, secret_key = acct.secret, base_url = sim.tls_url(), retry = false }
    local c = rctasks.new(base)
    local t, err = c:list()
    c:close()
    assert.is_nil(t)
    assert.equal("transport", err.kind)
    assert.equal("tls", err.code); assert.equal("CURLE_PEER_FAILED_VERIFICATION", err.curl_code)
    assert.is_false(err.retryable)
    base.ca_file = sim.ca()
    c = rctasks.new(base)
    assert.is_table(c:list()) -- the same server, trusted explicitly: works
    c:close()
  end)

  it("is not changed by SSL_CERT_FILE, SSL_CERT_DIR or CURL_CA_BUNDLE in the environment", function()
    local acct = sim.account()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. " && cp " .. shell_quote(sim.ca()) .. " " .. dir ..
      "/ca.pem && openssl rehash " .. dir .. " >/dev/null 2>&1"))
    local script = ([[
      local c = require("rctasks").new{ api_key = %q, secret_key = %q, base_url = %q, retry = false }
      local t, err = c:list()
      io.write(t and "TRUSTED" or tostring(err.curl_code))
    ]]):format(acct.key, acct.secret, sim.tls_url())
    local envs = { "SSL_CERT_FILE=" .. dir .. "/ca.pem", "SSL_CERT_DIR=" .. dir, "CURL_CA_BUNDLE=" .. dir .. "/ca.pem",
                   "SSL_CERT_FILE=" .. dir .. "/ca.pem SSL_CERT_DIR=" .. dir .. " CURL_CA_BUNDLE=" .. dir .. "/ca.pem" }
    for _, env in ipairs(envs) do
      assert.equal("CURLE_PEER_FAILED_VERIFICATION", child(env, script), env)
    end
    -- the child does trust the CA when told through ca_file, so its refusals above are real
    local trusting = script:gsub("retry = false", "retry = false, ca_file = " .. ("%q"):format(dir .. "/ca.pem"))
    assert.equal("TRUSTED", child("X=1", trusting))
    os.execute("rm -rf " .. dir)
  end)
end)

describe("base URLs", function()
  local function new(url) return pcall(rctasks.new, { api_key = "a", secret_key = "b", base_url = url }) end

  it("refuses http:// to anything but a loopback host", function()
    for _, url in ipairs({ "http://api.redislabs.com/v1", "http://10.0.0.1/v1", "http://127.0.0.1.evil.example/v1",
                           "http://localhost.evil.example/v1", "http://[::2]/v1", "http://0.0.0.0/v1",
                           "HTTP://api.redislabs.com/v1" }) do
      local ok, err = new(url)
      assert.is_false(ok, url)
      assert.matches("loopback", err, 1, true)
    end
  end)

  it("refuses other schemes, credentials in the URL, queries and fragments", function()
    for _, url in ipairs({ "ftp://127.0.0.1/v1", "file:///etc/passwd", "gopher://127.0.0.1/",
                           "https://user:pw@api.redislabs.com/v1", "https://api.redislabs.com/v1?x=1",
                           "https://api.redislabs.com/v1#f", "api.redislabs.com/v1" }) do
      assert.is_false((new(url)), url)
    end
  end)

  it("accepts https anywhere and http on loopback", function()
    for _, url in ipairs({ "https://api.redislabs.com/v1", "http://127.0.0.1:1/v1", "http://localhost:1/v1",
                           "http://[::1]:1/v1", "http://127.0.0.2:1/v1" }) do
      local ok, c = new(url)
      assert.is_true(ok, url .. ": " .. tostring(c))
      c:close()
    end
  end)
end)

describe("task ids and paths", function()
  local BAD = { "../tasks", "..", "a/../b", "a?b=1", "a#b", "a%00b", "a\0b", "a b", " a", "a\r\nx-evil: 1",
                "a/b", "a%2Fb", ("a"):rep(10 * 1024), "", "é" }

  it("refuses hostile task ids before sending anything", function()
    local c, acct = fresh()
    for _, id in ipairs(BAD) do
      assert.is_false((pcall(c.get, c, id)), "get " .. id:sub(1, 40))
      assert.is_false((pcall(c.wait, c, id, { timeout = 1 })), "wait " .. id:sub(1, 40))
      if c.wait_all then assert.is_false((pcall(c.wait_all, c, { id }, { timeout = 1 }))) end
    end
    assert.is_false((pcall(c.get, c, 42)))
    assert.is_false((pcall(c.get, c, nil)))
    c:close()
    assert.equal(0, sim.stats(acct.key).requests)
  end)

  it("refuses request paths that climb out of the base URL or smuggle a fragment, before sending", function()
    local c, acct = fresh()
    for _, path in ipairs({ "/subscriptions/../tasks", "/../v2/x", "/a/./b", "/a/..", "//evil.example/x",
                            "/x/%2e%2e/tasks", "/x/..%2Ftasks", "/x/.%2E/y", "/a%00", "/a#b",
                            "/a b", "/a\nb", "/a\\..\\b", "subscriptions", "" }) do
      assert.is_false((pcall(c.request, c, "GET", path)), path)
      assert.is_false((pcall(c.wait_ready, c, path, { timeout = 1 })), path)
    end
    c:close()
    assert.equal(0, sim.stats(acct.key).requests)
  end)

  it("escape() turns any text into one inert path segment", function()
    local c = fresh()
    for _, s in ipairs(BAD) do
      local seg = rctasks.escape(s)
      assert.is_nil(seg:find("[/?#%s%c\\]"), seg)
      -- NUL (%00) and ".." next to an escaped '/' stay refused by url(): some servers decode them
      local risky = s:find("..", 1, true) or s:find("\0", 1, true)
      assert.equal(not risky, (pcall(c.request, c, "GET", "/subscriptions/" .. seg)), seg:sub(1, 40))
    end
    assert.equal("..%2Ftasks", rctasks.escape("../tasks"))
    assert.equal("a%2500b", rctasks.escape("a%00b"))
    c:close()
  end)

  it("refuses keys with control characters (header injection)", function()
    assert.is_false((pcall(rctasks.new, { api_key = "a\r\nx-evil: 1", secret_key = "b" })))
    assert.is_false((pcall(rctasks.new, { api_key = "a", secret_key = "b\nc" })))
  end)
end)

describe("keys", function()
  it("are in neither tostring(client) nor anything reachable from the client table", function()
    local c, acct = fresh()
    assert_no_keys(c, acct, "the client")
    assert.matches("rctasks.client", tostring(c), 1, true)
    c:close()
  end)

  it("are in no error of any kind, nor its tostring, nor what on_retry sees", function()
    local errs = {}
    local retries = {}
    local acct = sim.account({ outcomes = { "error", "stuck" } })
    local function client(url, extra)
      local o = { api_key = acct.key, secret_key = acct.secret, base_url = url or sim.url(), timeout = 0.5,
                  retry = { attempts = 2, base = 0.01, max_delay = 0.02,
                            on_retry = function(info) retries[#retries + 1] = info end } }
      for k, v in pairs(extra or {}) do o[k] = v end
      return rctasks.new(o)
    end
    local c = client()
    local failed, stuck = sim.task(acct.key, {}), sim.task(acct.key, { queue = false })
    local id = sim.task(acct.key, { queue = false })
    local function keep(_, e) errs[#errs + 1] = e end
    keep(client("http://127.0.0.1:" .. free_port() .. "/v1"):get(id))             -- transport
    sim.faults(acct.key, { { kind = "status", status = 401, body = "html" } }); keep(c:get(id)) -- http
    sim.faults(acct.key, { { kind = "status", status = 503, times = 2 } }); keep(c:get(id))  -- http, retried
    sim.faults(acct.key, { { kind = "invalid_json" } }); keep(c:get(id))                    -- decode
    sim.faults(acct.key, { { kind = "big", bytes = 2000000 } })
    keep(client(nil, { max_body = 1000 }):get(id))                                         -- body cap
    keep(c:wait(failed, { timeout = 5, interval = 0.02, jitter = 0 }))                     -- task
    keep(c:wait(stuck, { timeout = 0.2, interval = 0.02, jitter = 0 }))                    -- timeout
    keep(client(sim.tls_url()):get(id))                                                    -- TLS
    local kinds = {}
    for _, e in ipairs(errs) do
      kinds[e.kind] = true
      assert_no_keys(e, acct, "a " .. e.kind .. " error")
    end
    for _, k in ipairs({ "transport", "http", "decode", "task", "timeout" }) do assert.is_true(kinds[k], k) end
    assert.is_true(#retries > 0)
    assert_no_keys(retries, acct, "on_retry's info")
    c:close()
  end)

  it("never reach a proxy in clear: http:// ignores the proxy variables, https:// tunnels", function()
    local acct = sim.account()
    local proxy = scripted.start([[ return function(conn) conn:request() conn:close() end ]])
    local tls_target = sim.tls_url():match("^https://([^/]+)")
    local script = ([[
      local core, curl = require "rctasks.core", require "rctasks.transport.curl"
      local c = require("rctasks").new{ api_key = %q, secret_key = %q, base_url = %q, retry = false }
      local tasks, err = c:list()
      io.write(tasks and "listed" or tostring(err.code))
      local h = core.http(curl.options{ ca_file = %q, timeout = 5 }) -- one handle: the proxy per request
      for _, url in ipairs({ %q, %q, %q }) do io.write(" ", tostring(h:request("GET", url) or "failed")) end
    ]]):format(acct.key, acct.secret, sim.url(), sim.ca(), sim.url() .. "/tasks", sim.tls_url() .. "/tasks",
      sim.url() .. "/tasks")
    local before = sim.stats(acct.key).requests
    local p = proxy.url
    local out = child(("http_proxy=%s HTTP_PROXY=%s ALL_PROXY=%s all_proxy=%s https_proxy=%s"):format(p, p, p, p, p),
      script)
    local events = proxy:events()
    proxy:stop()
    assert.equal("listed 401 failed 401", out) -- the unauthenticated http:// requests got the simulator's 401
    assert.equal(before + 1, sim.stats(acct.key).requests)
    assert.same({ "accept 1", "request 1 CONNECT " .. tls_target, "close 1" }, events)
  end)

  it("are scrubbed from a server's answer that echoes them back", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, {})
    local echo = "bad request from key " .. acct.key .. " with secret " .. acct.secret
    sim.faults(acct.key, {
      { kind = "status", status = 400, text = '{"message":"' .. echo .. '"}', content_type = "application/json" },
      { kind = "status", status = 400, text = echo } })
    for _ = 1, 2 do
      local t, err = c:get(id)
      assert.is_nil(t)
      assert.equal(400, err.status)
      assert.matches("[redacted]", err.body, 1, true) -- the echo arrived, and was scrubbed
      assert_no_keys(err, acct, "an echoing server's error")
    end
    c:close()
  end)
end)

describe("a hostile server", function()
  local trap = assert(socket.bind("127.0.0.1", 0))
  trap:settimeout(0)
  local _, trap_port = trap:getsockname()

  it("cannot redirect the client, nor its keys, to another host", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, {})
    for _, status in ipairs({ 301, 302, 303, 307, 308 }) do
      sim.faults(acct.key, { { kind = "redirect", status = status,
        location = "http://127.0.0.1:" .. trap_port .. "/collect" } })
      local t, err = c:get(id)
      assert.is_nil(t)
      assert.equal(status, err.status)
      assert.matches("not followed", err.message, 1, true)
    end
    assert.is_nil(trap:accept(), "the other host got a connection")
    c:close()
  end)

  it("cannot make the client buffer a 20 MB body past max_body 1 MB (RSS stays bounded)", function()
    local c, acct = fresh({ max_body = 1024 * 1024 })
    local id = sim.task(acct.key, {})
    collectgarbage()
    local before = rss()
    for _, fault in ipairs({ { kind = "big", bytes = 20 * 1024 * 1024 },
                             { kind = "big", bytes = 2 ^ 40, length = false } }) do
      sim.faults(acct.key, { fault })
      local t, err = c:get(id)
      assert.is_nil(t)
      assert.equal("too_large", err.code); assert.equal("CURLE_FILESIZE_EXCEEDED", err.curl_code)
      assert.is_false(err.retryable)
    end
    local grew = rss() - before
    assert.is_true(grew < 8 * 1024 * 1024, ("RSS grew by %d bytes"):format(grew))
    assert.is_table(c:get(id)) -- and the client still works
    c:close()
  end)

  it("is capped at 8 MiB even when max_body is not set", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "big", bytes = 9 * 1024 * 1024 } })
    local t, err = c:get(sim.task(acct.key, {}))
    assert.is_nil(t)
    assert.equal("too_large", err.code); assert.equal("CURLE_FILESIZE_EXCEEDED", err.curl_code)
    c:close()
  end)

  it("cannot make the client buffer an endless header block (cut at 64 KiB)", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, {})
    collectgarbage()
    local before = rss()
    sim.faults(acct.key, { { kind = "huge_headers", bytes = 16 * 1024 * 1024 } })
    local t, err = c:get(id)
    assert.is_nil(t)
    assert.equal("too_large", err.code); assert.equal("CURLE_FILESIZE_EXCEEDED", err.curl_code)
    assert.matches("headers", err.message, 1, true)
    local grew = rss() - before
    assert.is_true(grew < 8 * 1024 * 1024, ("RSS grew by %d bytes"):format(grew))
    c:close()
  end)

  it("gets its error bodies cut to a few KiB in the error value", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 400, text = ("e"):rep(100000) } })
    local _, err = c:get(sim.task(acct.key, {}))
    assert.equal(400, err.status)
    assert.is_true(#err.body > 0 and #err.body <= 4096, #err.body)
    c:close()
  end)
end)
