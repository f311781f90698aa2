-- Resource hygiene: a client's libcurl handle (and its connection) is freed by close(), by a
-- to-be-closed variable on Lua 5.4, and by the garbage collector; a Lua error raised by the
-- user's on_update callback comes out of wait() as that same error, and the client stays usable.
local rctasks = require "rctasks"
local sim = require "helpers.sim"

local curl = require "rctasks.transport.curl"

-- A client on a curl transport made here, so the spec can watch the transport's libcurl handle.
-- Returns client, account, handle.
local function fresh(cfg)
  local acct = sim.account(cfg)
  local tr = curl.new()
  return rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), transport = tr },
    acct, tr.handle
end

-- Open file descriptors of this process (each kept-alive connection holds one).
local function open_fds()
  local p = assert(io.popen("ls /proc/$PPID/fd")) -- popen's shell: its parent is this process
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

local function full_gc()
  for _ = 1, 4 do collectgarbage() end
end

-- libcurl and OpenSSL open a few files of their own on first use: count from after that.
local function baseline()
  local c, acct = fresh()
  assert(c:get(sim.task(acct.key, {})))
  c:close()
  full_gc()
  return open_fds()
end

describe("closing a client", function()
  it("close() frees the handle, twice is harmless, and later use raises", function()
    local c, acct, h = fresh()
    local id = sim.task(acct.key, {})
    assert(c:get(id))
    assert.equal("rctasks.http (open)", tostring(h))
    c:close()
    assert.equal("rctasks.http (closed)", tostring(h))
    c:close()
    assert.has_error(function() c:get(id) end)
    assert.has_error(function() h:request("GET", sim.url() .. "/tasks") end)
  end)

  it("close() releases the client's connection (file descriptors come back)", function()
    local before = baseline()
    local clients = {}
    for i = 1, 10 do
      local c, acct = fresh()
      assert(c:get(sim.task(acct.key, {})))
      clients[i] = c
    end
    assert.is_true(open_fds() >= before + 10, "each client should hold a connection")
    for _, c in ipairs(clients) do c:close() end
    assert.is_true(open_fds() <= before + 1, ("%d fds open, %d before"):format(open_fds(), before))
  end)

  -- `<close>` is Lua 5.4 syntax: compiled with load() so that this file still parses on LuaJIT.
  local scoped = _VERSION == "Lua 5.4" and not rawget(_G, "jit") and load([[
    local c, h = ...
    do
      local client <close> = c
      assert(tostring(h) == "rctasks.http (open)" and client)
    end
    return h
  ]])
  if scoped then
    it("a <close> variable frees the handle at the end of its block (Lua 5.4)", function()
      local c, _, handle = fresh()
      local h = scoped(c, handle)
      assert.equal("rctasks.http (closed)", tostring(h))
    end)

    it("a <close> variable frees the handle when the block is left by an error (Lua 5.4)", function()
      local h
      local c, _, handle = fresh()
      h = handle
      local ok = pcall(load([[
        local c = ...
        local client <close> = c
        error("leaving the block" .. tostring(client))
      ]]), c)
      assert.is_false(ok)
      assert.equal("rctasks.http (closed)", tostring(h))
    end)
  end

  it("an unreferenced client is collected together with its handle and connection", function()
    local before = baseline()
    local weak = setmetatable({}, { __mode = "v" })
    for i = 1, 10 do
      local c, acct, h = fresh()
      assert(c:get(sim.task(acct.key, {})))
      weak[i] = h
      weak[i + 10] = c
    end
    assert.is_true(open_fds() >= before + 10)
    full_gc()
    assert.is_nil(next(weak), "a client or its handle survived collection")
    assert.is_true(open_fds() <= before + 1, ("%d fds open, %d before"):format(open_fds(), before))
  end)
end)

describe("an error raised in on_update", function()
  it("propagates out of wait() as the very same error value, not as nil, err", function()
    local c, acct = fresh()
    local id = sim.task(acct.key, {})
    local boom = setmetatable({}, { __tostring = function() return "user's boom" end })
    local ok, err = pcall(c.wait, c, id, { interval = 0.02, jitter = 0, on_update = function() error(boom) end })
    assert.is_false(ok)
    assert.equal(boom, err)
    c:close()
  end)

  it("leaves the client usable: the next get succeeds on the same connection", function()
    local c, acct, h = fresh()
    local id = sim.task(acct.key, {})
    local calls = 0
    local ok, err = pcall(c.wait, c, id, { interval = 0.02, jitter = 0, on_update = function(t, prev)
      calls = calls + 1
      if prev then error("stop at the second status: " .. t.status) end
    end })
    assert.is_false(ok)
    assert.matches("stop at the second status", err, 1, true)
    assert.equal(2, calls)
    local t = assert(c:get(id))
    assert.equal(id, t.taskId)
    assert.equal("rctasks.http (open)", tostring(h))
    local st = sim.stats(acct.key)
    assert.equal(1, st.connections)
    assert.equal(1, c:stats().connects)
    local final = assert(c:wait(id, { interval = 0.02, jitter = 0 }))
    assert.is_true(final:ok())
    c:close()
  end)

  it("does not keep the handle alive: a dropped client is still collected", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local c, acct, h = fresh()
      weak[1] = h
      assert.is_false((pcall(c.wait, c, sim.task(acct.key, {}), { on_update = function() error("x") end })))
    end
    full_gc()
    assert.is_nil(weak[1])
  end)
end)
