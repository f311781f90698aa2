-- A hostile server, on a virtual clock: whatever it sends, nothing raises, no call sleeps past the
-- Retry-After cap or its deadline, no key comes back out (however the server spells it), no path
-- leaves the base URL, and every error is one bounded line.
local rctasks = require "rctasks"
local fake = require "helpers.fake"

local ID = fake.ID
local KEY, SECRET = "acc-key-0123456789abcdef", "sec/key+0123456789ABCDEF" -- '/' and '+' as real keys may hold

local function client(answers, extra)
  local o = { api_key = KEY, secret_key = SECRET }
  for k, v in pairs(extra or {}) do o[k] = v end
  return fake.client(answers, o)
end

local function task(status, extra)
  return { 200, fake.task_body(ID, status, extra) }
end

-- Every string reachable from v: values, table keys, nested tables.
local function strings(v, out, seen)
  out, seen = out or {}, seen or {}
  if type(v) == "string" then out[#out + 1] = v
  elseif type(v) == "table" and not seen[v] then
    seen[v] = true
    for k, x in pairs(v) do strings(k, out, seen); strings(x, out, seen) end
  end
  return out
end

-- s and what a reader would make of it: JSON escapes, percent-encoding and HTML character
-- references undone, mixed and nested (the spec's own decoding, not the library's).
local function spellings(s)
  local out = { s }
  for _ = 1, 4 do
    s = s:gsub("\\[uU](%x%x%x%x)", function(h) return tonumber(h, 16) < 128 and string.char(tonumber(h, 16)) end)
      :gsub("\\/", "/"):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
      :gsub("&#(%d+);", function(d) return tonumber(d) < 128 and string.char(tonumber(d)) end)
      :gsub("&#[xX](%x+);", function(h) return tonumber(h, 16) < 128 and string.char(tonumber(h, 16)) end)
    out[#out + 1] = s
  end
  return out
end

local function assert_no_keys(v, what)
  local all = strings(v)
  all[#all + 1] = tostring(v)
  for _, s in ipairs(all) do
    for _, spelled in ipairs(spellings(s)) do
      assert.is_nil(spelled:find(KEY, 1, true), "api key in " .. what .. ": " .. s:sub(1, 80))
      assert.is_nil(spelled:find(SECRET, 1, true), "secret key in " .. what .. ": " .. s:sub(1, 80))
    end
  end
end

-- A JSON string spelling `s` with every character \u-escaped, and with '/' as "\/"; a mix of
-- percent-encoding and JSON escapes; HTML character references.
local function u_escaped(s) return (s:gsub(".", function(c) return string.format("\\u%04x", c:byte()) end)) end
local function slash_escaped(s) return (s:gsub("/", "\\/")) end
local function mixed(s)
  local i = 0
  return (s:gsub(".", function(c)
    i = i + 1
    return i % 2 == 0 and string.format("%%%02X", c:byte()) or string.format("\\u%04x", c:byte())
  end))
end
local function entities(s) return (s:gsub("%d", function(c) return "&#" .. c:byte() .. ";" end)) end

describe("odd server data never raises", function()
  it("an error body whose error.description or error.type is not a string", function()
    for _, body in ipairs({ '{"error":{"description":{},"type":[]}}', '{"error":{"description":[1],"type":7}}',
                            '{"message":{"a":1},"error":[]}', '{"error":{"type":{"x":1}}}', '{"message":false}' }) do
      local c = client({ { 400, body } })
      local ok, t, err = pcall(c.get, c, ID)
      assert.is_true(ok, body .. ": " .. tostring(t))
      assert.is_nil(t)
      assert.equal("http", err.kind)
      assert.is_string(err.message)
      assert.is_true(err.code == nil or type(err.code) == "string", body)
    end
  end)

  it("a processing-error task whose error description is not a string", function()
    for _, e in ipairs({ '{"type":"GENERAL_ERROR","description":{}}', '{"type":"X","description":[]}',
                         '{"description":12}' }) do
      local c = client({ task("processing-error", ',"response":{"error":' .. e .. '}') })
      local ok, t, err = pcall(c.wait, c, ID)
      assert.is_true(ok, e .. ": " .. tostring(t))
      assert.is_nil(t)
      assert.equal("task", err.kind)
      assert.is_string(tostring(err))
    end
  end)

  it("a task with fields named like the task methods: run, pipeline and wait_all still work", function()
    local shadow = ',"ok":true,"done":1,"failed":"no","link":"x","resource_id":"y","time":[],' ..
      '"response":{"resourceId":7,"additionalResourceId":12}'
    local done = '{"taskId":"' .. ID .. '","commandType":"databaseCreateRequest","status":"processing-completed"'
      .. shadow .. '}'
    local c, tr = client({ { 202, done }, { 200, '{"status":"active","name":"db"}' } })
    local ok, t, db = pcall(c.run, c, "POST", "/subscriptions/12/databases", { name = "db" }, { ready = true })
    assert.is_true(ok, tostring(t))
    assert.equal("processing-completed", t.status)
    assert.equal("active", db.status)
    assert.matches("/subscriptions/12/databases/7$", tr.requests[2].url)

    c = client({ { 202, done }, { 200, '{"status":"active"}' } })
    local r = assert(c:pipeline({ { name = "db", path = "/subscriptions/12/databases", body = {} } }))
    assert.equal(7, r.db.id)

    c = client({ task("received", shadow), task("processing-completed", shadow) })
    local out = c:wait_all({ ID })
    assert.equal("processing-completed", out[1].task.status)
  end)

  it("a resourceId too large for a path does not build one", function()
    local c, tr = client({ { 202, '{"taskId":"' .. ID .. '","commandType":"subscriptionCreateRequest",'
      .. '"status":"processing-completed","response":{"resourceId":1e19}}' } })
    local ok, t = pcall(c.run, c, "POST", "/subscriptions", { name = "s" })
    assert.is_true(ok, tostring(t))
    assert.equal("processing-completed", t.status)
    assert.equal(1, #tr.requests)
  end)

  it("wait_ready on a resource that answers an empty body, null or a number: a decode error", function()
    for _, body in ipairs({ "", "null", "42", '"text"', "[1,2]" }) do
      local seen = 0
      local c = client({ { 200, body } })
      local ok, v, err = pcall(c.wait_ready, c, "/subscriptions/1",
        { on_update = function(r) seen = seen + 1; assert(type(r) == "table") end })
      assert.is_true(ok, body .. ": " .. tostring(v))
      assert.is_nil(v)
      assert.equal("decode", err.kind, body)
      assert.equal(0, seen)
    end
  end)
end)

describe("Retry-After", function()
  it("is honoured up to the policy's cap", function()
    local c, tr, clock = client({ { 429, "", { ["retry-after"] = "100" } }, task("received") })
    assert(c:get(ID))
    assert.same({ 100 }, clock.slept)
    assert.equal(2, #tr.requests)
  end)

  it("past the cap, as seconds or as an HTTP date, returns the error at once: no sleep at all", function()
    local far = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 30 * 86400)
    for _, ra in ipairs({ "100000", "99999999999999999999", far }) do
      local c, tr, clock = client({ { 429, "", { ["retry-after"] = ra } }, task("received") })
      local t, err = c:get(ID)
      assert.is_nil(t)
      assert.equal(429, err.status)
      assert.is_true(err.retry_after > 120)
      assert.same({}, clock.slept, ra)
      assert.equal(1, #tr.requests)
      c, tr, clock = client({ { 503, "", { ["retry-after"] = ra } }, task("processing-completed") })
      local w, werr = c:wait(ID, { timeout = 1e6 })
      assert.is_nil(w)
      assert.equal(1, #tr.requests)
      assert.equal(503, werr.status)
      assert.same({}, clock.slept, ra)
    end
  end)

  it("the cap is the policy's max_retry_after", function()
    local c, _, clock = client({ { 429, "", { ["retry-after"] = "300" } }, task("received") },
      { retry = { max_retry_after = 600 } })
    assert(c:get(ID))
    assert.same({ 300 }, clock.slept)
  end)

  it("a wait never sleeps past its deadline whatever the server says", function()
    local c, _, clock = client({ { 503, "", { ["retry-after"] = "110" } } })
    local start = clock.t
    local _, err = c:wait(ID, { timeout = 30 })
    assert.equal("timeout", err.kind)
    assert.is_true(clock.t - start <= 30 + 1e-9)
  end)
end)

describe("keys a server echoes", function()
  local function check(answers, call)
    local c = client(answers, { retry = { attempts = 2, base = 0.01 } })
    local seen = {}
    local c2 = client(answers,
      { retry = { attempts = 2, base = 0.01, on_retry = function(i) seen[#seen + 1] = i end } })
    local ok, v, err = pcall(call, c)
    assert.is_true(ok, tostring(v))
    assert_no_keys({ v, err }, "the result")
    pcall(call, c2)
    assert_no_keys(seen, "on_retry")
    return v, err
  end

  it("never come back, \\u-escaped, with '/' as \\/, or plain, in any field of an error", function()
    for _, spelled in ipairs({ u_escaped(KEY), u_escaped(SECRET), slash_escaped(SECRET), KEY, SECRET,
                               mixed(KEY), entities(SECRET), slash_escaped(SECRET) .. " no percent sign" }) do
      local body = '{"message":"bad credentials ' .. spelled .. '","error":{"description":"' .. spelled ..
        '","type":"' .. spelled .. '"},"' .. spelled .. '":1}'
      local _, err = check({ { 401, body } }, function(c) return c:get(ID) end)
      assert.equal(401, err.status)
      check({ { 503, body } }, function(c) return c:get(ID) end)
      check({ { 200, '{"not":"a task","' .. spelled .. '":"' .. spelled .. '"}' } },
        function(c) return c:get(ID) end)
    end
  end)

  it("never come back in a failed or timed-out task", function()
    for _, spelled in ipairs({ u_escaped(KEY), slash_escaped(SECRET) }) do
      local failed = task("processing-error", ',"description":"' .. spelled .. '","response":{"error":{' ..
        '"type":"' .. spelled .. '","description":"' .. spelled .. '"},"additionalInfo":"' .. spelled .. '"}')
      check({ failed }, function(c) return c:wait(ID) end)
      check({ task("received", ',"description":"' .. spelled .. '"') },
        function(c) return c:wait(ID, { timeout = 5 }) end)
      check({ task("processing-" .. spelled) }, function(c) return c:wait(ID) end)
    end
  end)

  it("never come back from a redirect's Location, plain or percent-encoded", function()
    local pct = SECRET:gsub(".", function(ch) return string.format("%%%02X", ch:byte()) end)
    for _, loc in ipairs({ "https://evil.example/?k=" .. KEY .. "&s=" .. SECRET, "https://evil.example/" .. pct }) do
      local _, err = check({ { 302, "", { location = loc } } }, function(c) return c:get(ID) end)
      assert.equal(302, err.status)
      assert.matches("not followed", err.message, 1, true)
    end
  end)

  it("never come back from a run or a pipeline whose resource echoes them", function()
    local done = task("processing-completed", ',"response":{"resourceId":5}')
    local echo = { 200, '{"status":"error","name":"' .. u_escaped(KEY) .. '"}' }
    check({ { 202, done[2] }, echo }, function(c) return c:run("POST", "/subscriptions", {}, { ready = true }) end)
    check({ { 202, done[2] }, echo }, function(c)
      return c:pipeline({ { name = "s", path = "/subscriptions", body = {} } })
    end)
  end)
end)

describe("paths and links", function()
  it("refuses paths that climb out however they are spelled", function()
    local c, tr = client({ task("received") })
    for _, p in ipairs({ "/..?x", "/..;/x", "/a/..;jsessionid=1/b", "/a/%2e%2e;/b", "/a/.%2e?q", "/a/..%5Cb",
                         "/a/%2E%2E%2Fb", "/.", "/a/.;x/b" }) do
      assert.is_false((pcall(c.request, c, "GET", p)), p)
      assert.is_false((pcall(c.run, c, "POST", p, {})), p)
    end
    assert.equal(0, #tr.requests)
    assert(c:request("GET", "/subscriptions/1/databases?offset=10&path=a/../b")) -- a query is not a path
  end)

  it("follows a task's resource link only to its own origin and under its base path", function()
    -- a create whose task names its resource by link only (no resourceId)
    local function fetched(href)
      local body = '{"taskId":"' .. ID .. '","commandType":"cloudAccountCreateRequest","status":"processing-completed",'
        .. '"links":[{"rel":"resource","type":"GET","href":"' .. href .. '"}]}'
      local c, tr = client({ { 202, body }, { 200, '{"status":"active"}' } })
      assert(c:run("POST", "/cloud-accounts", {}))
      return tr.requests[2] and tr.requests[2].url
    end
    local good = "https://api.example.test/v1/cloud-accounts/1"
    assert.equal(good, fetched(good))
    assert.equal(good, fetched("/v1/cloud-accounts/1"))
    for _, bad in ipairs({ "https://api.example.test/v1/cloud-accounts/..;/admin",
                           "https://api.example.test/v1/../admin",
                           "https://evil.example/v1/cloud-accounts/1", "http://api.example.test/v1/cloud-accounts/1",
                           "https://api.example.test:8443/v1/cloud-accounts/1",
                           "https://api.example.test/other/cloud-accounts/1",
                           "https://api.example.test/v1/cloud-accounts/%2e%2e/x", "javascript:alert(1)",
                           "https://api.example.test/v1/acl/5/acl/roles" }) do -- not a path the API serves
      assert.is_nil(fetched(bad), bad)
    end
  end)

  it("rebases a link under a base URL with a path prefix without doubling /v1", function()
    local body = '{"taskId":"' .. ID .. '","commandType":"cloudAccountCreateRequest","status":"processing-completed",'
      .. '"links":[{"rel":"resource","href":"https://api.example.test/v1/cloud-accounts/9"}]}'
    local c, tr = fake.client({ { 202, body }, { 200, "{}" } },
      { api_key = KEY, secret_key = SECRET, base_url = "https://api.example.test/proxy/v1" })
    assert(c:run("POST", "/cloud-accounts", {}))
    assert.equal("https://api.example.test/proxy/v1/cloud-accounts/9", tr.requests[2].url)
  end)
end)

describe("server text at the caps", function()
  it("parses a resource link of a huge authority in linear time (no freeze)", function()
    local href = "https://" .. ("1"):rep(200000) .. ":x/v1/subscriptions/1"
    local body = '{"taskId":"' .. ID .. '","commandType":"subscriptionCreateRequest","status":"processing-completed",'
      .. '"links":[{"rel":"resource","href":"' .. href .. '"}]}'
    local c, tr = client({ { 202, body } })
    local t0 = os.clock()
    assert(c:run("POST", "/subscriptions", {}))
    assert.is_true(os.clock() - t0 < 5, "took " .. (os.clock() - t0) .. " s of CPU") -- a freeze guard, not a speed test
    assert.equal(1, #tr.requests)
  end)

  it("does not decode a huge error body for its message (memory stays near its size)", function()
    local body = '{"a":[' .. ("{},"):rep(2 * 1024 * 1024) .. '{}],"message":"late"}'
    local c = client({ { 503, body } }, { retry = false })
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    local _, err = c:get(ID)
    local grew = collectgarbage("count") - before
    assert.equal(503, err.status)
    assert.is_true(grew < 32 * 1024, ("heap grew %.0f KiB for a %.0f KiB body"):format(grew, #body / 1024))
  end)

  it("finds the title of a 4 KiB or an 8 MiB 401 page of <title> and spaces at once (no freeze)", function()
    for _, page in ipairs({ "<title>" .. (" "):rep(4089), -- one open tag and spaces: cubic for a backtracking match
                            ("<title>  "):rep(932067) .. "<title>Gone</title>" }) do -- 8 MiB, the title past 4 KiB
      local c = client({ { 401, page, { ["content-type"] = "text/html" } } }, { retry = false })
      local t0 = os.clock()
      local _, err = c:get(ID)
      assert.is_true(os.clock() - t0 < 5, "took " .. (os.clock() - t0) .. " s of CPU") -- a freeze guard, not timing
      assert.equal(401, err.status)
      assert.matches("401", err.message, 1, true)
      assert.is_nil(err.message:find("Gone", 1, true)) -- a title past the first 4 KiB is not looked for
    end
  end)

  it("quotes server text whole or by its size, never a cut piece", function()
    local loc = "https://evil.example/" .. ("A"):rep(1100)
    local c = client({ { 302, "", { location = loc } } })
    local _, err = c:get(ID)
    assert.matches("not followed", err.message, 1, true)
    assert.matches("(1121 bytes of text)", err.message, 1, true)
    c = client({ { 400, '{"message":"' .. ("m"):rep(5000) .. '"}' } })
    _, err = c:get(ID)
    assert.matches("(5000 bytes of text)", err.message, 1, true)
  end)
end)

describe("configuration", function()
  it("refuses a base URL with CR, LF, NUL, tabs or spaces", function()
    for _, url in ipairs({ "https://api.redislabs.com/v1\r\nX-Evil: 1", "https://api.redislabs.com/v1\n",
                           "https://api.redislabs.com\0.evil/v1", "https://api.redislabs.com /v1",
                           "https://api.redislabs.com/v1\t", "http://127.0.0.1:1/v1 HTTP/1.1\r\n\r\nGET /" }) do
      local ok, err = pcall(rctasks.new, { api_key = KEY, secret_key = SECRET, base_url = url })
      assert.is_false(ok, url)
      assert.matches("base_url", err, 1, true)
    end
  end)

  it("refuses keys and a ca_file with control characters", function()
    assert.is_false((pcall(rctasks.new, { api_key = KEY .. "\0", secret_key = SECRET })))
    assert.is_false((pcall(rctasks.new, { api_key = KEY, secret_key = SECRET, ca_file = "/etc/ssl/x\0.pem" })))
  end)
end)

describe("errors people and logs read", function()
  it("tostring is one line, whatever the server put in its message", function()
    local c = client({ { 400, '{"message":"first\\nsecond\\r\\n\\u001b[2Jthird"}' } })
    local _, err = c:get(ID)
    local line = tostring(err)
    assert.is_nil(line:find("[%c]"), line)
    assert.matches("first second", line, 1, true)
  end)

  it("err.message is bounded like err.body", function()
    local c = client({ { 400, '{"message":"' .. ("x"):rep(100000) .. '"}' } })
    local _, err = c:get(ID)
    assert.is_true(#err.message <= 1024, #err.message)
    assert.is_true(#err.body <= 4096)
    assert.is_true(#tostring(err) < 1400)
  end)

  it("concatenates like a string", function()
    local c = client({ { 404, "" } })
    local _, err = c:get(ID)
    assert.equal("failed: " .. tostring(err), "failed: " .. err)
    assert.equal(tostring(err) .. "!", err .. "!")
  end)
end)
