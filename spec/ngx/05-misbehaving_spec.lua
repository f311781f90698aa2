-- The cosocket transport against servers that misbehave in exact ways (spec/helpers/scripted.lua):
-- bytes trickled just fast enough to keep a read alive, strange status lines, header blocks built
-- to make a parser slow, bytes past the answer, a connection dropped after reading a POST.
local socket = require "socket"
local scripted = require "helpers.scripted"
local H = require "ngx.harness"

local MARGIN = 0.6 -- scheduling slack on a shared 2-core machine, seconds

-- How many connections the scripted server accepted.
local function connections(s)
  local n = 0
  for _, e in ipairs(s:events()) do if e:match("^accept") then n = n + 1 end end
  return n
end

-- A scripted server that lives until the end of the running test, whatever happens in it.
local function start(source)
  local s = scripted.start(source)
  finally(function() s:stop() end)
  return s
end

local function esc(s) return (s:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)) end

-- A scripted server that answers every request of every connection with `answer(conn, req)`.
local function serve(answer_source)
  return start([[
local answer = ]] .. answer_source .. [[

return function(conn)
  while true do
    local req = conn:request()
    if not req or answer(conn, req) == false then return end
  end
end]])
end

-- `head`, then `piece` every 0.1 s for 6 s (far past any timeout below), then `tail`.
local function trickle(head, piece, tail)
  return serve(([[function(conn)
  if not conn:send(%q) then return false end
  for _ = 1, 60 do
    conn:sleep(0.1)
    if not conn:send(%q) then return false end
  end
  conn:send(%q)
  return false
end]]):format(head, piece, tail or ""))
end

describe("the cosocket transport against misbehaving servers", function()
  local srv

  setup(function()
    local names = { "raw", "wait", "calls" }
    local locs = {}
    for i, name in ipairs(names) do
      locs[i] = ("    location = /%s { content_by_lua_block { require('handlers').%s() } }"):format(name, name)
    end
    srv = H.start(H.config{ workers = 1, server = table.concat(locs, "\n") })
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  -- /raw against `url`: the transport's answer (or error view) and the seconds it took.
  local function raw(url, query)
    local t0 = socket.gettime()
    local status, v = srv:get("/raw?url=" .. esc(url) .. (query or ""))
    local elapsed = socket.gettime() - t0
    assert.equal(200, status, type(v) == "string" and v or nil)
    return v, elapsed
  end

  describe("one deadline per request, however slowly the server sends", function()
    local cases = {
      { what = "the header block", head = "HTTP/1.1 200 OK\r\nX-Slow: ", piece = "a",
        tail = "\r\nContent-Length: 2\r\n\r\nok" },
      { what = "a Content-Length body", head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", piece = "a" },
      { what = "a chunked body, one small chunk at a time",
        head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", piece = "1\r\na\r\n", tail = "0\r\n\r\n" },
      { what = "a chunked body, inside one chunk",
        head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n", piece = "a" },
    }
    for _, c in ipairs(cases) do
      it("cuts a server trickling " .. c.what .. " at the request's timeout, with code timeout", function()
        local s = trickle(c.head, c.piece, c.tail)
        local v, elapsed = raw(s.url .. "/v1/tasks", "&timeout=1")
        assert.is_false(v.ok, "the trickled answer was accepted")
        assert.equal("timeout", v.code, v.message)
        assert.is_true(v.retryable)
        assert.truthy(elapsed >= 0.9, ("cut early, after %.2f s"):format(elapsed))
        assert.truthy(elapsed <= 1 + MARGIN, ("a 1 s request took %.2f s"):format(elapsed))
      end)
    end

    it("ends a client:wait of 2 s near 2 s against a server that trickles every answer", function()
      local s = trickle("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{", " ")
      local t0 = socket.gettime()
      local status, v = srv:get("/wait?timeout=2&id=0b7e2a52-0000-4000-8000-000000000001", {
        ["x-test-key"] = "k-trickle", ["x-test-secret"] = "s-trickle", ["x-test-url"] = s.url .. "/v1" })
      local elapsed = socket.gettime() - t0
      assert.equal(200, status)
      assert.is_false(v.ok)
      assert.equal("timeout", v.kind, v.line)
      assert.truthy(elapsed >= 1.9, ("the wait ended early, after %.2f s"):format(elapsed))
      assert.truthy(elapsed <= 2 + MARGIN, ("a 2 s wait took %.2f s"):format(elapsed))
    end)
  end)

  it("reads only 'HTTP/1.0' or 'HTTP/1.1', a space and three digits as a status line", function()
    local s = serve([[function(conn, req)
  local lines = { ["/2000"] = "HTTP/1.1 2000 OK", ["/20"] = "HTTP/1.1 20 OK", ["/200x"] = "HTTP/1.1 200x OK",
                  ["/1.2"] = "HTTP/1.2 200 OK", ["/bare"] = "HTTP/1.1 200", ["/1.0"] = "HTTP/1.0 200 OK" }
  conn:send(lines[req.target] .. "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
  return false
end]])
    local got = {}
    for _, path in ipairs({ "/2000", "/20", "/200x", "/1.2", "/bare", "/1.0" }) do got[path] = raw(s.url .. path) end
    for _, bad in ipairs({ "/2000", "/20", "/200x", "/1.2" }) do
      assert.is_false(got[bad].ok, bad .. " was read as an answer")
      assert.equal("bad_response", got[bad].code, bad)
    end
    for _, good in ipairs({ "/bare", "/1.0" }) do
      local v = got[good]
      assert.is_true(v.ok, good .. ": " .. tostring(v.message))
      assert.equal(200, v.status)
      assert.equal("ok", v.body)
    end
  end)

  it("parses header blocks built to make a backtracking parser slow in milliseconds, values intact", function()
    -- 8 informational answers and the real one, each 7 lines of 8 KiB with runs of spaces inside
    local s = serve([[function(conn)
  local pad = string.rep(" ", 8000)
  local lines = {}
  for i = 1, 6 do lines[i] = "X-Pad-" .. i .. ": a" .. pad .. "b" end
  lines[7] = " c" .. pad .. "d"
  local block = table.concat(lines, "\r\n") .. "\r\n"
  for _ = 1, 8 do conn:send("HTTP/1.1 100 Continue\r\n" .. block .. "\r\n") end
  conn:send("HTTP/1.1 200 OK\r\n" .. block .. "Content-Length: 2\r\n\r\nok")
end]])
    local v, elapsed = raw(s.url .. "/v1/tasks", "&timeout=30")
    assert.is_true(v.ok, v.message)
    assert.equal("ok", v.body)
    local pad = string.rep(" ", 8000)
    assert.equal("a" .. pad .. "b", v.headers["x-pad-1"])
    assert.equal("a" .. pad .. "b c" .. pad .. "d", v.headers["x-pad-6"])
    assert.truthy(elapsed < 5, ("parsing took %.2f s"):format(elapsed))
  end)

  -- `n` requests in a row to a server that sends `bytes` for each: the bodies read, and how many
  -- connections they took (one each when none may be pooled).
  local function in_a_row(bytes, n)
    local s = serve(("function(conn) conn:send(%q) end"):format(bytes))
    local v = raw(s.url .. "/v1/tasks", "&n=" .. n)
    local conns = connections(s)
    assert.is_true(v.ok, v.message)
    local bodies = {}
    for i = 1, n do bodies[i] = v.answers[i].body end
    return bodies, conns
  end

  it("does not pool a connection that still holds bytes past the answer", function()
    -- the extra bytes are a whole second answer nobody asked for: the stream is out of step
    local bodies, conns = in_a_row("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
      .. "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale", 3)
    assert.same({ "ok", "ok", "ok" }, bodies)
    assert.equal(3, conns)
  end)

  it("reads an answer framed by both chunking and Content-Length by its chunks, and does not pool it", function()
    local bodies, conns = in_a_row("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
      .. "2\r\nok\r\n0\r\n\r\n", 2)
    assert.same({ "ok", "ok" }, bodies)
    assert.equal(2, conns)
  end)

  describe("a pooled connection that dies after reading the request", function()
    -- Connection 1 answers its first request with keep-alive, reads the second and closes
    -- without an answer; every later connection answers everything.
    local function dying()
      return start([[
local ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
return function(conn, n)
  if n == 1 then
    if not conn:request() then return end
    conn:send(ok)
    conn:request()
    return conn:close()
  end
  while conn:request() do conn:send(ok) end
end]])
    end

    local function calls(s, list)
      local status, v = srv:get("/calls?calls=" .. list, { ["x-test-key"] = "k-dying", ["x-test-secret"] = "s-dying",
        ["x-test-url"] = s.url .. "/v1" })
      assert.equal(200, status)
      return v.calls
    end

    it("sends a POST on a connection of its own, never a pooled one", function()
      local s = dying()
      local out = calls(s, "GET:/tasks,POST:/subscriptions")
      assert.is_true(out[1].ok)
      assert.is_true(out[2].ok, out[2].message) -- the pooled connection 1 would have swallowed it
      local on = {}
      for _, e in ipairs(s:events()) do
        local n = e:match("^request (%d+) POST")
        if n then on[#on + 1] = tonumber(n) end
      end
      assert.same({ 2 }, on)
    end)

    it("never sends a POST twice: dropped after being read, the error is closed and not unsent", function()
      local s = start([[
local ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
return function(conn)
  while true do
    local req = conn:request()
    if not req then return end
    if req.method == "POST" then return conn:close() end -- read it, then drop the connection
    conn:send(ok)
  end
end]])
      local out = calls(s, "GET:/tasks,POST:/subscriptions")
      assert.is_true(out[1].ok)
      assert.is_false(out[2].ok)
      assert.equal("transport", out[2].kind)
      assert.equal("closed", out[2].code, out[2].message)
      assert.is_false(out[2].unsent)
      assert.equal(1, s:requests("POST"))
    end)

    it("retries a GET once on a fresh connection, which answers", function()
      local s = dying()
      local out = calls(s, "GET:/tasks,GET:/tasks")
      local events = s:events()
      local gets = s:requests("GET")
      assert.is_true(out[1].ok)
      assert.is_true(out[2].ok, out[2].message)
      assert.equal(3, gets) -- two on the connection that died, one on the fresh one
      local fresh = {}
      for _, e in ipairs(events) do
        local n = e:match("^request (%d+) GET")
        if n then fresh[#fresh + 1] = tonumber(n) end
      end
      assert.same({ 1, 1, 2 }, fresh)
    end)
  end)
end)
