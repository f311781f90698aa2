-- The workflow helpers (request, submit, run, wait_ready, wait_all, pipeline) against the simulator.
local rctasks = require "rctasks"
local core = require "rctasks.core"
local sim = require "helpers.sim"

local FAST = { interval = 0.02, max_interval = 0.1, jitter = 0, timeout = 10 }

local function opts(more)
  local o = {}
  for k, v in pairs(FAST) do o[k] = v end
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

local function fresh(cfg, extra)
  local acct = sim.account(cfg)
  local o = { api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), retry = { base = 0.02 } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return rctasks.new(o), acct
end

local function route(acct, name) return sim.stats(acct.key).by_route[name] or 0 end

describe("client:request", function()
  it("returns the decoded body, integers as integers", function()
    local c, acct = fresh()
    local v = assert(c:request("GET", "/subscriptions"))
    assert.is_number(v.accountId)
    if math.type then assert.equal("integer", math.type(v.accountId)) end
    assert.same({}, v.subscriptions)
    assert.equal(1, route(acct, "GET /v1/subscriptions"))
  end)

  it("sends a Lua table as a JSON body", function()
    local c = fresh()
    local t = assert(c:request("POST", "/subscriptions", { name = "from-a-table" }))
    assert.is_string(t.taskId)
    assert(c:wait(t.taskId, FAST))
    local subs = assert(c:request("GET", "/subscriptions")).subscriptions
    assert.equal(1, #subs)
    assert.equal("from-a-table", subs[1].name)
  end)

  it("returns true for an empty 2xx body", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 204, body = "empty" } })
    assert.equal(true, c:request("DELETE", "/subscriptions/100001"))
  end)

  it("returns an http error with the API's message for a 4xx", function()
    local c = fresh()
    -- a missing subscription is an empty 404; a missing ACL user is a Spring 404 with a message
    local v, err = c:request("GET", "/acl/users/999")
    assert.is_nil(v)
    assert.equal("http", err.kind); assert.equal(404, err.status)
    assert.matches("ACL user 999 not found", err.message, 1, true)
  end)

  it("raises on a path that could leave the base URL, a bad method or a body it cannot encode", function()
    local c = fresh()
    assert.has_error(function() c:request("GET", "/../admin") end)
    assert.has_error(function() c:request("GET", "subscriptions") end)
    assert.has_error(function() c:request("GET", "/a b") end)
    assert.has_error(function() c:request("get", "/subscriptions") end)
    assert.has_error(function() c:request("POST", "/subscriptions", { f = print }) end)
    assert.has_error(function() c:request("POST", "/subscriptions", 42) end)
  end)
end)

describe("client:submit", function()
  it("returns the task the API answered with, carrying the task methods", function()
    local c = fresh()
    local t = assert(c:submit("POST", "/subscriptions", { name = "s" }))
    assert.is_string(t.taskId)
    assert.equal("subscriptionCreateRequest", t.commandType)
    assert.is_false(t:done())
    assert.equal(t.taskId, t:link("task"):match("([^/]+)$"))
  end)

  it("returns the API's 400 as an http error", function()
    local c = fresh()
    local t, err = c:submit("POST", "/subscriptions", { memoryStorage = "ram" })
    assert.is_nil(t)
    assert.equal(400, err.status)
    assert.matches("Subscription name is required", err.message, 1, true)
  end)

  it("returns what the API answered when a 2xx answer is not a task (tags, a 204): never an error", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 200, body = "json" } })
    local v = assert(c:submit("POST", "/subscriptions", { name = "s" }))
    assert.is_nil(getmetatable(v))
    assert.equal(200, v.status)
    sim.faults(acct.key, { { kind = "status", status = 204, body = "empty" } })
    assert.equal(true, c:submit("POST", "/subscriptions/1/databases/2/traffic/resume"))
  end)
end)

describe("client:run", function()
  it("submits, waits and fetches the resource the task names", function()
    local c = fresh()
    local t, sub = c:run("POST", "/subscriptions", { name = "run" }, FAST)
    assert.is_true(t:ok())
    assert.equal(t:resource_id(), sub.id)
    assert.equal("run", sub.name)
  end)

  it("tolerates the 404s of a resource right after its task completed", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 404, path = "/subscriptions/%d+$", times = 3 } })
    local t, sub = c:run("POST", "/subscriptions", { name = "late" }, FAST)
    assert.is_true(t:ok())
    assert.equal(t:resource_id(), sub.id)
    assert.equal(3, sim.stats(acct.key).faults)
    assert.equal(4, route(acct, "GET /v1/subscriptions/{id}"))
  end)

  it("gives up on a resource that keeps answering 404 once the grace period is over", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 404, path = "/subscriptions/%d+$", times = 1000 } })
    local t, err = c:run("POST", "/subscriptions", { name = "gone" }, opts({ grace = 0.2 }))
    assert.is_nil(t)
    assert.equal(404, err.status)
    assert.is_string(err.task_id)
    assert.equal("processing-completed", err.task.status)
  end)

  it("polls the resource until it is active when asked to", function()
    local c = fresh({ provision = 0.2 })
    local t, sub = c:run("POST", "/subscriptions", { name = "ready" }, opts({ ready = true }))
    assert.is_true(t:ok())
    assert.equal("active", sub.status)
    local _, first = c:run("POST", "/subscriptions", { name = "not-waited" }, FAST)
    assert.equal("pending", first.status)
  end)

  it("fetches the path given by opts.resource, or nothing with resource = false", function()
    local c = fresh()
    local t, v = c:run("POST", "/subscriptions", { name = "x" }, opts({ resource = "/subscriptions" }))
    assert.is_true(t:ok())
    assert.is_table(v.subscriptions)
    local t2, none = c:run("POST", "/subscriptions", { name = "y" }, opts({ resource = false }))
    assert.is_true(t2:ok())
    assert.is_nil(none)
  end)

  it("returns a failed task as an error of kind task naming the task", function()
    local c = fresh({ outcomes = { "error:TOO_MANY_PENDING_SUBSCRIPTIONS" } })
    local t, err = c:run("POST", "/subscriptions", { name = "doomed" }, FAST)
    assert.is_nil(t)
    assert.equal("task", err.kind)
    assert.equal("TOO_MANY_PENDING_SUBSCRIPTIONS", err.code)
    assert.matches(err.task.taskId, tostring(err), 1, true)
  end)

  it("times out within its own timeout, submission included", function()
    local c = fresh({ outcomes = { "stuck" } })
    local t0 = core.now()
    local t, err = c:run("POST", "/subscriptions", { name = "stuck" }, opts({ timeout = 0.3 }))
    assert.is_nil(t)
    assert.equal("timeout", err.kind)
    assert.is_string(err.task_id)
    assert.is_true(core.now() - t0 < 5)
  end)

  it("raises on options it does not know", function()
    local c = fresh()
    assert.has_error(function() c:run("POST", "/subscriptions", {}, { colour = "red" }) end)
    assert.has_error(function() c:run("POST", "/subscriptions", {}, { ready = "yes" }) end)
  end)
end)

describe("client:wait_ready", function()
  local function subscription(c)
    local t = assert(c:run("POST", "/subscriptions", { name = "w" }, opts({ resource = false })))
    return "/subscriptions/" .. t:resource_id()
  end

  it("returns the resource once active, reporting each status change", function()
    local c = fresh({ provision = 0.15 })
    local path = subscription(c)
    local seen = {}
    local sub = assert(c:wait_ready(path, opts({ on_update = function(r, prev)
      seen[#seen + 1] = (prev and prev.status or "-") .. ">" .. r.status end })))
    assert.equal("active", sub.status)
    assert.same({ "->pending", "pending>active" }, seen)
  end)

  it("accepts another set of ready statuses", function()
    local c = fresh({ provision = 30 })
    local sub = assert(c:wait_ready(subscription(c), opts({ statuses = { "pending", "active" } })))
    assert.equal("pending", sub.status)
  end)

  it("fails fast with kind task when the resource turns error", function()
    local c, acct = fresh()
    sim.faults(acct.key, { { kind = "status", status = 200, path = "/subscriptions/77$",
      text = '{"id":77,"status":"error"}', content_type = "application/json" } })
    local v, err = c:wait_ready("/subscriptions/77", FAST)
    assert.is_nil(v)
    assert.equal("task", err.kind)
    assert.matches("/subscriptions/77", err.message, 1, true)
    assert.matches("error", err.message, 1, true)
    assert.equal(1, route(acct, "GET /v1/subscriptions/{id}"))
  end)

  it("times out with the last status seen", function()
    local c = fresh({ provision = 30 })
    local v, err = c:wait_ready(subscription(c), opts({ timeout = 0.2 }))
    assert.is_nil(v)
    assert.equal("timeout", err.kind)
    assert.matches("pending", err.message, 1, true)
  end)

  it("waits through 404s for `grace` seconds, then reports the 404", function()
    local c = fresh()
    local v, err = c:wait_ready("/subscriptions/4242", opts({ grace = 0.15 }))
    assert.is_nil(v)
    assert.equal(404, err.status)
  end)
end)

describe("client:wait_all", function()
  it("returns one result per id in input order: tasks, failures, unknown ids", function()
    local c, acct = fresh()
    local ok1 = sim.task(acct.key, { queue = false, resourceId = 1 })
    local bad = sim.task(acct.key, { queue = false, outcome = "error:GENERAL_ERROR" })
    local ok2 = sim.task(acct.key, { queue = false, resourceId = 2 })
    local ghost = "00000000-0000-4000-8000-000000000000"
    local ok3 = sim.task(acct.key, { queue = false, resourceId = 3 })
    local out = c:wait_all({ ok1, bad, ghost, ok2, ok3, ok1 }, FAST)
    assert.equal(6, #out)
    assert.equal(ok1, out[1].id); assert.equal(1, out[1].task:resource_id())
    assert.equal("task", out[2].err.kind); assert.equal("GENERAL_ERROR", out[2].err.code)
    assert.equal(404, out[3].err.status); assert.equal(ghost, out[3].err.task_id)
    assert.equal(2, out[4].task:resource_id())
    assert.equal(3, out[5].task:resource_id())
    assert.equal(out[1].task, out[6].task)
  end)

  it("reports each task's status changes to on_update", function()
    local c, acct = fresh({ step = 0.05 })
    local ids = { sim.task(acct.key, { queue = false }), sim.task(acct.key, { queue = false }),
                  sim.task(acct.key, { queue = false }) }
    local last = {}
    local changes = 0
    c:wait_all(ids, opts({ on_update = function(t, prev)
      assert.is_not.equal(prev and prev.status, t.status)
      last[t.taskId] = t.status
      changes = changes + 1
    end }))
    for _, id in ipairs(ids) do assert.equal("processing-completed", last[id]) end
    assert.is_true(changes >= 3)
  end)

  it("times out the tasks that do not end, and still returns the others", function()
    local c, acct = fresh()
    local done = sim.task(acct.key, { queue = false })
    local stuck = sim.task(acct.key, { queue = false, outcome = "stuck" })
    local out = c:wait_all({ stuck, done }, opts({ timeout = 0.3 }))
    assert.equal("timeout", out[1].err.kind); assert.equal(stuck, out[1].err.task_id)
    assert.equal("processing-in-progress", out[1].err.task.status)
    assert.is_true(out[2].task:ok())
  end)

  it("waits 50 tasks with one list per round, far fewer requests than polling each task", function()
    -- two accounts with the same 50 tasks (10 of them queued one after another, as the API does)
    local function fifty()
      local rounds = 1
      local c, acct = fresh({ step = 0.02 }, { limiter = false,
        sleep = function(d) rounds = rounds + 1; core.sleep(d) end }) -- one sleep between rounds
      local ids = {}
      for i = 1, 50 do ids[i] = sim.task(acct.key, { queue = i % 5 == 0 }) end
      return c, acct, ids, function() return rounds end
    end
    local c, acct, ids, rounds = fifty()
    local out = c:wait_all(ids, FAST)
    for i, r in ipairs(out) do assert.is_true(r.task:ok(), "task " .. i) end
    local all = sim.stats(acct.key).requests
    assert.is_true(all <= 3 * rounds(), all .. " requests in " .. rounds() .. " rounds")
    assert.is_true(route(acct, "GET /v1/tasks") >= rounds() - 2)

    local c2, acct2, ids2 = fifty()
    for _, id in ipairs(ids2) do assert(c2:wait(id, FAST)) end
    local each = sim.stats(acct2.key).requests
    assert.is_true(each >= 50)
    assert.is_true(all * 4 <= each, "wait_all " .. all .. " vs per-task " .. each)
  end)

  it("raises on ids that are not task ids", function()
    local c = fresh()
    assert.has_error(function() c:wait_all("abc") end)
    assert.has_error(function() c:wait_all({ "../x" }) end)
    assert.has_error(function() c:wait_all({}, { list_above = "2" }) end)
  end)
end)

describe("client:pipeline", function()
  local function steps(db_extra)
    local db = { name = "database",
      path = function(r) return "/subscriptions/" .. r.subscription.id .. "/databases" end,
      body = function(r) return { name = "db-of-" .. r.subscription.resource.name, memoryLimitInGb = 2 } end }
    for k, v in pairs(db_extra or {}) do db[k] = v end
    return { { name = "subscription", path = "/subscriptions", body = { name = "pipe" } }, db }
  end

  it("provisions a subscription then a database in it, each step using the earlier results", function()
    local c = fresh()
    local progress = {}
    local r = assert(c:pipeline(steps(), opts({ on_progress = function(step, t, prev)
      progress[#progress + 1] = step .. ":" .. (prev and prev.status or "") .. ">" .. t.status end })))
    assert.equal("active", r.subscription.resource.status)
    assert.equal(r.subscription.task:resource_id(), r.subscription.id)
    assert.equal("active", r.database.resource.status)
    assert.equal("db-of-pipe", r.database.resource.name)
    assert.equal(2, r.database.resource.memoryLimitInGb)
    -- as on the real API, the create names only the database: its subscription came from the path
    assert.is_nil(r.database.task.response.additionalResourceId)
    local listed = assert(c:request("GET", "/subscriptions/" .. r.subscription.id .. "/databases"))
    assert.equal(r.database.id, listed.subscription[1].databases[1].databaseId)
    assert.matches("^subscription:", progress[1])
    assert.matches("^database:.*processing%-completed$", progress[#progress])
  end)

  it("stops at the first failing step with an error naming the step and the task", function()
    local c, acct = fresh({ outcomes = { "completed", "error:PROVISION_FAILURE" } })
    local r, err = c:pipeline(steps(), FAST)
    assert.is_nil(r)
    assert.equal("task", err.kind)
    assert.equal("database", err.step)
    assert.equal("PROVISION_FAILURE", err.code)
    local line = tostring(err)
    assert.matches("step 'database'", line, 1, true)
    assert.matches(err.task.taskId, line, 1, true)
    assert.is_number(err.results.subscription.id)
    assert.equal(1, route(acct, "POST /v1/subscriptions/{id}/databases"))
  end)

  it("applies each step's own timeout", function()
    local c = fresh({ outcomes = { "completed", "stuck" } })
    local t0 = core.now()
    local r, err = c:pipeline(steps({ timeout = 0.3 }), FAST)
    assert.is_nil(r)
    assert.equal("timeout", err.kind)
    assert.equal("database", err.step)
    assert.is_true(core.now() - t0 < 5)
  end)

  it("keeps the kind of an HTTP failure and names the step", function()
    local c = fresh()
    local r, err = c:pipeline({ { name = "bad", path = "/subscriptions", body = {} } }, FAST)
    assert.is_nil(r)
    assert.equal("http", err.kind); assert.equal(400, err.status)
    assert.matches("step 'bad'", tostring(err), 1, true)
  end)

  it("raises on malformed steps", function()
    local c = fresh()
    assert.has_error(function() c:pipeline({}) end)
    assert.has_error(function() c:pipeline({ { path = "/subscriptions" } }) end)
    assert.has_error(function() c:pipeline({ { name = "a", path = "/x" }, { name = "a", path = "/y" } }) end)
    assert.has_error(function() c:pipeline({ { name = "a", path = "/x", colour = 1 } }) end)
    assert.has_error(function() c:pipeline({ { name = "a", path = 42 } }) end)
  end)
end)

describe("workflow on a virtual clock", function()
  local fake = require "helpers.fake"

  it("run answers a task id the API should not have sent with a decode error, not a raise", function()
    local c = fake.client({ { 202, '{"taskId":"abc/def","status":"received"}' } })
    local ok, t, err = pcall(c.run, c, "POST", "/subscriptions", { name = "x" })
    assert.is_true(ok)
    assert.is_nil(t)
    assert.equal("decode", err.kind)
  end)

  it("run's timeout covers the submit too: a long Retry-After does not outlast it", function()
    local c, _, clock = fake.client({ { 429, "", { ["retry-after"] = "600" } },
      { 202, fake.task_body(fake.ID, "received") } })
    local start = clock.t
    local _, err = c:run("POST", "/subscriptions", { name = "x" }, { timeout = 10 })
    assert.is_table(err)
    assert.is_true(clock.t - start <= 10, "ran " .. (clock.t - start) .. " s")
  end)

  it("pipeline checks every step's method and path before it sends anything", function()
    local c, tr = fake.client({ { 202, fake.task_body(fake.ID, "processing-completed") } })
    assert.has_error(function()
      c:pipeline({ { name = "a", path = "/subscriptions" }, { name = "b", method = "post", path = "/x" } })
    end)
    assert.has_error(function()
      c:pipeline({ { name = "a", path = "/subscriptions" }, { name = "b", path = "/../x" } })
    end)
    assert.equal(0, #tr.requests)
  end)

  it("builds a database's path only from whole-number ids", function()
    local function run(response)
      local c, tr = fake.client({ { 202, '{"taskId":"' .. fake.ID .. '","commandType":"databaseCreateRequest",'
        .. '"status":"processing-completed","response":' .. response .. '}' }, { 200, '{"status":"active"}' } })
      local t, db = c:run("POST", "/subscriptions/12/databases", { name = "db" })
      assert.is_true(t:ok())
      return tr.requests[2] and tr.requests[2].url, db
    end
    local where, db = run('{"resourceId":7,"additionalResourceId":12}')
    assert.equal("https://api.example.test/v1/subscriptions/12/databases/7", where)
    assert.equal("active", db.status)
    -- the subscription comes from the request path: a Pro create's task does not name it
    assert.equal(where, (run('{"resourceId":7}')))
    assert.equal(where, (run('{"resourceId":7,"additionalResourceId":5.5}')))
    assert.is_nil(run('{"resourceId":7.5,"additionalResourceId":12}'))
    assert.is_nil(run('{"resourceId":1e19,"additionalResourceId":12}'))
  end)
end)
