-- The benchmark runner (`make bench`) once, with tiny sizes, so that it cannot rot: it starts its own
-- simulator and nginx, runs every case, and writes its report. No timing is asserted here.

-- Run `script` smoke=1 writing to `out`: what it printed, and the report it wrote.
local function smoke(script, out)
  local p = assert(io.popen("lua5.4 " .. script .. " smoke=1 out=" .. out .. " 2>&1"))
  local log = p:read("*a")
  local ok = p:close()
  assert(ok, script .. " smoke=1 failed:\n" .. log)
  local f = assert(io.open(out, "r"))
  local report = f:read("*a")
  f:close()
  return log, report
end

-- The first line of `report` starting with `prefix`.
local function first_row(report, prefix)
  for line in report:gmatch("[^\n]+") do
    if line:sub(1, #prefix) == prefix then return line end
  end
end

describe("make bench (smoke run)", function()
  local out, report, log

  setup(function()
    out = os.tmpname()
    log, report = smoke("bench/run.lua", out)
  end)

  teardown(function() if out then os.remove(out) end end)

  local function row(prefix) return first_row(report, prefix) end

  it("writes a report with the machine, the versions and every section", function()
    assert.truthy(report:find("Machine: %d+ cores"))
    for _, v in ipairs({ "Lua 5%.4", "LuaJIT", "libcurl", "nginx/", "lua%-cjson", "LuaSocket" }) do
      assert.truthy(report:find(v), "version of " .. v)
    end
    for _, s in ipairs({ "## 1. Decode", "## 2. Request path", "## 3. Waiting", "## 4. Memory", "## 5. Hostile input",
                          "## Targets" }) do
      assert.truthy(report:find(s, 1, true), s)
    end
  end)

  it("times every decoder on Lua 5.4 and LuaJIT", function()
    for _, lua in ipairs({ "lua5.4", "luajit" }) do
      local r = row("| 200 tasks (") and report:match("| 200 tasks %([^|]*| " .. lua .. " |([^\n]*)")
      assert.truthy(r, "list row for " .. lua)
      assert.falsy(r:find("| - |", 1, true), "a decoder gave no figure on " .. lua)
    end
  end)

  it("runs every client of the request path over HTTP and HTTPS", function()
    for _, name in ipairs({ "rctasks", "c_libcurl", "rctasks_fresh", "socket_http", "socket_ka", "curl_cli" }) do
      local n = select(2, report:gsub("\n| " .. name .. " | [^|]+ | %d", ""))
      assert.is_true(n >= 2, name .. " has a figure over HTTP and HTTPS")
    end
  end)

  it("rides one connection and one TLS handshake for all gets over HTTPS", function()
    local r = assert(row("| https |"), "sim https row")
    local gets, seen, conns, hs = r:match("^| https | (%d+) | (%d+) | (%d+) | (%d+) |")
    assert.equal(gets, seen)
    assert.equal("1", conns)
    assert.equal("1", hs)
  end)

  it("serves rctasks from its front nginx, whose workers load it from their prefix", function()
    assert.is_nil(log:find("cosocket case skipped", 1, true), log)
    local r = assert(row("| `client:get` over the cosocket transport"), "nginx cosocket row")
    assert.truthy(r:find("| %d+ |$"), r)
  end)

  it("waits with each schedule and reports memory for both Lua ABIs", function()
    assert.truthy(row("| 5 s |"), "wait row")
    assert.truthy(row("| 5 |"), "wait_all row")
    assert.truthy(row("| lua5.4 | "), "memory lua5.4")
    assert.truthy(row("| luajit | "), "memory luajit")
  end)

  it("times the hostile header blocks and error pages on Lua 5.4 and LuaJIT", function()
    for _, input in ipairs({ "head_inner", "head_folds", "content_length", "title_8m", "spring_8m" }) do
      local r = assert(row("| " .. input .. " |"), "hostile row " .. input)
      assert.truthy(r:match("^| [%w_]+ | %d+ | [%d.]+ | [%d.]+ | [%d.]+ | [%d.]+ |$"), r)
    end
  end)

  it("stops the servers it started", function()
    local dir = log:match("in (/tmp/rctasks%-bench%.%w+)")
    assert.truthy(dir, "the runner names its directory")
    assert.is_nil(io.open(dir .. "/fixed.pid"), "the fixed-body nginx is stopped and its directory gone")
  end)
end)

-- The fleet runner (`make bench-fleet`) once with tiny sizes: it starts its own simulator, Redis
-- and nginx, runs the budget, watch, fault and scale cases, and writes the Fleet section. Every
-- figure must be there; no target (a count or a time) is asserted here. The runner is lua5.4
-- whatever runs busted: once, in the Lua 5.4 run (make test runs this file on three ABIs).
local fleet_describe = (_VERSION == "Lua 5.4" and not rawget(_G, "jit")) and describe or function() end
fleet_describe("make bench-fleet (smoke run)", function()
  local out, report, log

  setup(function()
    out = os.tmpname()
    local f = assert(io.open(out, "w"))
    f:write("# kept\n\nabove the fleet section\n")
    f:close()
    log, report = smoke("bench/fleet.lua", out)
  end)

  teardown(function() if out then os.remove(out) end end)

  local function row(prefix) return first_row(report, prefix) end

  it("writes the Fleet section after what the file held, with the machine and the command", function()
    assert.truthy(report:find("^# kept\n\nabove the fleet section\n"))
    assert.truthy(report:find("\n## Fleet\n", 1, true))
    assert.truthy(report:find("`lua5.4 bench/fleet.lua smoke=1`", 1, true))
    assert.truthy(report:find("Machine: %d+ cores"))
    assert.truthy(report:find("redis%-server [%d.]+"))
  end)

  it("has every budget figure for the shared run, the control and the fault run", function()
    for _, name in ipairs({ "Redis (shared budget)", "no Redis (the control)", "Redis SIGKILLed, restarted" }) do
      local r = row("| " .. name .. " | %d") or row("| " .. name .. " |")
      assert.truthy(r, name)
    end
    local n = 0
    for line in report:gmatch("[^\n]+") do
      if line:match("^| [^|]+ | %d+ | %d+%% | %d+ | [%d.]+x | %d+ | %d+ | %d+ |$") then n = n + 1 end
    end
    assert.equal(3, n, "three budget rows with figures")
    assert.truthy(report:find("Fault run: Redis down from [%d.]+ s to [%d.]+ s%. The worst %d+ s window across the kill"
      .. " held %d+"))
    assert.truthy(report:find("outage %(the local shares alone%) %d+, across the restart %(an empty log%) %d+%."))
  end)

  it("has every watch figure, time-to-notice included", function()
    local n = 0
    for line in report:gmatch("[^\n]+") do
      if line:match("^| [^|]+ | %d+ | [%d.]+ | %d+ | [%d.]+ | [%d.]+ | [%d.]+ | %d+ |$") then n = n + 1 end
    end
    assert.equal(3, n, "three watch rows with figures")
  end)

  it("has the background waits' requests, ping p99s and memory per wait", function()
    local r = assert(row("| 200 |"), "scale row")
    assert.truthy(r:match("^| 200 | %d+ | [%d.]+ | %d+ | [%d.]+ ms | [%d.]+ ms | %-?%d+ B | %-?%d+ B | %d+ |$"), r)
  end)

  it("lists each target with PASS or MISS, and stops everything it started", function()
    local n = 0
    for line in report:gmatch("[^\n]+") do
      if line:match("| PASS |$") or line:match("| MISS |$") then n = n + 1 end
    end
    assert.equal(13, n)
    local dir = log:match("servers in (/tmp/rctasks%-fleet%.%w+)")
    assert.truthy(dir, "the runner names its directory")
    assert.is_nil(io.open(dir .. "/budget.pid"), "its nginx are stopped and its directory gone")
    assert.is_nil(io.open(dir .. "/redis/redis.pid"))
  end)
end)
