-- The local API simulator is faithful to what the real Redis Cloud API sends (sim/README.md lists it):
-- checked with raw LuaSocket requests, no rctasks code involved.
local socket = require "socket"
local cjson = require "cjson"
local sim = require "helpers.sim"

local function req(a, method, path, body, timeout)
  return sim.request(method, path, a.key, a.secret, body, timeout)
end

local function get_json(a, path)
  local status, body, h = req(a, "GET", path)
  return status, status and sim.decode(body), h
end

local function create_sub(a, name)
  local status, body = req(a, "POST", "/subscriptions", '{"name":"' .. (name or "sub") .. '"}')
  assert.equal(202, status)
  return sim.decode(body)
end

-- Polls a task until `done(task)` or ~5 s pass; returns the last task seen.
local function poll(a, id, done)
  local t
  for _ = 1, 500 do
    local status, v = get_json(a, "/tasks/" .. id)
    if status == 200 then
      t = v
      if done(t) then return t end
    end
    socket.sleep(0.01)
  end
  return t
end

local PENDING = { received = true, initialized = true, ["processing-in-progress"] = true }

local function final(t) return not PENDING[t.status] end

local function link(t, rel)
  for _, l in ipairs(t.links or {}) do
    if l.rel == rel then return l.href end
  end
end

-- Polls GET path until done(http_status, body) or ~5 s pass; returns the last status and body.
local function poll_status(a, path, done)
  local status, v
  for _ = 1, 500 do
    status, v = get_json(a, path)
    if done(status, v) then break end
    socket.sleep(0.01)
  end
  return status, v
end

-- A request with a Lua table body: status, decoded body (nil when empty), raw body.
local function call(a, method, path, body)
  local status, text, h = req(a, method, path, body ~= nil and cjson.encode(body) or nil)
  return status, text and text ~= "" and sim.decode(text) or nil, text, h
end

-- A change or a status GET, waited for: its final task and the HTTP status it was answered with.
local function run(a, method, path, body)
  local status, t, text = call(a, method, path, body)
  assert(status and status >= 200 and status < 300,
    method .. " " .. path .. ": " .. tostring(status) .. " " .. tostring(text))
  return poll(a, t.taskId, final), status
end

local function wait_status(a, path, word)
  local _, v = poll_status(a, path, function(st, x) return st == 200 and x.status == word end)
  return v and v.status
end

-- The distinct statuses `path` reads until `stop(status)` (or ~3 s), in order.
local function statuses(a, path, stop)
  local seen = {}
  for _ = 1, 300 do
    local st, v = get_json(a, path)
    local word = st == 200 and v.status or st
    if seen[#seen] ~= word then seen[#seen + 1] = word end
    if stop(word) then break end
    socket.sleep(0.005)
  end
  return seen
end

local function index_of(list, x)
  for i, y in ipairs(list) do if y == x then return i end end
end

local function sub_of(a, body)
  local t = run(a, "POST", "/subscriptions", body or { name = "s" })
  assert.equal("processing-completed", t.status)
  wait_status(a, "/subscriptions/" .. t.response.resourceId, "active")
  return t.response.resourceId
end

describe("simulator", function()
  describe("authentication", function()
    it("answers 401 with nginx's HTML page when the keys are missing", function()
      local status, body, h = sim.request("GET", "/tasks")
      assert.equal(401, status)
      assert.matches("^text/html", h["content-type"])
      assert.matches("<title>401 Authorization Required</title>", body, 1, true)
      status = sim.request("GET", "/tasks", "k" .. sim.hex(8), nil)
      assert.equal(401, status)
    end)

    it("answers 401 when a known key comes with a different secret", function()
      local a = sim.account()
      assert.equal(200, (req(a, "GET", "/tasks")))
      local status, body = sim.request("GET", "/tasks", a.key, "wrong-" .. sim.hex(4))
      assert.equal(401, status)
      assert.matches("401 Authorization Required", body, 1, true)
    end)
  end)

  describe("tasks", function()
    it("answers a subscription create with 202 and a received task in the API's shape", function()
      local a = sim.account()
      local status, body, h = req(a, "POST", "/subscriptions", '{"name":"s1"}')
      assert.equal(202, status)
      assert.equal("application/json", h["content-type"])
      local t = sim.decode(body)
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", t.taskId)
      assert.equal("subscriptionCreateRequest", t.commandType)
      assert.equal("received", t.status)
      assert.equal("Task request received and is being queued for processing.", t.description)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%d%d%d%dZ$", t.timestamp)
      assert.equal(sim.url() .. "/tasks/" .. t.taskId, link(t, "task"))
    end)

    it("answers 400 with a Spring error body to a body that is not JSON", function()
      local a = sim.account()
      local status, body = req(a, "POST", "/subscriptions", "{nope")
      assert.equal(400, status)
      local e = sim.decode(body)
      assert.equal(400, e.status)
      assert.equal("Bad Request", e.error)
      assert.equal("/v1/subscriptions", e.path)
    end)

    it("answers 404 with an empty body while the task service lags, then the task", function()
      local a = sim.account({ lag = 0.3 })
      local t = create_sub(a)
      local status, body = req(a, "GET", "/tasks/" .. t.taskId)
      assert.equal(404, status)
      assert.equal("", body)
      local seen = poll(a, t.taskId, function() return true end)
      assert.equal(t.taskId, seen.taskId)
    end)

    it("answers 404 for unknown and malformed task ids", function()
      local a = sim.account()
      assert.equal(404, (req(a, "GET", "/tasks/" .. "11111111-2222-4333-8444-555555555555")))
      assert.equal(404, (req(a, "GET", "/tasks/not-a-uuid")))
    end)

    it("completes a create with an integer resourceId and a resource link; the resource turns active", function()
      local a = sim.account({ provision = 0.1 })
      local t = create_sub(a, "lifecycle")
      local seen = {}
      local done = poll(a, t.taskId, function(x) seen[x.status] = true; return final(x) end)
      assert.equal("processing-completed", done.status)
      assert.is_true(seen["processing-in-progress"])
      assert.equal("number", type(done.response.resourceId))
      assert.equal(done.response.resourceId, math.floor(done.response.resourceId))
      local href = link(done, "resource")
      assert.equal(sim.url() .. "/subscriptions/" .. done.response.resourceId, href)
      assert.equal(sim.url() .. "/tasks/" .. t.taskId, link(done, "self"))
      local _, sub = get_json(a, "/subscriptions/" .. done.response.resourceId)
      assert.equal("lifecycle", sub.name)
      local st
      for _ = 1, 200 do
        _, sub = get_json(a, "/subscriptions/" .. done.response.resourceId)
        st = sub.status
        if st == "active" then break end
        socket.sleep(0.01)
      end
      assert.equal("active", st)
    end)

    it("creates a Pro database whose finished task names only the database, no resource link", function()
      local a = sim.account()
      local sub = poll(a, create_sub(a).taskId, final).response.resourceId
      local status, body = req(a, "POST", "/subscriptions/" .. sub .. "/databases", '{"name":"db1"}')
      assert.equal(202, status)
      local t = poll(a, sim.decode(body).taskId, final)
      assert.equal("databaseCreateRequest", t.commandType)
      assert.equal("processing-completed", t.status)
      assert.is_nil(t.response.additionalResourceId)
      assert.is_nil(link(t, "resource"))
      local db = t.response.resourceId
      local _, list = get_json(a, "/subscriptions/" .. sub .. "/databases")
      assert.equal(sub, list.subscription[1].subscriptionId)
      assert.equal(db, list.subscription[1].databases[1].databaseId)
    end)

    it("fails a database create in an unknown subscription with SUBSCRIPTION_NOT_FOUND", function()
      local a = sim.account()
      local _, body = req(a, "POST", "/subscriptions/99/databases", '{"name":"db"}')
      local t = poll(a, sim.decode(body).taskId, final)
      assert.equal("processing-error", t.status)
      assert.equal("SUBSCRIPTION_NOT_FOUND", t.response.error.type)
      assert.equal("404 NOT_FOUND", t.response.error.status)
    end)

    it("answers an empty 404 for an unknown subscription, database or database list", function()
      local a = sim.account()
      for _, path in ipairs({ "/subscriptions/4242", "/subscriptions/4242/databases", "/subscriptions/4242/databases/7",
                              "/fixed/subscriptions/4242", "/cloud-accounts/4242" }) do
        local status, body = req(a, "GET", path)
        assert.equal(404, status, path)
        assert.equal("", body, path)
      end
    end)

    it("deletes a subscription through a task (200): it reads deleting, then answers 404", function()
      local a = sim.account({ provision = 0.1 })
      local sub = poll(a, create_sub(a).taskId, final).response.resourceId
      socket.sleep(0.12)
      local status, body = req(a, "DELETE", "/subscriptions/" .. sub)
      assert.equal(200, status)
      local t = poll(a, sim.decode(body).taskId, final)
      assert.equal("subscriptionDeleteRequest", t.commandType)
      assert.equal("processing-completed", t.status)
      assert.same({}, t.response)
      assert.equal("deleting", select(2, get_json(a, "/subscriptions/" .. sub)).status)
      assert.equal(404, poll_status(a, "/subscriptions/" .. sub, function(st) return st == 404 end))
    end)

    it("processes one operation at a time: a second task starts only after the first ends", function()
      local a = sim.account({ step = 0.1 })
      local t1, t2 = create_sub(a, "one"), create_sub(a, "two")
      local done1 = poll(a, t1.taskId, final)
      local started2
      local done2 = poll(a, t2.taskId, function(x)
        if x.status == "processing-in-progress" then started2 = started2 or x.timestamp end
        return final(x)
      end)
      assert.equal("processing-completed", done2.status)
      assert.is_string(started2, "the second task was never seen in progress")
      -- same-format UTC stamps order as strings
      assert.is_true(started2 > done1.timestamp, started2 .. " is not after " .. done1.timestamp)
    end)

    it("lists the account's tasks wrapped in {tasks}, newest status change first, others' invisible", function()
      local a, b = sim.account(), sim.account()
      local _, empty = req(a, "GET", "/tasks")
      assert.equal('{"tasks":[]}', empty)
      local first = create_sub(a, "first")
      poll(a, first.taskId, final)
      local second = create_sub(a, "second")
      local other = create_sub(b, "other")
      local status, list = get_json(a, "/tasks")
      assert.equal(200, status)
      assert.equal(2, #list.tasks)
      assert.equal(second.taskId, list.tasks[1].taskId)
      assert.equal(first.taskId, list.tasks[2].taskId)
      assert.equal(404, (req(a, "GET", "/tasks/" .. other.taskId)))
    end)

    it("ends an error outcome in processing-error with a real-looking error object", function()
      local a = sim.account({ outcomes = { "error" } })
      local t = poll(a, create_sub(a).taskId, final)
      assert.equal("processing-error", t.status)
      assert.equal("SUBSCRIPTION_PROVISION_FAILURE", t.response.error.type)
      assert.equal("400 BAD_REQUEST", t.response.error.status)
      assert.is_string(t.response.error.description)
      assert.is_nil(link(t, "resource"))
      -- the outcome list is consumed: the next create completes
      assert.equal("processing-completed", poll(a, create_sub(a).taskId, final).status)
    end)

    it("ends a status:<word> outcome in that unknown status, and keeps a stuck task in progress", function()
      local a = sim.account()
      local odd = sim.task(a.key, { outcome = "status:processing-paused", queue = false })
      local stuck = sim.task(a.key, { outcome = "stuck", queue = false })
      assert.equal("processing-paused", poll(a, odd, final).status)
      socket.sleep(0.1)
      local _, t = get_json(a, "/tasks/" .. stuck)
      assert.equal("processing-in-progress", t.status)
    end)

    it("creates tasks directly through the control API with the resourceId asked for", function()
      local a = sim.account()
      local id = sim.task(a.key, { commandType = "aclUserCreateRequest", resourceId = 7 })
      local t = poll(a, id, final)
      assert.equal("aclUserCreateRequest", t.commandType)
      assert.equal(7, t.response.resourceId)
    end)

    it("rejects unknown config keys and outcomes", function()
      assert.has_error(function() sim.account({ stepp = 1 }) end)
      assert.has_error(function() sim.account({ outcomes = { "maybe" } }) end)
    end)
  end)

  describe("lifecycle", function()
    it("answers an in-progress task with an empty response and no description", function()
      local a = sim.account({ step = 0.1 })
      local t = poll(a, create_sub(a).taskId, function(x) return x.status == "processing-in-progress" end)
      assert.equal("processing-in-progress", t.status)
      assert.same({}, t.response)
      assert.is_nil(t.description)
    end)

    it("shows the initialized phase config `initialized` asks for, between received and in progress", function()
      local a = sim.account({ initialized = 0.1 })
      local seen, order = {}, {}
      local t = poll(a, create_sub(a).taskId, function(x)
        if not seen[x.status] then seen[x.status] = x; order[#order + 1] = x.status end
        return final(x)
      end)
      assert.equal("processing-completed", t.status)
      assert.same({ "received", "initialized", "processing-in-progress", "processing-completed" }, order)
      assert.same({}, seen.initialized.response)
      assert.is_nil(seen.initialized.description)
    end)

    it("turns a subscription pending while one of its databases is created, and active after", function()
      local a = sim.account({ provision = 0.05 })
      local sub = sub_of(a)
      local _, t = call(a, "POST", "/subscriptions/" .. sub .. "/databases", { name = "db" })
      local seen = statuses(a, "/subscriptions/" .. sub, function(w)
        return w == "active" and final(select(2, get_json(a, "/tasks/" .. t.taskId))) end)
      assert.is_truthy(index_of(seen, "pending"), table.concat(seen, ","))
      assert.equal("active", seen[#seen])
      local db = poll(a, t.taskId, final).response.resourceId
      local dbseen = statuses(a, ("/subscriptions/%d/databases/%d"):format(sub, db),
        function(w) return w == "active" end)
      assert.equal("active", dbseen[#dbseen])
    end)

    it("reads a database draft, then pending, then active", function()
      local a = sim.account({ step = 0.01, provision = 0.2 })
      local sub = sub_of(a)
      local t = run(a, "POST", "/subscriptions/" .. sub .. "/databases", { name = "db" })
      local seen = statuses(a, ("/subscriptions/%d/databases/%d"):format(sub, t.response.resourceId),
        function(w) return w == "active" end)
      assert.same({ "draft", "pending", "active" }, seen)
    end)

    it("does not queue a GET answered with a task behind the changes waiting in received", function()
      local a = sim.account()
      local sub = sub_of(a)
      sim.task(a.key, { outcome = "stuck" }) -- holds the account's one change slot forever
      local _, waiting = call(a, "PUT", "/subscriptions/" .. sub, { name = "later" })
      local cidr = run(a, "GET", "/subscriptions/" .. sub .. "/cidr")
      assert.equal("processing-completed", cidr.status)
      assert.same({ "0.0.0.0/0" }, cidr.response.resource.cidr_ips)
      assert.equal("received", select(2, get_json(a, "/tasks/" .. waiting.taskId)).status)
    end)

    it("refuses to delete a subscription that still has databases", function()
      local a = sim.account()
      local sub = sub_of(a)
      run(a, "POST", "/subscriptions/" .. sub .. "/databases", { name = "db" })
      local t = run(a, "DELETE", "/subscriptions/" .. sub)
      assert.equal("processing-error", t.status)
      assert.equal("SUBSCRIPTION_IN_USE", t.response.error.type)
      assert.equal("active", wait_status(a, "/subscriptions/" .. sub, "active"))
    end)

    it("ends the next created resources in the status config `ends` names, one per create", function()
      local a = sim.account({ ends = { subscription = { "encryption_key_pending" },
        cloud_account = { "active-error" } } })
      local first = run(a, "POST", "/subscriptions", { name = "cmk" }).response.resourceId
      local seen = statuses(a, "/subscriptions/" .. first, function(w) return w == "encryption_key_pending" end)
      assert.same({ "pending", "encryption_key_pending" }, seen)
      socket.sleep(0.05)
      assert.equal("encryption_key_pending", select(2, get_json(a, "/subscriptions/" .. first)).status)
      assert.equal("active", wait_status(a, "/subscriptions/" .. sub_of(a), "active"))
      local ca = run(a, "POST", "/cloud-accounts", { name = "c", provider = "AWS" }).response.resourceId
      assert.equal("active-error", wait_status(a, "/cloud-accounts/" .. ca, "active-error"))
      assert.same({}, sim.config(a.key, {}) and sim.decode(select(2, sim.request("GET",
        "/sim/accounts/" .. a.key))).ends
        .subscription)
    end)

    it("rejects an `ends` kind or status word it does not know, and kinds the API never creates", function()
      assert.has_error(function() sim.account({ ends = { spaceship = { "active" } } }) end)
      assert.has_error(function() sim.account({ ends = { subscription = { "purple" } } }) end)
      assert.has_error(function() sim.account({ ends = { tgw = { "available" } } }) end) -- nothing creates one
    end)
  end)

  describe("busy subscriptions and concurrent changes", function()
    local EPS = 0.01 -- the sim's clock has millisecond steps

    -- Polls a task until it ends: the task, the time before the last read that found it running
    -- and the time after the first read that found it ended (its end lies in between).
    local function ended(a, id)
      local before
      for _ = 1, 500 do
        local t0 = socket.gettime()
        local status, t = get_json(a, "/tasks/" .. id)
        if status == 200 and final(t) then return t, before or t0, socket.gettime() end
        before = t0
        socket.sleep(0.005)
      end
      error("task " .. id .. " never ended")
    end

    -- Polls `path` while it reads `word`: the time before the last read that still did and the
    -- time after the first read that did not (nil, nil when the first read already did not).
    local function reads_until(a, path, word)
      local before
      for _ = 1, 500 do
        local t0 = socket.gettime()
        local _, v = get_json(a, path)
        if v.status ~= word then return before, before and socket.gettime() end
        before = t0
        socket.sleep(0.005)
      end
      error(path .. " kept reading " .. word)
    end

    local function fixture_error()
      local f = assert(io.open("spec/fixtures/api-bodies/tasks/069-databaseImportStatusRequest-processing-error.json"))
      local v = sim.decode(f:read("*a"))
      f:close()
      return v
    end

    it("keeps a subscription pending from a database create, update or delete until provision after it", function()
      local a = sim.account({ provision = 0.3 })
      local sub = sub_of(a)
      local spath = "/subscriptions/" .. sub
      local function change(method, path, body)
        local _, t = call(a, method, path, body)
        local done, lo, hi = ended(a, t.taskId)
        assert.equal("processing-completed", done.status)
        local before, after = reads_until(a, spath, "pending")
        assert.is_number(before, method .. " " .. path .. ": the subscription was not pending after the task")
        -- the subscription turned active within (before, after] and the task ended within (lo, hi]
        assert.is_true(before - hi < 0.3 + EPS, ("pending %.3f s after the task"):format(before - hi))
        assert.is_true(after - lo > 0.3 - EPS, ("active %.3f s after the task"):format(after - lo))
        assert.equal("active", select(2, get_json(a, spath)).status)
        return done
      end
      local db = change("POST", spath .. "/databases", { name = "db" }).response.resourceId
      local dpath = spath .. "/databases/" .. db
      assert.equal("active", select(2, get_json(a, dpath)).status)
      change("PUT", dpath, { name = "renamed" })
      change("DELETE", dpath)
      assert.equal(404, (req(a, "GET", dpath)))
    end)

    it("queues a second database create and refuses it when its turn comes, the subscription still pending",
      function()
        local a = sim.account({ provision = 0.3 })
        local sub = sub_of(a)
        local path = "/subscriptions/" .. sub .. "/databases"
        local _, t1 = call(a, "POST", path, { name = "one" })
        local status, t2 = call(a, "POST", path, { name = "two" })
        assert.equal(202, status)
        assert.equal("received", t2.status)
        assert.equal("active", select(2, get_json(a, "/subscriptions/" .. sub)).status) -- when it was submitted
        local first = poll(a, t1.taskId, final)
        assert.equal("processing-completed", first.status)
        local second = poll(a, t2.taskId, final)
        assert.is_true(second.timestamp > first.timestamp)
        local real = fixture_error()
        assert.equal("processing-error", second.status)
        assert.equal(real.description, second.description)
        assert.same(real.response, second.response)
        assert.same({ "commandType", "description", "links", "response", "status", "taskId", "timestamp" },
          sim.keys(second))
        local s = sim.stats(a.key)
        assert.equal(1, s.not_active)
        assert.equal(1, s.resources.database)
        assert.equal(1, s.created.database)
        -- resubmitted once the subscription is active again, it goes through
        wait_status(a, "/subscriptions/" .. sub, "active")
        assert.equal("processing-completed", run(a, "POST", path, { name = "two" }).status)
      end)

    it("refuses changes to a subscription being created or updated, and lets them through with refuse_busy off",
      function()
        local a = sim.account({ provision = 0.3 })
        local _, created = call(a, "POST", "/subscriptions", { name = "s" })
        local sub = poll(a, created.taskId, final).response.resourceId
        local spath = "/subscriptions/" .. sub
        -- queued behind the create, each is processed while the new subscription provisions
        local _, db = call(a, "POST", spath .. "/databases", { name = "db" })
        local _, up = call(a, "PUT", spath, { name = "renamed" })
        local _, del = call(a, "DELETE", spath)
        for _, t in ipairs({ db, up, del }) do
          local done = poll(a, t.taskId, final)
          assert.equal("processing-error", done.status, done.commandType)
          assert.equal("SUBSCRIPTION_NOT_ACTIVE", done.response.error.type, done.commandType)
          assert.equal("403 FORBIDDEN", done.response.error.status)
        end
        wait_status(a, spath, "active")
        -- an update turns it pending too: a database create right behind is refused
        local _, up2 = call(a, "PUT", spath, { name = "again" })
        local _, db2 = call(a, "POST", spath .. "/databases", { name = "db" })
        assert.equal("processing-completed", poll(a, up2.taskId, final).status)
        assert.equal("SUBSCRIPTION_NOT_ACTIVE", poll(a, db2.taskId, final).response.error.type)
        sim.config(a.key, { refuse_busy = false })
        local _, up3 = call(a, "PUT", spath, { name = "third" })
        local _, db3 = call(a, "POST", spath .. "/databases", { name = "db" })
        assert.equal("processing-completed", poll(a, up3.taskId, final).status)
        assert.equal("processing-completed", poll(a, db3.taskId, final).status)
      end)

    it("processes a change right behind another when provisioning takes no longer than a step", function()
      local a = sim.account() -- spec accounts: provision = step
      local sub = sub_of(a)
      local path = "/subscriptions/" .. sub .. "/databases"
      local _, t1 = call(a, "POST", path, { name = "one" })
      local _, t2 = call(a, "POST", path, { name = "two" })
      assert.equal("processing-completed", poll(a, t1.taskId, final).status)
      assert.equal("processing-completed", poll(a, t2.taskId, final).status)
      assert.equal(0, sim.stats(a.key).not_active)
    end)

    it("deletes a subscription left in encryption_key_pending, where it refuses a database create", function()
      local a = sim.account({ ends = { subscription = { "encryption_key_pending" } } })
      local sub = run(a, "POST", "/subscriptions", { name = "cmk" }).response.resourceId
      local spath = "/subscriptions/" .. sub
      assert.equal("encryption_key_pending", wait_status(a, spath, "encryption_key_pending"))
      local t = run(a, "POST", spath .. "/databases", { name = "db" })
      assert.equal("SUBSCRIPTION_NOT_ACTIVE", t.response.error.type)
      assert.equal("processing-completed", run(a, "DELETE", spath).status)
      assert.equal(404, poll_status(a, spath, function(st) return st == 404 end))
    end)

    it("refuses a subscription delete queued behind the delete of its last database", function()
      local a = sim.account({ provision = 0.3 })
      local sub = sub_of(a)
      local spath = "/subscriptions/" .. sub
      local db = run(a, "POST", spath .. "/databases", { name = "db" }).response.resourceId
      wait_status(a, spath, "active")
      local _, d1 = call(a, "DELETE", spath .. "/databases/" .. db)
      local _, d2 = call(a, "DELETE", spath)
      assert.equal("processing-completed", poll(a, d1.taskId, final).status)
      assert.equal("SUBSCRIPTION_NOT_ACTIVE", poll(a, d2.taskId, final).response.error.type)
      assert.equal(404, poll_status(a, spath .. "/databases/" .. db, function(st) return st == 404 end))
      wait_status(a, spath, "active")
      assert.equal("processing-completed", run(a, "DELETE", spath).status)
    end)

    it("refuses an Essentials database create queued behind another while the subscription is pending", function()
      local a = sim.account({ provision = 0.3 })
      local sub = run(a, "POST", "/fixed/subscriptions", { name = "f", planId = 1 }).response.resourceId
      wait_status(a, "/fixed/subscriptions/" .. sub, "active")
      local path = "/fixed/subscriptions/" .. sub .. "/databases"
      local _, t1 = call(a, "POST", path, { name = "one" })
      local _, t2 = call(a, "POST", path, { name = "two" })
      assert.equal("processing-completed", poll(a, t1.taskId, final).status)
      local second = poll(a, t2.taskId, final)
      assert.equal("SUBSCRIPTION_NOT_ACTIVE", second.response.error.type)
      assert.equal("fixedDatabaseCreateRequest", second.commandType)
    end)

    it("answers a change 429 with the concurrency message while max_pending changes wait in received", function()
      local a = sim.account({ max_pending = 2 })
      sim.task(a.key, { outcome = "stuck" }) -- in progress forever: every later change waits
      socket.sleep(0.05)
      for i = 1, 2 do assert.equal(202, (req(a, "POST", "/subscriptions", '{"name":"w' .. i .. '"}'))) end
      local status, body, h = req(a, "POST", "/subscriptions", '{"name":"w3"}')
      assert.equal(429, status)
      assert.is_nil(h["retry-after"])
      assert.is_string(h["x-rate-limit-remaining"])
      local e = sim.decode(body)
      assert.same({ "error", "message", "path", "status", "timestamp" }, sim.keys(e))
      assert.equal(429, e.status)
      assert.equal("Too Many Requests", e.error)
      assert.equal("Too many resources are concurrently created / updated / deleted in the account. " ..
        "Please re-submit API requests after resource changes are completed", e.message)
      assert.equal("/v1/subscriptions", e.path)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d", e.timestamp)
      -- any change is refused, one naming a missing resource too; reads and status GETs are not changes
      assert.equal(429, (req(a, "PUT", "/subscriptions/99", '{"name":"x"}')))
      assert.equal(429, (req(a, "DELETE", "/acl/users/99")))
      assert.equal(202, (req(a, "GET", "/subscriptions/99/cidr")))
      assert.equal(200, (req(a, "GET", "/subscriptions")))
      local _, list = get_json(a, "/tasks")
      assert.equal(4, #list.tasks) -- stuck, two waiting, the status GET: no task for a refusal
      local s = sim.stats(a.key)
      assert.equal(3, s.busy_refused)
      assert.equal(0, s.rate_limited)
      assert.equal(2, s.waiting)
      sim.config(a.key, { max_pending = false })
      assert.equal(202, (req(a, "POST", "/subscriptions", '{"name":"w3"}')))
      assert.equal(3, sim.stats(a.key).waiting)
    end)

    it("refuses the eleventh waiting change by default, and validates refuse_busy and max_pending", function()
      local a = sim.account()
      local _, cfg = get_json(a, "/sim/accounts/" .. a.key)
      assert.equal(10, cfg.max_pending)
      assert.is_true(cfg.refuse_busy)
      sim.task(a.key, { outcome = "stuck" })
      socket.sleep(0.05)
      for i = 1, 10 do assert.equal(202, (req(a, "POST", "/subscriptions", '{"name":"w' .. i .. '"}'))) end
      assert.equal(429, (req(a, "POST", "/subscriptions", '{"name":"w11"}')))
      assert.has_error(function() sim.account({ max_pending = "10" }) end)
      assert.has_error(function() sim.account({ max_pending = true }) end)
      assert.has_error(function() sim.account({ refuse_busy = 1 }) end)
    end)

    it("keeps the arrival times of the last time_log requests, 429s included, only when asked", function()
      local a = sim.account({ time_log = 3, rate_limit = 2, rate_window = 60 })
      local t0 = socket.gettime()
      for _ = 1, 5 do req(a, "GET", "/tasks") end
      local s = sim.stats(a.key)
      assert.equal(3, s.rate_limited)
      assert.equal(3, #s.times)
      for i, t in ipairs(s.times) do
        assert.is_true(t >= t0 - 1 and t <= socket.gettime() + 1, "an epoch time")
        if i > 1 then assert.is_true(t >= s.times[i - 1], "oldest first") end
      end
      assert.is_nil(sim.stats(sim.account().key).times)
      assert.has_error(function() sim.account({ time_log = "3" }) end)
    end)

    it("counts the resources that exist and those ever created, by kind", function()
      local a = sim.account()
      local s = sim.stats(a.key)
      assert.same({}, s.created)
      assert.equal(3, s.resources.acl_rule) -- the default rules exist but were never created
      local sub = sub_of(a)
      local spath = "/subscriptions/" .. sub
      local dbs = {}
      for i = 1, 2 do
        dbs[i] = run(a, "POST", spath .. "/databases", { name = "db" .. i }).response.resourceId
        wait_status(a, spath, "active")
      end
      sim.config(a.key, { outcomes = { "error" } })
      assert.equal("processing-error", run(a, "POST", spath .. "/databases", { name = "failed" }).status)
      run(a, "DELETE", spath .. "/databases/" .. dbs[1])
      assert.equal(404, poll_status(a, spath .. "/databases/" .. dbs[1], function(st) return st == 404 end))
      s = sim.stats(a.key)
      assert.equal(1, s.resources.subscription)
      assert.equal(1, s.created.subscription)
      assert.equal(1, s.resources.database)
      assert.equal(2, s.created.database)
      assert.is_nil(s.created.acl_rule)
    end)
  end)

  describe("Essentials", function()
    it("creates a database whose task names both ids and links the resource", function()
      local a = sim.account()
      local sub = run(a, "POST", "/fixed/subscriptions", { name = "f", planId = 1 }).response.resourceId
      wait_status(a, "/fixed/subscriptions/" .. sub, "active")
      local t, status = run(a, "POST", "/fixed/subscriptions/" .. sub .. "/databases", { name = "fdb" })
      assert.equal(200, status)
      assert.equal("fixedDatabaseCreateRequest", t.commandType)
      assert.equal(sub, t.response.additionalResourceId)
      assert.equal(("%s/fixed/subscriptions/%d/databases/%d"):format(sim.url(), sub, t.response.resourceId),
        link(t, "resource"))
    end)

    it("allows one free plan per account", function()
      local a = sim.account()
      assert.equal("processing-completed", run(a, "POST", "/fixed/subscriptions", { name = "free" }).status)
      local t = run(a, "POST", "/fixed/subscriptions", { name = "free2" })
      assert.equal("FIXED_SUBSCRIPTION_ACCOUNT_ALREADY_HAS_A_FREE_PLAN", t.response.error.type)
    end)
  end)

  describe("ACL", function()
    it("links a created rule to the API's non-API path, lists it, and has no GET by id", function()
      local a = sim.account()
      local t = run(a, "POST", "/acl/redisRules", { name = "r1", redisRule = "+@read ~app:*" })
      local id = t.response.resourceId
      assert.equal(sim.url() .. "/acl/" .. id .. "/acl/redisRules", link(t, "resource"))
      local _, list = get_json(a, "/acl/redisRules")
      local mine
      for _, r in ipairs(list.redisRules) do if r.id == id then mine = r end end
      assert.same({ id = id, name = "r1", acl = "+@read ~app:*", isDefault = false, status = mine.status }, mine)
      assert.equal(405, (req(a, "GET", "/acl/redisRules/" .. id)))
      assert.equal(405, (req(a, "GET", "/acl/roles/1")))
    end)

    it("ends an update or a delete of a missing rule, role or user in processing-error with its NOT_FOUND", function()
      local a = sim.account()
      for path, typ in pairs({ ["/acl/redisRules/40004"] = "ACL_REDIS_RULE_NOT_FOUND",
        ["/acl/roles/40004"] = "ACL_ROLE_NOT_FOUND",
                               ["/acl/users/40004"] = "ACL_USER_NOT_FOUND" }) do
        for _, method in ipairs({ "PUT", "DELETE" }) do
          local t = run(a, method, path, { name = "x" })
          assert.equal("processing-error", t.status, method .. " " .. path)
          assert.equal(typ, t.response.error.type)
          assert.equal("404 NOT_FOUND", t.response.error.status)
        end
      end
    end)

    it("refuses a bad rule pattern, a missing role and a weak password as the API does", function()
      local a = sim.account()
      local t = run(a, "POST", "/acl/redisRules", { name = "bad", redisRule = "read everything" })
      assert.equal("ACL_REDIS_RULE_PATTERN_NOT_VALID", t.response.error.type)
      assert.equal("redis-acl-wrong-acl-rule-pattern", t.response.additionalInfo)
      t = run(a, "POST", "/acl/users", { name = "u", role = "nobody", password = "Str0ng!pass" })
      assert.equal("ACL_ROLE_DOES_NOT_EXISTS", t.response.error.type)
      run(a, "POST", "/acl/roles", { name = "ops", redisRules = { { ruleName = "Read-Only", databases = {} } } })
      t = run(a, "POST", "/acl/users", { name = "u", role = "ops", password = "weak" })
      assert.equal("ACL_USER_PASSWORD_NOT_VALID", t.response.error.type)
      assert.equal("cluster-user-password-wrong-pattern", t.response.additionalInfo)
      t = run(a, "POST", "/acl/roles", { name = "r", redisRules = { { ruleName = "Read-Only",
        databases = { { subscriptionId = 424242, databaseId = 1 } } } } })
      assert.equal("SUBSCRIPTION_NOT_FOUND", t.response.error.type)
    end)

    it("reads a user by id; a missing one is a Spring 404 with a message and no type", function()
      local a = sim.account()
      run(a, "POST", "/acl/roles", { name = "ops", redisRules = { { ruleName = "Read-Only", databases = {} } } })
      local t = run(a, "POST", "/acl/users", { name = "u", role = "ops", password = "Str0ng!pass" })
      assert.equal(sim.url() .. "/acl/" .. t.response.resourceId .. "/acl/users", link(t, "resource"))
      assert.equal("active", wait_status(a, "/acl/users/" .. t.response.resourceId, "active"))
      local status, e = get_json(a, "/acl/users/40004")
      assert.equal(404, status)
      assert.equal("ACL user 40004 not found", e.message)
      assert.is_nil(e.type)
      local role = run(a, "DELETE", "/acl/roles/" .. select(2, get_json(a, "/acl/roles")).roles[1].id)
      assert.equal("ACL_ROLE_HAS_ACTIVE_USERS_AND_CANNOT_BE_DELETED", role.response.error.type)
    end)
  end)

  describe("cloud accounts", function()
    it("read draft, pending, then active; a deleted one reads delete-draft, then deleted", function()
      local a = sim.account({ step = 0.01, provision = 0.1 })
      local t = run(a, "POST", "/cloud-accounts", { name = "c", provider = "AWS" })
      assert.equal(sim.url() .. "/cloud-accounts/" .. t.response.resourceId, link(t, "resource"))
      local path = "/cloud-accounts/" .. t.response.resourceId
      assert.same({ "draft", "pending", "active" }, statuses(a, path, function(w) return w == "active" end))
      run(a, "DELETE", path)
      assert.same({ "delete-draft", "deleted" }, statuses(a, path, function(w) return w == "deleted" end))
    end)
  end)

  describe("VPC peering", function()
    it("lists peerings through a task: initiating-request, then active or the status `ends` asks", function()
      local a = sim.account({ provision = 0.1, ends = { peering = { "pending-acceptance" } } })
      local sub = sub_of(a)
      local p = run(a, "POST", "/subscriptions/" .. sub .. "/peerings",
        { region = "us-east-1", awsAccountId = "1", vpcId = "vpc-1", vpcCidr = "10.0.0.0/24" })
      local l = run(a, "GET", "/subscriptions/" .. sub .. "/peerings")
      assert.equal("peeringListRequest", l.commandType)
      assert.equal(sub, l.response.resourceId)
      local peer = l.response.resource.peerings[1]
      assert.equal(p.response.resourceId, peer.vpcPeeringId)
      assert.equal("initiating-request", peer.status)
      assert.equal("vpc-1", peer.vpcUid)
      socket.sleep(0.12)
      peer = run(a, "GET", "/subscriptions/" .. sub .. "/peerings").response.resource.peerings[1]
      assert.equal("pending-acceptance", peer.status)
      run(a, "POST", "/subscriptions/" .. sub .. "/peerings", { provider = "GCP", vpcProjectUid = "p",
        vpcNetworkName = "n" })
      socket.sleep(0.12)
      local gcp = run(a, "GET", "/subscriptions/" .. sub .. "/peerings").response.resource.peerings[2]
      assert.same({ "cloudPeeringId", "networkName", "projectUid", "redisNetworkName", "redisProjectUid", "status",
                    "vpcPeeringId" }, sim.keys(gcp))
      assert.equal("active", gcp.status)
    end)

    it("refuses an Active-Active peering on a single-region subscription", function()
      local a = sim.account()
      local t = run(a, "POST", "/subscriptions/" .. sub_of(a) .. "/regions/peerings", { sourceRegion = "us-east-1" })
      assert.equal("CREATING_AN_ACTIVE_ACTIVE_VPC_PEERING_IS_NOT_ALLOWED_WITH_SINGLE_REGION_SUBSCRIPTION",
        t.response.error.type)
    end)
  end)

  describe("transit gateways", function()
    it("shows an attachment pending, then available, in the task-answered TGW list; accepts invitations", function()
      local a = sim.account({ provision = 0.1 })
      local sub = sub_of(a)
      local base = "/subscriptions/" .. sub .. "/transitGateways"
      local tgw = run(a, "GET", base).response.resource.tgws[1]
      assert.is_nil(tgw.attachmentStatus)
      local t = run(a, "POST", base .. "/" .. tgw.id .. "/attachment")
      assert.equal(tgw.id, t.response.resourceId)
      assert.equal("pending", run(a, "GET", base).response.resource.tgws[1].attachmentStatus)
      socket.sleep(0.12)
      assert.equal("available", run(a, "GET", base).response.resource.tgws[1].attachmentStatus)
      local inv = run(a, "GET", base .. "/invitations").response.resource.resources[1]
      assert.equal("pending", inv.status)
      assert.equal(inv.id, run(a, "PUT", base .. "/invitations/" .. inv.id .. "/accept").response.resourceId)
      assert.equal("accepted", run(a, "GET", base .. "/invitations").response.resource.resources[1].status)
      assert.equal(2, #run(a, "GET", base).response.resource.tgws)
    end)
  end)

  describe("Private Service Connect", function()
    it("provisions a service create-pending then active, or provision-failed when `ends` asks", function()
      local a = sim.account({ provision = 0.1, ends = { psc_service = { "provision-failed" } } })
      local sub = sub_of(a)
      local path = "/subscriptions/" .. sub .. "/private-service-connect"
      local id = run(a, "POST", path).response.resourceId
      local v = run(a, "GET", path).response.resource
      assert.equal(id, v.id)
      assert.equal("create-pending", v.status)
      socket.sleep(0.12)
      assert.equal("provision-failed", run(a, "GET", path).response.resource.status)
      assert.equal("PSC_SERVICE_ALREADY_EXISTS", run(a, "POST", path).response.error.type)
    end)

    it("answers a delete of a missing service 404 with a failing task, a missing subscription a bare 404", function()
      local a = sim.account()
      local path = "/subscriptions/" .. sub_of(a) .. "/private-service-connect"
      local status, t = call(a, "DELETE", path)
      assert.equal(404, status)
      assert.equal("received", t.status)
      assert.equal("PSC_SERVICE_NOT_FOUND", poll(a, t.taskId, final).response.error.type)
      local e
      status, e = call(a, "GET", "/subscriptions/4242/private-service-connect")
      assert.equal(404, status)
      assert.same({ "error", "path", "status", "timestamp" },
        sim.keys(e))
    end)
  end)

  describe("Private Link", function()
    it("finishes a GET with an empty resource before there is one, then reads the link; a delete carries nothing",
      function()
      local a = sim.account()
      local sub = sub_of(a)
      local path = "/subscriptions/" .. sub .. "/private-link"
      assert.same({ links = {} }, run(a, "GET", path).response.resource)
      local t, status = run(a, "POST", path, { shareName = "s", principal = "123456789012", type = "aws_account" })
      assert.equal(200, status)
      assert.equal(sub, t.response.resourceId)
      socket.sleep(0.05)
      local v = run(a, "GET", path).response.resource
      assert.equal("active", v.status)
      assert.equal("associated", v.principals[1].status)
      assert.equal(1, #v.connections)
      local d = run(a, "DELETE", path)
      assert.equal("processing-completed", d.status)
      assert.is_nil(d.response)
    end)
  end)

  describe("backup and import", function()
    it("reports an import importing, then success; `ends` makes it fail with a reason", function()
      local a = sim.account({ provision = 0.1 })
      local sub = sub_of(a)
      local db = run(a, "POST", "/subscriptions/" .. sub .. "/databases", { name = "db" }).response.resourceId
      wait_status(a, "/subscriptions/" .. sub, "active")
      local path = ("/subscriptions/%d/databases/%d/import"):format(sub, db)
      local st = run(a, "GET", path)
      assert.same({}, st.response.resource)
      assert.equal(db, st.response.resourceId)
      assert.equal(sub, st.response.additionalResourceId)
      run(a, "POST", path, { sourceType = "http", importFromUri = { "https://x/y.rdb" } })
      assert.equal("importing", run(a, "GET", path).response.resource.status)
      socket.sleep(0.12)
      assert.equal("success", run(a, "GET", path).response.resource.status)
      sim.config(a.key, { ends = { import = { "failed" } } })
      run(a, "POST", path, { sourceType = "http", importFromUri = { "https://x/y.rdb" } })
      socket.sleep(0.12)
      local failed = run(a, "GET", path).response.resource
      assert.equal("failed", failed.status)
      assert.equal("file-corrupted", failed.failureReason)
      assert.equal("bytes_configured_bdb_limit", failed.failureReasonParams[1].key)
      assert.equal("DATABASE_IMPORT_URI_NOT_PROVIDED", run(a, "POST", path, {}).response.error.type)
    end)

    it("refuses a backup status while the subscription is not active, and a backup with no path", function()
      local a = sim.account({ provision = 0.3 })
      local sub = sub_of(a)
      local db = run(a, "POST", "/subscriptions/" .. sub .. "/databases", { name = "db" }).response.resourceId
      local path = ("/subscriptions/%d/databases/%d/backup"):format(sub, db)
      local t = run(a, "GET", path)
      assert.equal("SUBSCRIPTION_NOT_ACTIVE", t.response.error.type)
      assert.equal("403 FORBIDDEN", t.response.error.status)
      wait_status(a, "/subscriptions/" .. sub, "active")
      assert.equal("DATABASE_BACKUP_DISABLED", run(a, "POST", path, {}).response.error.type)
      assert.equal("processing-completed", run(a, "POST", path, { adhocBackupPath = "s3://b/p" }).status)
      assert.equal("in-progress", run(a, "GET", path).response.resource.status)
    end)
  end)

  describe("cost report", function()
    it("finishes with only response.resource.costReportId, and the report downloads as an attachment", function()
      local a = sim.account()
      sub_of(a)
      local t = run(a, "POST", "/cost-report", { startDate = "2025-01-01", endDate = "2025-01-31", format = "json" })
      assert.same({ "resource" }, sim.keys(t.response))
      local id = t.response.resource.costReportId
      assert.matches("%.json$", id)
      assert.is_nil(link(t, "resource"))
      local status, body, h = req(a, "GET", "/cost-report/" .. id)
      assert.equal(200, status)
      assert.equal("application/octet-stream", h["content-type"])
      assert.matches(id, h["content-disposition"], 1, true)
      assert.equal("Redis Cloud Pro", sim.decode(body)[1].ServiceName)
      assert.equal("COST_REPORT_START_DATE_IS_MISSING", run(a, "POST", "/cost-report", {}).response.error.type)
    end)
  end)

  describe("operations without a task", function()
    it("answers database tags with their own 200 bodies and a traffic resume with an empty 204", function()
      local a = sim.account()
      local sub = sub_of(a)
      local db = run(a, "POST", "/subscriptions/" .. sub .. "/databases", { name = "db" }).response.resourceId
      local path = ("/subscriptions/%d/databases/%d"):format(sub, db)
      local status, v = get_json(a, path .. "/tags")
      assert.equal(200, status)
      assert.is_nil(v.tags)
      status, v = call(a, "PUT", path .. "/tags", { tags = { { key = "env", value = "prod" } } })
      assert.equal(200, status)
      assert.equal("prod", v.tags[1].value)
      assert.is_nil(v.taskId)
      status, v = call(a, "DELETE", path .. "/tags/env")
      assert.equal(200, status)
      assert.same({}, v)
      local body
      status, body = req(a, "POST", path .. "/traffic/resume")
      assert.equal(204, status)
      assert.equal("", body)
    end)
  end)

  describe("error bodies and status lines", function()
    it("answers Spring JSON without `type`: 405 for a method a path lacks, 404 for an unknown path", function()
      local a = sim.account()
      local status, e = get_json(a, "/no/such/thing")
      assert.equal(404, status)
      assert.equal("Not Found", e.error)
      assert.is_nil(e.type)
      status, e = call(a, "PATCH", "/subscriptions")
      assert.equal(405, status)
      assert.equal("Method Not Allowed", e.error)
      assert.is_nil(e.type)
      status, e = call(a, "POST", "/subscriptions", {})
      assert.equal(400, status)
      assert.is_nil(e.type)
    end)

    it("writes a reason phrase in every status line, also for one nginx has none for", function()
      local a = sim.account()
      sim.faults(a.key, { { kind = "status", status = 422 }, { kind = "status", status = 599, body = "html" } })
      local host, port = sim.url():match("^http://([^:/]+):(%d+)")
      for _, want in ipairs({ "HTTP/1.1 422 Unprocessable Entity", "HTTP/1.1 599 Error" }) do
        local c = socket.tcp()
        c:settimeout(5)
        assert(c:connect(host, tonumber(port)))
        c:send(("GET /v1/tasks HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\nx-api-secret-key: %s\r\n\r\n"):format(a.key,
          a.secret))
        assert.equal(want, c:receive("*l"))
        local rest = c:receive("*a")
        c:close()
        assert.matches("Content%-Length: %d+", rest)
      end
    end)

    it("serves the API's 99 operations that answer with a task", function()
      local _, body = sim.request("GET", "/sim/operations")
      local n, ids = 0, {}
      for _, o in ipairs(sim.decode(body)) do
        if o.commandType then n = n + 1 end
        assert.is_nil(ids[o.operationId], o.operationId)
        ids[o.operationId] = true
      end
      assert.equal(99, n)
    end)

    it("keeps a spec account's whole create lifecycle within tens of milliseconds", function()
      local a = sim.account()
      local t0 = socket.gettime()
      local id = run(a, "POST", "/subscriptions", { name = "fast" }).response.resourceId
      wait_status(a, "/subscriptions/" .. id, "active")
      assert.is_true(socket.gettime() - t0 < 0.15, "took " .. (socket.gettime() - t0))
    end)
  end)

  describe("rate limit", function()
    it("answers 429 past the budget, with Retry-After when configured and a remaining count", function()
      local a = sim.account({ rate_limit = 3, rate_window = 60, retry_after = 2 })
      local remaining = {}
      for i = 1, 3 do
        local status, _, h = req(a, "GET", "/tasks")
        assert.equal(200, status)
        remaining[i] = tonumber(h["x-rate-limit-remaining"])
      end
      assert.same({ 2, 1, 0 }, remaining)
      local status, body, h = req(a, "GET", "/tasks")
      assert.equal(429, status)
      assert.equal("2", h["retry-after"])
      assert.equal(429, sim.decode(body).status)
      assert.equal(1, sim.stats(a.key).rate_limited)
    end)

    it("sends no Retry-After by default and opens a new window after rate_window", function()
      local a = sim.account({ rate_limit = 1, rate_window = 0.2 })
      assert.equal(200, (req(a, "GET", "/tasks")))
      local status, _, h = req(a, "GET", "/tasks")
      assert.equal(429, status)
      assert.is_nil(h["retry-after"])
      socket.sleep(0.25)
      assert.equal(200, (req(a, "GET", "/tasks")))
    end)
  end)

  describe("stats", function()
    it("counts requests, routes and connections: one kept-alive connection serves 1000 requests", function()
      local a = sim.account({ rate_limit = 100000 })
      local id = sim.task(a.key, {})
      local host, port = sim.url():match("^http://([^:/]+):(%d+)")
      local c = socket.tcp()
      c:settimeout(5)
      assert(c:connect(host, tonumber(port)))
      local request = ("GET /v1/tasks/%s HTTP/1.1\r\nHost: %s\r\nx-api-key: %s\r\nx-api-secret-key: %s\r\n\r\n")
        :format(id, host, a.key, a.secret)
      local ok = 0
      for _ = 1, 1000 do
        assert(c:send(request))
        local line = assert(c:receive("*l"))
        local len
        repeat
          local h = assert(c:receive("*l"))
          len = len or tonumber(h:match("^[Cc]ontent%-[Ll]ength:%s*(%d+)"))
        until h == ""
        assert(c:receive(len))
        if line:find(" 200 ") then ok = ok + 1 end
      end
      c:close()
      assert.equal(1000, ok)
      local s = sim.stats(a.key)
      assert.equal(1000, s.requests)
      assert.equal(1, s.connections)
      assert.equal(1000, s.by_route["GET /v1/tasks/{id}"])
    end)

    it("counts TLS handshakes on the https listener", function()
      local tls = os.getenv("RCTASKS_SIM_TLS_URL")
      if not tls or tls == "" then return pending("no TLS simulator (RCTASKS_SIM_TLS_URL unset)") end
      local a = sim.account()
      local url = tls .. "/tasks"
      local cmd = ("curl -s -o /dev/null -o /dev/null -w '%%{http_code} ' --max-time 5 --cacert '%s' " ..
        "-H 'x-api-key: %s' -H 'x-api-secret-key: %s' '%s' '%s'"):format(sim.ca(), a.key, a.secret, url, url)
      local p = assert(io.popen(cmd))
      local out = p:read("*a")
      p:close()
      assert.equal("200 200 ", out)
      local s = sim.stats(a.key)
      assert.equal(2, s.requests)
      assert.equal(1, s.connections)
      assert.equal(1, s.tls_handshakes)
    end)
  end)

  describe("faults", function()
    local a, id
    before_each(function()
      a = sim.account()
      id = sim.task(a.key, { queue = false })
    end)

    local function fault(f, path, timeout)
      sim.faults(a.key, { f })
      return req(a, "GET", path or ("/tasks/" .. id), nil, timeout)
    end

    it("status: answers the status with an nginx page, a Spring body, an empty body or a literal text", function()
      local status, body, h = fault({ kind = "status", status = 503, body = "html", retry_after = 7 })
      assert.equal(503, status)
      assert.matches("<html>", body, 1, true)
      assert.equal("7", h["retry-after"])
      status, body = fault({ kind = "status", status = 500, body = "spring" })
      assert.equal(500, status)
      assert.equal("Internal Server Error", sim.decode(body).error)
      status, body = fault({ kind = "status", status = 404, body = "empty" })
      assert.equal(404, status)
      assert.equal("", body)
      status, body = fault({ kind = "status", status = 502, text = "bad gateway, literally" })
      assert.equal(502, status)
      assert.equal("bad gateway, literally", body)
      -- the queue is drained: the next request is answered normally
      assert.equal(200, (req(a, "GET", "/tasks/" .. id)))
    end)

    it("applies a fault only to matching paths, `times` times in a row", function()
      sim.faults(a.key, { { kind = "status", status = 504, path = "^/v1/tasks/", times = 2 } })
      assert.equal(200, (req(a, "GET", "/tasks")))
      assert.equal(504, (req(a, "GET", "/tasks/" .. id)))
      assert.equal(504, (req(a, "GET", "/tasks/" .. id)))
      assert.equal(200, (req(a, "GET", "/tasks/" .. id)))
      assert.equal(0, sim.stats(a.key).faults_pending)
    end)

    it("reset: closes the connection without an answer", function()
      local status, err, partial = fault({ kind = "reset" })
      assert.is_nil(status)
      assert.equal("closed", err)
      assert.equal("", partial)
    end)

    it("reset_mid: sends headers promising more body than arrives, then closes", function()
      local status, err, partial = fault({ kind = "reset_mid" })
      assert.is_nil(status)
      assert.equal("closed", err)
      assert.matches('^{', partial)
      assert.is_nil(sim.decode(partial))
    end)

    it("stall: sends the headers, then nothing for the stall time", function()
      local status, err = fault({ kind = "stall", seconds = 2 }, nil, 0.5)
      assert.is_nil(status)
      assert.equal("timeout", err)
    end)

    it("trickle: sends a complete body a few bytes at a time", function()
      local t0 = socket.gettime()
      local status, body = fault({ kind = "trickle", delay = 0.02, chunk = 64 })
      local elapsed = socket.gettime() - t0
      assert.equal(200, status)
      assert.equal(id, sim.decode(body).taskId)
      local pauses = math.ceil(#body / 64) - 1
      assert.is_true(elapsed >= pauses * 0.02 * 0.9, "body arrived in one piece")
    end)

    it("invalid_json: answers 200 with a broken body", function()
      local status, body = fault({ kind = "invalid_json" })
      assert.equal(200, status)
      assert.is_nil(sim.decode(body))
    end)

    it("shape: a status that is a number, a tasks list that is an object, links that are a string", function()
      local _, body = fault({ kind = "shape", variant = "status_number" })
      assert.equal(42, sim.decode(body).status)
      _, body = fault({ kind = "shape", variant = "tasks_object" }, "/tasks")
      local tasks = sim.decode(body).tasks
      assert.is_table(tasks.a); assert.is_nil(tasks[1]) -- an object of tasks, not an array
      _, body = fault({ kind = "shape", variant = "status_number" }, "/tasks")
      assert.equal(42, sim.decode(body).tasks[1].status) -- on the list route, inside the list
      _, body = fault({ kind = "shape", variant = "links_string" })
      assert.equal("string", type(sim.decode(body).links))
    end)

    it("big: streams a valid JSON body of the size asked for", function()
      local status, body, h = fault({ kind = "big", bytes = 3 * 1024 * 1024 }, nil, 10)
      assert.equal(200, status)
      assert.equal(3 * 1024 * 1024, #body)
      assert.equal(tostring(#body), h["content-length"])
      assert.equal("processing-completed", sim.decode(body).status)
    end)

    it("gzip: answers gzip bytes with Content-Encoding: gzip, unasked, that inflate to the task", function()
      local status, body, h = fault({ kind = "gzip" })
      assert.equal(200, status)
      assert.equal("gzip", h["content-encoding"])
      assert.equal("\31\139", body:sub(1, 2))
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write(body)
      f:close()
      local p = assert(io.popen("gzip -dc < " .. path))
      local plain = p:read("*a")
      p:close()
      os.remove(path)
      assert.equal(id, sim.decode(plain).taskId)
    end)

    it("redirect: answers 302 to another host, or to the location asked for", function()
      local status, _, h = fault({ kind = "redirect" })
      assert.equal(302, status)
      assert.matches("^http://127%.0%.0%.2:%d+/v1/tasks/" .. id:gsub("%-", "%%-") .. "$", h.location)
      status, _, h = fault({ kind = "redirect", location = "http://example.invalid/x" })
      assert.equal(302, status)
      assert.equal("http://example.invalid/x", h.location)
    end)

    it("unknown_status: answers the task with status processing-paused", function()
      local status, body = fault({ kind = "unknown_status" })
      assert.equal(200, status)
      local t = sim.decode(body)
      assert.equal(id, t.taskId)
      assert.equal("processing-paused", t.status)
    end)

    it("rejects an unknown fault kind", function()
      assert.has_error(function() sim.faults(a.key, { { kind = "meteor" } }) end)
    end)
  end)
end)
