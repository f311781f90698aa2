-- Proof that rctasks never blocks an nginx worker: while 20 waits are in flight on the only
-- worker, an unrelated /ping keeps answering at once; with the curl transport forced, it freezes.
local socket = require "socket"
local sim = require "helpers.sim"
local H = require "ngx.harness"

local WAITS, PINGS = 20, 50

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

describe("a worker with 20 waits in flight", function()
  local srv

  setup(function()
    srv = H.start(H.config{
      workers = 1,
      server = table.concat({
        "    location = /ping { content_by_lua_block { require('handlers').ping() } }",
        "    location = /wait { content_by_lua_block { require('handlers').wait() } }",
      }, "\n"),
    })
  end)

  teardown(function() if srv then srv:stop() end end)

  -- Starts 20 waits (tasks of ~2 s; each API answer takes 50 ms), pings 50 times meanwhile.
  -- Returns ping latencies (seconds), the time the last ping ended, and the waits' answers.
  local function run(transport)
    local a = sim.account({ step = 1, latency = 0.05 })
    local conns = {}
    for i = 1, WAITS do
      local id = sim.task(a.key, { queue = false, resourceId = i })
      conns[i] = H.open(srv, "/wait?interval=0.5&timeout=60&id=" .. id,
        H.account_headers(a, { ["x-test-transport"] = transport }))
    end
    socket.sleep(0.2) -- the waits are under way
    local lat = {}
    for i = 1, PINGS do
      local t0 = socket.gettime()
      local status, body = srv:get("/ping", nil, 20)
      lat[i] = socket.gettime() - t0
      assert.equal(200, status)
      assert.equal("pong", body)
      socket.sleep(0.01)
    end
    local last_ping = socket.gettime()
    local answers = {}
    for i = 1, WAITS do
      local status, body = H.finish(conns[i])
      assert.equal(200, status)
      answers[i] = sim.decode(body)
    end
    local worst = math.max(table.unpack(lat))
    print(("# %s transport, %d waits in flight: /ping median %.1f ms, worst %.1f ms over %d pings")
      :format(transport, WAITS, median(lat) * 1000, worst * 1000, PINGS))
    return lat, worst, last_ping, answers
  end

  it("keeps answering /ping within milliseconds with the cosocket transport", function()
    local _, worst, last_ping, answers = run("ngx")
    local first_done = math.huge
    for i, v in ipairs(answers) do
      assert.is_true(v.ok, v.line)
      assert.equal(i, v.resource_id)
      first_done = math.min(first_done, v.at)
    end
    assert.truthy(last_ping < first_done, "all pings must fall while every wait was still in flight")
    assert.truthy(worst < 0.2, ("worst ping %.1f ms"):format(worst * 1000))
  end)

  it("freezes /ping with the curl transport forced (what the cosocket transport avoids)", function()
    local _, worst, _, answers = run("curl")
    for _, v in ipairs(answers) do assert.is_true(v.ok, v.line) end
    assert.truthy(worst >= 0.3, ("worst ping %.1f ms: the blocking transport should have frozen the worker")
      :format(worst * 1000))
  end)
end)
