-- rctasks.redis, the RESP2 client of the Redis store: every reply type against a real redis-server
-- (the suite's, RCTASKS_REDIS_URL, or one of its own), AUTH and databases, EVALSHA and NOSCRIPT,
-- reconnecting after a restart; and scripted servers (helpers/scripted) that drop, stall and send
-- hostile RESP, each answered nil, err without a raise, in bounded time and memory.
local core = require "rctasks.core"
local redis = require "rctasks.redis"
local R = require "helpers.redis"
local scripted = require "helpers.scripted"

local function unique(prefix) return prefix .. ":" .. string.format("%x%x", os.time(), math.random(1, 2 ^ 30)) end

-- Every string a table holds, keys and nested tables included.
local function strings_of(t, out, seen)
  out, seen = out or {}, seen or {}
  if seen[t] then return out end
  seen[t] = true
  for k, v in pairs(t) do
    for _, x in ipairs({ k, v }) do
      if type(x) == "string" then out[#out + 1] = x elseif type(x) == "table" then strings_of(x, out, seen) end
    end
  end
  return out
end

describe("rctasks.redis against redis-server", function()
  local own, url, c
  setup(function()
    url = R.url()
    if not url then own = R.start(); url = own.url end
  end)
  teardown(function() if own then own:stop() end end)
  before_each(function() c = redis.new{ url = url, timeout = 2 } end)
  after_each(function() c:close() end)

  it("answers every reply type as a plain Lua value", function()
    local k = unique("t")
    assert.equal("PONG", c:call("PING"))                                  -- status
    assert.equal("OK", c:call("SET", k, "a\0b\r\nc"))
    assert.equal("a\0b\r\nc", c:call("GET", k))                           -- bulk, binary-safe
    assert.equal("OK", c:call("SET", k, ""))
    assert.equal("", c:call("GET", k))                                    -- empty bulk
    assert.is_false(c:call("GET", k .. ":none"))                          -- nil bulk
    assert.equal(-5, c:call("INCRBY", k .. ":n", -5))                     -- integer
    assert.equal(2 ^ 53 - 1, c:call("INCRBY", k .. ":n", 2 ^ 53 + 4))   -- a float argument sent whole
    assert.equal(2 ^ 53 - 0.5, c:call("INCRBYFLOAT", k .. ":f", 2 ^ 53 - 0.5) + 0)
    assert.equal(3, c:call("RPUSH", k .. ":l", "x", 42, 1.5))
    assert.same({ "x", "42", "1.5" }, c:call("LRANGE", k .. ":l", 0, -1)) -- array; numbers sent as Redis reads them
    assert.same({}, c:call("LRANGE", k .. ":none", 0, -1))               -- empty array
    assert.is_false(c:call("BLPOP", k .. ":none", "0.01"))               -- nil array
    assert.same({ 1, { "two", { 3, false } }, { err = "OOPS boom" } },   -- nested, with a nil and an error inside
      c:eval("return {1, {'two', {3, false}}, redis.error_reply('OOPS boom')}"))
    local v, err, kind = c:call("LPUSH", k, "x")                          -- an error reply
    assert.is_nil(v)
    assert.matches("^WRONGTYPE", err)
    assert.equal("redis", kind)
  end)

  it("keeps its connection across calls and error replies; close() lets it go", function()
    local id = c:call("CLIENT", "ID")
    assert.is_number(id)
    assert.is_nil(c:call("NOSUCHCOMMAND"))
    assert.equal(id, c:call("CLIENT", "ID"))
    c:close()
    assert.is_true(c:call("CLIENT", "ID") > id)
  end)

  it("selects the database of the URL or the db option on its connections", function()
    local k = unique("db")
    local five = redis.new{ url = url:gsub("/%d+$", "") .. "/5", timeout = 2 }
    local six = redis.new{ url = url:gsub("/%d+$", ""), db = 6, timeout = 2 }
    assert.equal("OK", five:call("SET", k, "in five"))
    assert.is_false(six:call("GET", k))
    assert.is_false(c:call("GET", k))
    assert.equal("in five", redis.new{ url = url, db = 5 }:call("GET", k))
    assert.matches(" db=6 ", six:call("CLIENT", "INFO"))
    five:call("DEL", k)
  end)

  it("runs scripts by EVALSHA, and again by EVAL when the server lost them (NOSCRIPT)", function()
    local function calls(name)
      return tonumber(c:call("INFO", "commandstats"):match("cmdstat_" .. name .. ":calls=(%d+)") or 0)
    end
    local script = "return {KEYS[1], ARGV[1], '" .. unique("s") .. "'}"
    assert.same("k", c:eval(script, { "k" }, { "a" })[1])
    local eval, evalsha = calls("eval"), calls("evalsha")
    assert.same("b", c:eval(script, { "k" }, { "b" })[2])
    assert.equal(eval, calls("eval"))
    assert.equal(evalsha + 1, calls("evalsha"))
    assert.equal("OK", c:call("SCRIPT", "FLUSH"))
    assert.same("c", c:eval(script, { "k" }, { "c" })[2])
    assert.equal(eval + 1, calls("eval"))
    local v, err, kind = c:eval("return redis.call('NOSUCH')")
    assert.is_nil(v)
    assert.matches("Unknown Redis command", err)
    assert.equal("redis", kind)
  end)

  it("raises at the caller's line on misuse, never for what a server does", function()
    for _, bad in ipairs({
      function() c:call() end, function() c:call("SET", "k", {}) end, function() c:call("SET", "k", nil) end,
      function() c:call("SET", "k", 0 / 0) end, function() c:call("SELECT", 1) end, function() c:call("multi") end,
      function() c:call("CLIENT", "REPLY", "OFF") end, function() c:eval(nil) end,
      function() redis.new{ bogus = 1 } end, function() redis.new{} end, function() redis.new{ url = "http://x" } end,
      function() redis.new{ url = "rediss://h" } end, function() redis.new{ url = "redis://h:99999" } end,
      function() redis.new{ url = "redis://h/x" } end, function() redis.new{ url = "redis://h?db=1" } end,
      function() redis.new{ url = "redis://h", host = "h" } end, function() redis.new{ host = "h", timeout = 0 } end,
    }) do
      local ok, err = pcall(bad)
      assert.is_false(ok)
      assert.matches("^spec/22%-redis_spec%.lua:%d+: rctasks%.redis", err)
    end
    local ok, err = pcall(redis.new, { url = "redis://:hunter2-password@h/x" })
    assert.is_false(ok)
    assert.is_nil(err:find("hunter2", 1, true))
  end)

  it("sends the password on every new connection, and never lets it out", function()
    local srv = R.start{ auth = true }
    finally(function() srv:stop() end)
    local pw = srv.password
    local good = redis.new{ url = "redis://:" .. pw .. "@127.0.0.1:" .. srv.port .. "/2", timeout = 2 }
    assert.equal("PONG", good:call("PING"))
    assert.matches(" db=2 ", good:call("CLIENT", "INFO"))
    assert.equal("PONG", redis.new{ host = "127.0.0.1", port = srv.port, password = pw }:call("PING"))
    assert.equal("PONG", redis.new{ url = "redis://default:" .. pw .. "@127.0.0.1:" .. srv.port }:call("PING"))
    local v, err, kind = good:call("NOSUCHCOMMAND", "with", pw) -- Redis quotes the arguments back
    assert.is_nil(v)
    assert.equal("redis", kind)
    assert.matches("[redacted]", err, 1, true)
    assert.is_nil(err:find(pw, 1, true))
    local wrong = redis.new{ url = "redis://:x" .. pw .. "@127.0.0.1:" .. srv.port, timeout = 2 }
    v, err, kind = wrong:call("PING")
    assert.is_nil(v)
    assert.equal("auth", kind)
    assert.matches("WRONGPASS", err)
    v, err, kind = redis.new{ url = "redis://127.0.0.1:" .. srv.port }:call("PING")
    assert.is_nil(v)
    assert.equal("redis", kind)
    assert.matches("^NOAUTH", err)
    for _, client in ipairs({ good, wrong }) do
      assert.is_nil(tostring(client):find(pw, 1, true))
      for _, s in ipairs(strings_of(client)) do assert.is_nil(s:find(pw, 1, true), "password in the client table") end
    end
    -- after a restart, the kept connection is found closed and a fresh one authenticates again
    local id = good:call("CLIENT", "ID")
    srv:restart()
    assert.equal("PONG", good:call("PING"))
    assert.matches(" db=2 ", good:call("CLIENT", "INFO"))
    assert.is_true(good:call("CLIENT", "ID") <= id) -- a new server counts client ids afresh
  end)

  it("reconnects after the server restarts, and says connect while it is down", function()
    local srv = R.start()
    finally(function() srv:stop() end)
    local cl = redis.new{ url = srv.url, timeout = 1 }
    assert.equal("OK", cl:call("SET", "k", "v"))
    srv:restart()
    assert.is_false(cl:call("GET", "k")) -- the first call after the restart already works (nothing persisted)
    srv:down()
    local t0 = core.now()
    local v, err, kind = cl:call("PING")
    assert.is_nil(v)
    assert.equal("connect", kind)
    assert.matches("127%.0%.0%.1:" .. srv.port, err)
    assert.is_true(core.now() - t0 < 1.5)
    srv:restart()
    assert.equal("PONG", cl:call("PING"))
  end)

  it("round-trips a 1 MiB value", function()
    local k, big = unique("big"), string.rep("0123456789abcdef", 65536)
    assert.equal("OK", c:call("SET", k, big, "PX", 10000))
    assert.equal(big, c:call("GET", k))
    c:call("DEL", k)
  end)
end)

describe("rctasks.redis against a misbehaving server", function()
  local srv
  setup(function() srv = scripted.start(R.HOSTILE) end)
  teardown(function() srv:stop() end)

  -- Runs one command with the Lua heap left uncollected meanwhile: everything it allocated counts.
  local function measured(client, what)
    collectgarbage("collect")
    collectgarbage("stop")
    local before, t0 = collectgarbage("count"), core.now()
    local ok, v, err, kind = pcall(client.call, client, "GET", what)
    local kib, secs = collectgarbage("count") - before, core.now() - t0
    collectgarbage("restart")
    assert.is_true(ok, tostring(v))
    return v, err, kind, kib, secs
  end

  local function accepted()
    local n = 0
    for _, e in ipairs(srv:events()) do if e:find("^accept ") then n = n + 1 end end
    return n
  end

  for _, case in ipairs(R.HOSTILE_CASES) do
    local what, says = case[1], case[2]
    it("answers " .. what .. " with nil, a protocol error, at once and in bounded memory", function()
      local cl = redis.new{ host = "127.0.0.1", port = srv.port, timeout = 5 }
      local v, err, kind, kib, secs = measured(cl, what)
      assert.is_nil(v)
      assert.equal("protocol", kind, err)
      assert.matches(says, err)
      assert.matches("^bad reply from 127%.0%.0%.1:%d+/0: ", err)
      assert.is_true(secs < 2, ("%.2fs"):format(secs))
      -- the reply cap (16 MiB) is read before it is refused, and read once into pieces, once joined
      local cap = what == "over_reply" and 48 * 1024 or 2 * 1024
      assert.is_true(kib < cap, ("%.0f KiB allocated"):format(kib))
      local before = accepted()
      assert.equal("PONG", cl:call("PING"))
      assert.equal(before + 1, accepted(), "the broken connection must not be used again")
    end)
  end

  it("cuts a silent server, and one trickling a reply, at the call's deadline", function()
    for _, what in ipairs({ "silent", "trickle" }) do
      local cl = redis.new{ host = "127.0.0.1", port = srv.port, timeout = 0.5 }
      local v, err, kind, _, secs = measured(cl, what)
      assert.is_nil(v)
      assert.equal("timeout", kind, err)
      assert.is_true(secs >= 0.45 and secs < 1.2, ("%.2fs"):format(secs)) -- a trickle would go on for 10 s
      assert.equal("PONG", cl:call("PING"))
    end
  end)

  it("says closed when the server drops the connection, and reconnects for the next call", function()
    local cl = redis.new{ host = "127.0.0.1", port = srv.port, timeout = 2 }
    local v, err, kind = measured(cl, "drop")
    assert.is_nil(v)
    assert.equal("closed", kind, err)
    assert.equal("PONG", cl:call("PING"))
  end)

  it("does not keep a connection that sent more than it was asked for", function()
    local cl = redis.new{ host = "127.0.0.1", port = srv.port, timeout = 2 }
    assert.equal("ONE", cl:call("GET", "two_replies"))
    assert.equal("PONG", cl:call("PING")) -- not "TWO"
  end)
end)
