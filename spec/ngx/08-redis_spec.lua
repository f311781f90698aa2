-- The Redis store inside nginx, over cosockets: spec/21's checks run in a request, a worker keeps
-- answering while its requests wait on Redis, pooled connections are authenticated once and
-- never cross databases or passwords, hostile RESP and a trickling server are handled as outside
-- nginx, and where nginx has no cosockets the client says so instead of blocking or raising.
local socket = require "socket"
local H = require "ngx.harness"
local R = require "helpers.redis"
local scripted = require "helpers.scripted"

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
end

describe("the Redis store inside nginx", function()
  local own, url, srv, auth, hostile

  setup(function()
    url = R.url()
    if not url then own = R.start(); url = own.url end
    auth = R.start{ auth = true }
    hostile = scripted.start(R.HOSTILE)
    local stage = {}
    for i, part in ipairs(H.STAGE) do stage[i] = part end
    stage[#stage + 1] = "spec/21-store_spec.lua"  -- run inside nginx by handlers.store_spec
    stage[#stage + 1] = "spec/helpers/sys.lua"
    srv = H.start(H.config{
      workers = 1,
      main = "env RCTASKS_REDIS_URL;",
      http = table.concat({
        "  lua_shared_dict probe 1m;",
        "  init_by_lua_block { require('redis_handlers').init() }",
        "  init_worker_by_lua_block { require('redis_handlers').init_worker() }",
      }, "\n"),
      server = table.concat({
        "    location = /ping { content_by_lua_block { require('handlers').ping() } }",
        "    location = /store-spec { content_by_lua_block { require('redis_handlers').store_spec() } }",
        "    location = /call { content_by_lua_block { require('redis_handlers').call() } }",
        "    location = /probe { content_by_lua_block { require('redis_handlers').probe() } }",
        "    location = /set-phase {",
        "      set_by_lua_block $kind { local c = require('rctasks.redis').new{ url = os.getenv('RCTASKS_REDIS_URL') }",
        "        local _, _, kind = c:call('PING'); return tostring(kind) }",
        "      return 200 $kind;",
        "    }",
      }, "\n"),
    }, { env = { RCTASKS_REDIS_URL = url }, stage = stage })
  end)

  teardown(function()
    if srv then srv:stop() end
    if hostile then hostile:stop() end
    if auth then auth:stop() end
    if own then own:stop() end
  end)

  local function call(cmd, args, headers, extra)
    local status, v = srv:get("/call?cmd=" .. cmd .. "&args=" .. table.concat(args or {}, ",") .. (extra or ""),
      headers, 30)
    assert.equal(200, status, type(v) == "string" and v or nil)
    assert.is_true(v.ok, v.v) -- never raised
    return v
  end

  it("passes every check of spec/21 over cosockets, for the memory, file and redis stores", function()
    local status, v = srv:get("/store-spec", nil, 60)
    assert.equal(200, status, type(v) == "string" and v or H.log(srv))
    local ran = {}
    for _, r in ipairs(v.results) do
      assert.is_true(r.ok, r.name .. ": " .. tostring(r.err))
      ran[r.name:match("^the (%w+) store")] = (ran[r.name:match("^the (%w+) store")] or 0) + 1
    end
    assert.is_true((ran.memory or 0) >= 6, "memory checks ran")
    assert.is_true((ran.redis or 0) >= 8, "redis checks ran")
    assert.is_true((ran.file or 0) >= 6, "file checks ran (flock and fsync inside a worker)")
    assert.is_nil(H.log(srv):find("[error]", 1, true), H.log(srv))
  end)

  it("keeps the worker answering while 10 of its requests wait 1 s each on Redis", function()
    local conns = {}
    for i = 1, 10 do conns[i] = H.open(srv, "/call?cmd=BLPOP&args=rctasks-ngx-nothing-" .. i .. ",1") end
    socket.sleep(0.1)
    local lat = {}
    for i = 1, 20 do
      local t0 = socket.gettime()
      assert.equal(200, (srv:get("/ping", nil, 10)))
      lat[i] = socket.gettime() - t0
      socket.sleep(0.02)
    end
    local worst = math.max(unpack and unpack(lat) or table.unpack(lat))
    print(("# /ping while 10 BLPOPs of 1 s wait on one worker: median %.1f ms, worst %.1f ms")
      :format(median(lat) * 1000, worst * 1000))
    assert.is_true(worst < 0.2, ("worst ping %.0f ms"):format(worst * 1000))
    for i = 1, 10 do
      local status, body = H.finish(conns[i])
      assert.equal(200, status)
      local v = require("helpers.sim").decode(body)
      assert.is_true(v.ok)
      assert.is_false(v.v) -- BLPOP timed out on the server: a nil array
      assert.is_true(v.secs >= 0.9 and v.secs < 3, "BLPOP took " .. v.secs)
    end
  end)

  it("authenticates a pooled connection once, and keeps databases and passwords apart", function()
    local base = "127.0.0.1:" .. auth.port
    local h3 = { ["x-redis-url"] = "redis://:" .. auth.password .. "@" .. base .. "/3" }
    local h4 = { ["x-redis-url"] = "redis://:" .. auth.password .. "@" .. base .. "/4" }
    local function connections()
      return tonumber(call("INFO", { "stats" }, h3).v:match("total_connections_received:(%d+)"))
    end
    local id, before = call("CLIENT", { "ID" }, h3).v, connections()
    for _ = 1, 3 do
      assert.equal(id, call("CLIENT", { "ID" }, h3).v)
      assert.matches(" db=3 ", call("CLIENT", { "INFO" }, h3).v)
      assert.matches(" db=4 ", call("CLIENT", { "INFO" }, h4).v)
    end
    assert.equal(before + 1, connections()) -- db 4's; db 3's was made before
    local wrong = call("PING", nil, { ["x-redis-url"] = "redis://:x" .. auth.password .. "@" .. base .. "/3" })
    assert.equal("auth", wrong.kind)
    assert.is_nil(wrong.err:find(auth.password, 1, true))
    local none = call("PING", nil, { ["x-redis-url"] = "redis://" .. base .. "/3" }) -- its SELECT is refused
    assert.equal("auth", none.kind)
    assert.matches("NOAUTH", none.err)
    assert.is_nil(H.log(srv):find(auth.password, 1, true), "password in nginx's log")
  end)

  it("finds pooled connections gone after the server restarts: the next request already works", function()
    local own_srv = R.start()
    finally(function() own_srv:stop() end)
    local h = { ["x-redis-url"] = own_srv.url }
    local id = call("CLIENT", { "ID" }, h).v
    assert.equal(id, call("CLIENT", { "ID" }, h).v) -- pooled
    own_srv:restart()
    local v = call("PING", nil, h)
    assert.equal("PONG", v.v, tostring(v.err))
    own_srv:down()
    v = call("PING", nil, h)
    assert.equal("connect", v.kind, tostring(v.err))
  end)

  it("answers hostile RESP and a trickling server with nil, err within the deadline", function()
    local h = { ["x-redis-url"] = "redis://127.0.0.1:" .. hostile.port }
    for _, case in ipairs(R.HOSTILE_CASES) do
      local v = call("GET", { case[1] }, h)
      assert.equal("protocol", v.kind, case[1] .. ": " .. tostring(v.err))
      assert.matches(case[2], v.err)
      assert.is_true(v.secs < 2, case[1] .. " took " .. v.secs)
    end
    for _, what in ipairs({ "silent", "trickle" }) do
      local v = call("GET", { what }, h, "&timeout=0.5")
      assert.equal("timeout", v.kind, what .. ": " .. tostring(v.err))
      assert.is_true(v.secs >= 0.45 and v.secs < 1.2, what .. " took " .. v.secs)
    end
    assert.equal("PONG", call("PING", nil, h).v)
  end)

  it("says phase where nginx has no cosockets, and works from a timer", function()
    local status, body = srv:get("/set-phase")
    assert.equal(200, status)
    assert.equal("phase", body)
    local _, v = srv:get("/probe")
    assert.is_true(v.init_worker.ok) -- returned, did not raise
    assert.equal("phase", v.init_worker.kind)
    assert.matches("init_worker", v.init_worker.err)
    assert.equal("PONG", v.timer.v)
  end)
end)
