-- Background waits at scale and across a reload: one scheduler per worker serves every recorded
-- task of the account through the workers' shared board (one GET /tasks a round for all of them),
-- and a reload loses none: the new workers resume what the old ones were waiting on.
local sim = require "helpers.sim"
local H = require "ngx.harness"
local socket = require "socket"

describe("background waits (one scheduler per worker)", function()
  local srv, acct

  setup(function()
    acct = sim.account({ step = 0.6 })
    srv = H.start(H.config{
      workers = 2,
      main = "env RCTASKS_NGX_KEY; env RCTASKS_NGX_SECRET; env RCTASKS_NGX_URL;",
      http = table.concat({ "  lua_shared_dict rctasks 8m;",
                            "  init_worker_by_lua_block { require('handlers').bg_serve() }" }, "\n"),
      server = table.concat({
        "    location = /bg-spawn { content_by_lua_block { require('handlers').bg_spawn() } }",
        "    location = /bg-result { content_by_lua_block { require('handlers').bg_result() } }",
      }, "\n"),
    }, { env = { RCTASKS_NGX_KEY = acct.key, RCTASKS_NGX_SECRET = acct.secret, RCTASKS_NGX_URL = sim.url() } })
  end)

  teardown(function() if srv then srv:stop() end end)

  local function states(ids) -- 50 ids a request: a request line stays under nginx's 8 KiB
    local out = {}
    for i = 1, #ids, 50 do
      local part = {}
      for j = i, math.min(i + 49, #ids) do part[#part + 1] = ids[j] end
      local status, v = srv:get("/bg-result?ids=" .. table.concat(part, ","))
      assert.equal(200, status, type(v) == "string" and v or nil)
      for _, st in ipairs(v.states) do out[#out + 1] = st end
    end
    return out
  end

  local function wait_all_done(ids, seconds)
    local deadline = socket.gettime() + seconds
    local s
    repeat
      s = states(ids)
      local waiting = 0
      for _, st in ipairs(s) do if st == "waiting" or st == "none" then waiting = waiting + 1 end end
      if waiting == 0 then return s end
      socket.sleep(0.2)
    until socket.gettime() > deadline
    return s
  end

  it("serves 300 waits with about one request a round, not one per wait", function()
    local ids = {}
    for i = 1, 300 do ids[i] = sim.task(acct.key, { queue = false }) end
    local before = sim.stats(acct.key).requests
    local t0 = socket.gettime()
    for i = 1, 300, 50 do
      local batch = {}
      for j = i, i + 49 do batch[#batch + 1] = ids[j] end
      assert.equal(202, (srv:post("/bg-spawn?ids=" .. table.concat(batch, ","))))
    end
    local s = wait_all_done(ids, 30)
    local took = socket.gettime() - t0
    for i, st in ipairs(s) do assert.equal("completed", st, ids[i]) end
    local spent = sim.stats(acct.key).requests - before
    -- rounds every 0.2 to 0.5 s: a few requests a second, whatever the number of waits
    assert.is_true(spent <= 8 * took + 10, spent .. " requests in " .. took .. " s for 300 waits")
  end)

  it("loses no wait across a reload: the new workers resume them", function()
    local ids = {}
    for i = 1, 5 do ids[i] = sim.task(acct.key, { queue = false, outcome = i == 5 and "error" or nil }) end
    sim.config(acct.key, { step = 2 }) -- (tasks made before keep their timeline; these are slow:)
    for i = 6, 10 do ids[i] = sim.task(acct.key, { queue = false }) end
    assert.equal(202, (srv:post("/bg-spawn?ids=" .. table.concat(ids, ","))))
    socket.sleep(0.5)
    assert.is_true(H.reload(srv), "nginx -s reload")
    local s = wait_all_done(ids, 30)
    for i, st in ipairs(s) do
      assert.equal(i == 5 and "failed" or "completed", st, "task " .. i)
    end
    sim.config(acct.key, { step = 0.6 })
  end)
end)
