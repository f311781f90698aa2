-- What the Redis store adds to spec/21's checks: one budget for many processes, Redis's clock,
-- prefixes taken literally by SCAN, ttls already over, and failures of the server as nil, err.
local socket = require "socket"
local R = require "helpers.redis"
local scripted = require "helpers.scripted"
local sys = require "helpers.sys"
local store = require "rctasks.store.redis"

local function unique(prefix)
  return prefix .. ":" .. string.format("%x%x", os.time(), math.random(1, 2 ^ 30)) .. ":"
end

-- Each child takes `sends` sends from one budget and prints the wall-clock time of each.
local CHILD = [[
local socket = require "socket"
local st = require("rctasks.store.redis").new{ url = arg[1], timeout = 5 }
local got = 0
while got < tonumber(arg[3]) do
  local wait = assert(st:budget(arg[2], 10, 1))
  if wait == 0 then got = got + 1; print(("%.6f"):format(socket.gettime())) else socket.sleep(wait) end
end
]]

-- Under scripts/asan the core the children load is built with ASan: they need its runtime preloaded.
local function preload()
  local runtime = (sys.read("/proc/self/maps") or ""):match("(/%S+/libclang_rt%.asan[%w_.-]*%.so)")
  return runtime and ("LD_PRELOAD='" .. runtime .. "' ") or ""
end

describe("the redis store", function()
  local own, url, st, p
  setup(function()
    url = R.url()
    if not url then own = R.start(); url = own.url end
  end)
  teardown(function() if own then own:stop() end end)
  before_each(function() st, p = store.new{ url = url, timeout = 2 }, unique("t23") end)

  it("keeps 4 processes together under one budget: no second holds more than 10 sends", function()
    local dir = assert(io.popen("mktemp -d /tmp/rctasks-budget.XXXXXX")):read("*l")
    finally(function() sys.sh("rm -rf " .. dir) end)
    sys.write(dir .. "/child.lua", CHILD)
    local env = ("%sLUA_PATH='%s' LUA_CPATH='%s' "):format(preload(), package.path, package.cpath)
    for i = 1, 4 do
      local cmd = ("%s%s %s/child.lua %s %s 8 >%s/out%d 2>&1 &"):format(env, sys.LUA, dir, url, p .. "b", dir, i)
      assert(sys.sh(cmd, true))
    end
    local times
    local t0 = socket.gettime()
    repeat
      socket.sleep(0.2)
      times = {}
      for i = 1, 4 do
        for t in (sys.read(dir .. "/out" .. i) or ""):gmatch("[^\n]+") do times[#times + 1] = tonumber(t) end
      end
    until #times >= 32 or socket.gettime() - t0 > 20
    assert.equal(32, #times, sys.read(dir .. "/out1"))
    table.sort(times)
    -- a child notes its time only after its send was counted (on Redis's clock), and may be kept from
    -- the CPU in between: hence the margin; four budgets apart would put 11 sends in about 0.25 s
    for i = 11, #times do
      assert.is_true(times[i] - times[i - 10] >= 1 - 0.1, ("11 sends within %.3fs"):format(times[i] - times[i - 10]))
    end
    assert.is_true(times[#times] - times[1] < 4.5, "the budget went unused") -- 32 sends at 10/s: a bit over 3 s
  end)

  it("tells time by the server: every store on it agrees, whatever this process's clock says", function()
    local t = st.redis:call("TIME")
    local server = tonumber(t[1]) + tonumber(t[2]) / 1e6
    local a, b = st:now(), store.new{ url = url }:now()
    assert.is_true(math.abs(a - server) < 0.05, a - server)
    assert.is_true(math.abs(a - b) < 0.05, a - b)
    socket.sleep(0.2)
    local later = st:now()
    assert.is_true(later - a >= 0.19 and later - a < 0.5, later - a)
  end)

  it("takes a prefix literally, glob characters and all", function()
    for _, k in ipairs({ "a*b:1", "aXb:1", "a?b:1", "[ab]:1", "a:1", "a\\b:1", "ab:1" }) do st:set(p .. k, "v") end
    assert.same({ p .. "a*b:1" }, st:keys(p .. "a*b:"))
    assert.same({ p .. "a?b:1" }, st:keys(p .. "a?b:"))
    assert.same({ p .. "[ab]:1" }, st:keys(p .. "[ab]:"))
    assert.same({ p .. "a\\b:1" }, st:keys(p .. "a\\b:"))
    assert.same({}, st:keys(p .. "*"))
  end)

  it("treats a ttl already over as gone at once, as the memory store does", function()
    assert.is_true(st:set(p .. "s", "v", 0))
    assert.is_false(st:get(p .. "s"))
    assert.is_true(st:add(p .. "a", "v", -1))
    assert.is_false(st:get(p .. "a"))
    assert.is_true(st:lease(p .. "l", "a", 0))
    assert.is_true(st:lease(p .. "l", "b", 5))
    assert.is_false(st:lease(p .. "l", "a", 0)) -- b holds it
  end)

  it("lets a budget's sorted set expire with its window, and fills budget_used only to the limit", function()
    assert.equal(0, st:budget(p .. "b", 3, 0.3))
    local pttl = st.redis:call("PTTL", p .. "b")
    assert.is_true(pttl > 0 and pttl <= 302, pttl)
    assert.is_true(st:budget_used(p .. "u", 50, 5, 10))
    assert.equal(5, st.redis:call("ZCARD", p .. "u"))
    socket.sleep(0.4)
    assert.equal(0, st.redis:call("EXISTS", p .. "b"))
  end)

  it("answers nil, err for what the server refuses or garbles, and never raises", function()
    st:set(p .. "str", "v")
    local v, err = st:budget(p .. "str", 1, 1) -- not a sorted set
    assert.is_nil(v)
    assert.matches("WRONGTYPE", err)
    local srv = scripted.start(R.HOSTILE)
    finally(function() srv:stop() end)
    local bad = store.new{ url = "redis://127.0.0.1:" .. srv.port, timeout = 1 }
    for name, call in pairs({
      get = function() return bad:get("deep") end, keys = function() return bad:keys("x") end,
      lease = function() return bad:lease("k", "o", 1) end, now = function() return bad:now() end,
      budget = function() return bad:budget("k", 1, 1) end,
    }) do
      local ok, r, e = pcall(call)
      assert.is_true(ok, name .. " raised: " .. tostring(r))
      assert.is_nil(r, name)
      assert.is_string(e, name)
    end
    assert.has_error(function() store.new{ url = url, client = st.redis } end)
  end)
end)
