-- A request that may have reached the server is never sent again behind the caller's back: not
-- by libcurl's own resend after a kept-alive connection drops, not by the retry policy (a POST
-- goes again only with retry_post). Each server misbehaves in one exact way (helpers/scripted).
local core = require "rctasks.core"
local rctasks = require "rctasks"
local scripted = require "helpers.scripted"
local sys = require "helpers.sys"

-- Every script answers like this, on a connection kept alive.
local ANSWER = [[
local BODY = '{"tasks":[]}'
local function answer(conn)
  return conn:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    .. #BODY .. "\r\n\r\n" .. BODY)
end
]]

-- Reads every POST and drops its connection without a word; answers everything else.
local DROP_POSTS = ANSWER .. [[
return function(conn)
  while true do
    local req = conn:request()
    if not req or req.method == "POST" then return conn:close() end
    answer(conn)
  end
end
]]

-- Connection 1 answers its first request, then reads the second and drops; the others answer.
local DROP_SECOND_ON_FIRST = ANSWER .. [[
return function(conn, n)
  if n == 1 then
    if conn:request() then answer(conn) end
    conn:request()
    return conn:close()
  end
  while conn:request() do answer(conn) end
end
]]

-- The same drop, but the listener closes first: libcurl's resend on a fresh connection is refused.
local DROP_SECOND_AND_UNLISTEN = ANSWER .. [[
return function(conn)
  if conn:request() then answer(conn) end
  conn:request()
  conn:close_listener()
  conn:close()
end
]]

local function client(srv, retry)
  return rctasks.new{ api_key = "resend-access-key", secret_key = "resend-secret-key",
    base_url = srv.url .. "/v1", retry = retry, limiter = false, timeout = 5, sleep = function() end }
end

describe("a POST is never sent twice", function()
  local srv
  after_each(function() if srv then srv:stop() srv = nil end end)

  for _, case in ipairs({ { "retry = false", false }, { "the default retry policy", nil } }) do
    it("a POST read and dropped after a kept-alive GET is read once, with " .. case[1], function()
      srv = scripted.start(DROP_POSTS)
      local c = client(srv, case[2])
      assert(c:list()) -- leaves a kept-alive connection for the POST to ride
      local t, err = c:submit("POST", "/subscriptions", { name = "x" })
      c:close()
      assert.is_nil(t)
      assert.equal(1, srv:requests("POST"))
      assert.equal("transport", err.kind)
      assert.equal("closed", err.code); assert.equal("CURLE_GOT_NOTHING", err.curl_code)
      assert.is_false(err.unsent)
    end)
  end

  it("is sent once per attempt when the caller opts in with retry_post", function()
    srv = scripted.start(DROP_POSTS)
    local retries = 0
    local c = client(srv, { retry_post = true, attempts = 3, on_retry = function() retries = retries + 1 end })
    assert(c:list())
    local t, err = c:submit("POST", "/subscriptions", { name = "x" })
    c:close()
    assert.is_nil(t)
    assert.equal("closed", err.code); assert.equal("CURLE_GOT_NOTHING", err.curl_code)
    assert.equal(2, retries)
    assert.equal(3, srv:requests("POST"))
  end)

  it("a GET dropped on its kept-alive connection is resent by libcurl and succeeds", function()
    srv = scripted.start(DROP_SECOND_ON_FIRST)
    local c = client(srv, false)
    assert(c:list())
    local tasks, err = c:list()
    c:close()
    assert.is_nil(err)
    assert.same({}, tasks)
    assert.equal(3, srv:requests("GET"))
    assert.truthy(table.concat(srv:events(), "\n"):find("request 2 GET /v1/tasks", 1, true))
  end)

  it("a GET whose hidden resend cannot connect is not reported unsent", function()
    srv = scripted.start(DROP_SECOND_AND_UNLISTEN)
    local c = client(srv, false)
    assert(c:list())
    local tasks, err = c:list()
    c:close()
    assert.is_nil(tasks)
    assert.equal(2, srv:requests("GET"))
    assert.equal("transport", err.kind)
    -- the resend's connect, after the read request
    assert.equal("connect", err.code); assert.equal("CURLE_COULDNT_CONNECT", err.curl_code)
    assert.is_false(err.unsent)
  end)

  it("a POST to a closed port is unsent, so the default policy may send it again", function()
    local retries = 0
    local c = rctasks.new{ api_key = "resend-access-key", secret_key = "resend-secret-key",
      base_url = "http://127.0.0.1:" .. sys.free_port() .. "/v1", limiter = false, sleep = function() end,
      retry = { on_retry = function() retries = retries + 1 end } }
    local t, err = c:submit("POST", "/subscriptions", { name = "x" })
    c:close()
    assert.is_nil(t)
    assert.equal("connect", err.code); assert.equal("CURLE_COULDNT_CONNECT", err.curl_code)
    assert.is_true(err.unsent)
    assert.equal(3, retries) -- attempts = 4 by default
  end)

  it("core.http says whether a failed request may have left: false only when it surely did not", function()
    local h = assert(core.http(require("rctasks.transport.curl").options{ timeout = 5 }))
    local ok, code, _, sent = h:request("POST", "http://127.0.0.1:" .. sys.free_port() .. "/x", nil, "{}")
    assert.is_nil(ok)
    assert.equal("CURLE_COULDNT_CONNECT", code)
    assert.is_false(sent)
    srv = scripted.start(DROP_POSTS)
    ok, code, _, sent = h:request("POST", srv.url .. "/x", nil, "{}")
    h:close()
    assert.is_nil(ok)
    assert.equal("CURLE_GOT_NOTHING", code)
    assert.is_true(sent)
  end)
end)
