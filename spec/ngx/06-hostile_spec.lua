-- A hostile server against rctasks inside nginx: a Retry-After nginx cannot sleep must not raise,
-- and a background wait's record holds no key, whatever the server echoed.
local sim = require "helpers.sim"
local H = require "ngx.harness"

describe("rctasks in nginx against a hostile server", function()
  local srv

  setup(function()
    srv = H.start(H.config{
      workers = 1,
      http = "  lua_shared_dict rctasks 1m;",
      server = table.concat({
        "    location = /get { content_by_lua_block { require('handlers').get() } }",
        "    location = /spawn { content_by_lua_block { require('handlers').spawn() } }",
        "    location = /result { content_by_lua_block { require('handlers').result() } }",
      }, "\n"),
    })
  end)

  teardown(function() if srv then srv:stop() end end)

  it("answers a Retry-After beyond the cap (ngx.sleep would raise on it) with the 429, at once", function()
    local a = sim.account()
    local id = sim.task(a.key, {})
    local far = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 400 * 86400)
    for _, ra in ipairs({ "99999999999999", "100000", far }) do
      sim.faults(a.key, { { kind = "status", status = 429, retry_after = ra } })
      local status, v = srv:get("/get?id=" .. id, H.account_headers(a))
      assert.equal(200, status, type(v) == "string" and v or nil)
      assert.is_false(v.ok, ra)
      assert.equal(429, v.status, ra)
    end
    assert.is_nil(H.log(srv):find("[error]", 1, true), H.log(srv))
  end)

  it("records a background wait without the keys a server echoed in the task", function()
    local a = sim.account()
    local id = sim.task(a.key, {})
    sim.faults(a.key, { { kind = "unknown_status", status = a.secret .. "-" .. a.key, path = "/tasks/", times = 50 } })
    local status = srv:post("/spawn?id=" .. id, H.account_headers(a))
    assert.equal(202, status)
    local r
    for _ = 1, 100 do
      local _, v = srv:get("/result?id=" .. id, H.account_headers(a))
      r = v.result
      if r and r.state ~= "waiting" then break end
      require("socket").sleep(0.05)
    end
    assert.equal("failed", r.state)
    for _, field in pairs(r) do
      assert.is_nil(tostring(field):find(a.key, 1, true), "api key in the record")
      assert.is_nil(tostring(field):find(a.secret, 1, true), "secret key in the record")
    end
    assert.matches("[redacted]", r.task_status, 1, true)
  end)
end)
