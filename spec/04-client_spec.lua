-- The client's contract without a network: configuration, URLs, headers, error values, secrets.
local rctasks = require "rctasks"
local fake = require "helpers.fake"

local KEY, SECRET = "ak-0123456789abcdef", "sk-fedcba9876543210"

local function client(answers, extra)
  local opts = { api_key = KEY, secret_key = SECRET }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return fake.client(answers, opts)
end

describe("rctasks.new", function()
  it("raises on an unknown option, naming it", function()
    assert.has_error(function() client({}, { timeuot = 3 }) end, "rctasks.new: unknown option 'timeuot'")
  end)

  it("raises when a key is missing or an option has the wrong type", function()
    assert.has_error(function() rctasks.new{ secret_key = SECRET } end, "rctasks.new: api_key is missing")
    assert.has_error(function() rctasks.new{ api_key = KEY } end, "rctasks.new: secret_key is missing")
    assert.has_error(function() client({}, { timeout = "30" }) end)
  end)

  it("refuses http:// to anything but a loopback host", function()
    assert.has_error(function() client({}, { base_url = "http://api.redislabs.com/v1" }) end)
    assert.has_error(function() client({}, { base_url = "http://10.0.0.1/v1" }) end)
    assert.has_error(function() client({}, { base_url = "ftp://127.0.0.1/v1" }) end)
    assert.has_error(function() client({}, { base_url = "https://user:pw@api.example.test/v1" }) end)
    for _, url in ipairs({ "http://127.0.0.1:8080/v1", "http://localhost/v1", "http://[::1]:9/v1",
                           "https://api.example.test/v1/" }) do
      local c = client({}, { base_url = url })
      assert.equal(url:gsub("/$", ""), c.base_url)
    end
  end)

  it("never shows the keys when printed", function()
    local c = client({})
    assert.not_matches(KEY, tostring(c), 1, true)
    for k, v in pairs(c) do
      assert.not_equal(KEY, v, k); assert.not_equal(SECRET, v, k)
    end
  end)

  it("closes idempotently and refuses requests after close", function()
    local c = client({ { 200, fake.task_body(fake.ID, "received") } })
    c:close(); c:close()
    assert.has_error(function() c:get(fake.ID) end, "rctasks: client is closed")
  end)
end)

describe("client:get", function()
  it("sends the auth, accept and user-agent headers to /tasks/{id}", function()
    local c, tr = client({ { 200, fake.task_body(fake.ID, "received") } })
    local t = assert(c:get(fake.ID))
    assert.equal("received", t.status)
    local r = tr.requests[1]
    assert.equal("GET", r.method)
    assert.equal("https://api.example.test/v1/tasks/" .. fake.ID, r.url)
    assert.equal(KEY, r.headers["x-api-key"])
    assert.matches("^rctasks/" .. rctasks.VERSION:gsub("%.", "%%.") .. " fake/1$", r.headers["user-agent"])
  end)

  it("refuses ids that could steer the URL", function()
    local c, tr = client({ { 200, "{}" } })
    for _, id in ipairs({ "../subscriptions", "a?b", "a#b", "a\0b", "a b", "a/b", "%2e%2e", "",
                          string.rep("a", 10000) }) do
      assert.has_error(function() c:get(id) end)
    end
    assert.has_error(function() c:get(42) end, "rctasks: task id must be a string, got number")
    assert.equal(0, #tr.requests)
  end)

  it("returns a task with its methods", function()
    local c = client({ { 200, fake.task_body(fake.ID, "processing-completed",
      ',"response":{"resourceId":51055029},"links":[{"rel":"resource","type":"GET","href":"https://x/r/1"}]') } })
    local t = assert(c:get(fake.ID))
    assert.is_true(t:done()); assert.is_true(t:ok()); assert.is_false(t:failed())
    assert.equal(51055029, t:resource_id())
    assert.equal("https://x/r/1", t:link("resource"))
    assert.equal(1715350474, math.floor(t:time()))
    assert.equal("task " .. fake.ID .. " subscriptionCreateRequest processing-completed", tostring(t))
  end)

  it("answers an HTTP error with nil, err naming the task, its status and the API's message", function()
    local c = client({ { 404, '{"timestamp":"2024-05-10T14:14:34Z","status":404,"error":"Not Found",' ..
      '"message":"Task not found","path":"/v1/tasks/x"}' } })
    local t, err = c:get(fake.ID)
    assert.is_nil(t)
    assert.equal("http", err.kind); assert.equal(404, err.status); assert.is_false(err.retryable)
    assert.equal(fake.ID, err.task_id)
    assert.equal("GET", err.method)
    local line = tostring(err)
    assert.matches(fake.ID, line, 1, true)
    assert.matches("HTTP 404 Not Found: Task not found", line, 1, true)
  end)

  it("takes err.code from the API's error type, never from Spring's reason phrase", function()
    local _, err = client({ { 404, '{"status":404,"error":"Not Found","message":"Task not found"}' } }):get(fake.ID)
    assert.is_nil(err.code)
    _, err = client({ { 400, '{"error":{"type":"SUBSCRIPTION_NOT_FOUND","status":"404 NOT_FOUND",' ..
      '"description":"Subscription 7 not found"}}' } }):get(fake.ID)
    assert.equal("SUBSCRIPTION_NOT_FOUND", err.code)
    assert.matches("Subscription 7 not found", err.message, 1, true)
  end)

  it("reads the title of an nginx HTML error page", function()
    local c = client({ { 401, "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n" ..
      "<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n</body>\r\n</html>\r\n",
      { ["content-type"] = "text/html" } } })
    local _, err = c:get(fake.ID)
    assert.equal(401, err.status)
    assert.equal("HTTP 401 Unauthorized: 401 Authorization Required", err.message)
    assert.matches("^<html>", err.body)
  end)

  it("keeps the keys out of errors even when a server echoes them", function()
    local c = client({ { 400, '{"message":"bad key ' .. KEY .. ' / ' .. SECRET .. '"}' } })
    local _, err = c:get(fake.ID)
    for _, s in ipairs({ tostring(err), err.message, err.body }) do
      assert.not_matches(KEY, s, 1, true); assert.not_matches(SECRET, s, 1, true)
    end
    assert.matches("[redacted]", err.message, 1, true)
  end)

  it("keeps echoed keys out of on_retry and out of decode errors too", function()
    local seen = {}
    local echo = "echo " .. KEY .. " " .. SECRET
    local c = client({ { 503, echo }, { 200, "<html>" .. echo .. "</html>" } },
      { retry = { on_retry = function(i) seen[#seen + 1] = i end } })
    local _, err = c:get(fake.ID)
    assert.equal("decode", err.kind)
    assert.equal(1, #seen)
    for _, s in ipairs({ seen[1].error.body, seen[1].error.message, err.body, err.message, tostring(err) }) do
      assert.not_matches(KEY, s, 1, true); assert.not_matches(SECRET, s, 1, true)
    end
    assert.matches("[redacted]", seen[1].error.body, 1, true)
    assert.matches("[redacted]", err.body, 1, true)
  end)

  it("answers a body that is not a task with a decode error", function()
    local c = client({ { 200, "<html>oops</html>" } })
    local _, err = c:get(fake.ID)
    assert.equal("decode", err.kind)
    assert.equal(fake.ID, err.task_id)
    assert.matches("byte", err.message)
  end)

  it("answers a transport failure with kind transport, method and url", function()
    local c = client({ { err = { code = "CURLE_COULDNT_CONNECT", message = "refused", retryable = true,
      unsent = true } } }, { retry = false })
    local _, err = c:get(fake.ID)
    assert.equal("transport", err.kind); assert.equal("CURLE_COULDNT_CONNECT", err.code)
    assert.is_true(err.retryable)
    assert.equal("https://api.example.test/v1/tasks/" .. fake.ID, err.url)
  end)
end)

describe("client:list", function()
  it("accepts the wrapped list and the bare array", function()
    local a = fake.task_body("a", "received")
    local b = fake.task_body("b", "processing-completed")
    for _, body in ipairs({ '{"tasks":[' .. a .. "," .. b .. "]}", "[" .. a .. "," .. b .. "]" }) do
      local list = assert(client({ { 200, body } }):list())
      assert.equal(2, #list)
      assert.equal("a", list[1].taskId); assert.is_true(list[2]:ok())
    end
  end)

  it("treats a missing or empty tasks member as an empty list", function()
    assert.same({}, assert(client({ { 200, "{}" } }):list()))
    assert.same({}, assert(client({ { 200, '{"tasks":[]}' } }):list()))
  end)
end)

describe("the default client", function()
  -- In a child process whose environment is set here: the test must not depend on the caller's.
  local function child(env, code)
    local sys = require "helpers.sys"
    local cpath = package.cpath:gsub("build/asan/", "build/5.4/") -- a child never loads the ASan build
    local prelude = ("package.path = %q .. package.path; package.cpath = %q; ")
      :format("lua/?.lua;lua/?/init.lua;", cpath)
    local p = assert(io.popen("env -u REDISCLOUD_ACCESS_KEY -u REDISCLOUD_SECRET_KEY -u REDISCLOUD_URL " .. env ..
      " " .. sys.LUA .. " -e '" .. prelude .. code .. "' 2>&1"))
    local out = p:read("*a")
    p:close()
    return out
  end

  it("comes from REDISCLOUD_* and says which variable is missing", function()
    local out = child("", 'print(pcall(require("rctasks").get, "abc"))')
    assert.matches("rctasks: REDISCLOUD_ACCESS_KEY is not set", out, 1, true)
    out = child("REDISCLOUD_ACCESS_KEY=access-key-1", 'print(pcall(require("rctasks").get, "abc"))')
    assert.matches("rctasks: REDISCLOUD_SECRET_KEY is not set", out, 1, true)
    out = child("REDISCLOUD_ACCESS_KEY=access-key-1 REDISCLOUD_SECRET_KEY=secret-key-1 " ..
      "REDISCLOUD_URL=http://127.0.0.1:9/v1", 'local c = require("rctasks").default(); print(c.base_url)')
    assert.equal("http://127.0.0.1:9/v1\n", out)
  end)

  it("refuses a REDISCLOUD_URL holding CR, LF or a space, as it refuses such a base_url", function()
    for _, url in ipairs({ [["$(printf 'https://api.redislabs.com/v1\r\nX-Evil:1')"]],
                           "'https://api.redislabs.com /v1'", [["$(printf 'https://api.redislabs.com/v1\t')"]] }) do
      local out = child("REDISCLOUD_ACCESS_KEY=access-key-1 REDISCLOUD_SECRET_KEY=secret-key-1 REDISCLOUD_URL=" .. url,
        'print(pcall(require("rctasks").default))')
      assert.matches("^false\t.*base_url contains a control character or a space", out)
    end
  end)
end)
