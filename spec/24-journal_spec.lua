-- Operation keys and the journal (client:run/pipeline with `key`), adoption, and the crash window
-- between sending a create and recording its task, against the simulator with a journal file.
local rctasks = require "rctasks"
local defaults = require "rctasks.defaults"
local filestore = require "rctasks.store.file"
local journal = require "rctasks.journal"
local core = require "rctasks.core"
local sim = require "helpers.sim"
local socket = require "socket"

local FAST = { interval = 0.02, max_interval = 0.1, jitter = 0, timeout = 20 }

local function opts(more)
  local o = {}
  for k, v in pairs(FAST) do o[k] = v end
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local n = 0
local function journal_path()
  n = n + 1
  return dir .. "/journal" .. n
end

local function client(acct, path, extra)
  local o = { api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), retry = { base = 0.02 },
              journal = path }
  for k, v in pairs(extra or {}) do o[k] = v end
  return rctasks.new(o)
end

local function route(acct, name) return sim.stats(acct.key).by_route[name] or 0 end
local POST_SUB, POST_DB = "POST /v1/subscriptions", "POST /v1/subscriptions/{id}/databases"

-- A subscription to put databases in, made without the journal.
local function subscription(acct)
  local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url() }
  local _, sub = assert(c:run("POST", "/subscriptions", { name = "base" }, opts{ ready = true }))
  c:close()
  return sub.id
end

-- The record under `key`, read the way the library reads it.
local function record(path, acct, key)
  return assert(journal.new(assert(filestore.new(path)), core.sha256(acct.key)):get(key))
end

local function put(path, acct, key, rec)
  return assert(journal.new(assert(filestore.new(path)), core.sha256(acct.key)):put(key, rec))
end

local function read(path)
  local f = io.open(path)
  local s = f and f:read("*a") or ""
  if f then f:close() end
  return s
end

local saved_lag
before_each(function() saved_lag = defaults.journal.lag end)
after_each(function() defaults.journal.lag = saved_lag end)

describe("run with a key", function()
  it("creates once: a rerun answers from the journal with the resource read afresh", function()
    local acct, path = sim.account(), journal_path()
    local sid = subscription(acct)
    local c = client(acct, path)
    local t, db = assert(c:run("POST", "/subscriptions/" .. sid .. "/databases", { name = "cache" },
                               opts{ key = "prod/cache", ready = true }))
    assert.equal("processing-completed", t.status)
    assert.equal("active", db.status)
    local rec = record(path, acct, "prod/cache")
    assert.equal("completed", rec.state)
    assert.equal(t.taskId, rec.task)
    assert.equal(db.databaseId, rec.id)
    c:close()

    local again = client(acct, path) -- a new process, in effect: nothing but the file is shared
    local t2, db2 = assert(again:run("POST", "/subscriptions/" .. sid .. "/databases", { name = "cache" },
                                     opts{ key = "prod/cache", ready = true }))
    assert.equal(1, route(acct, POST_DB))
    assert.equal(t.taskId, t2.taskId)
    assert.equal("processing-completed", t2.status)
    assert.equal(db.databaseId, db2.databaseId)
    assert.equal("active", db2.status)
  end)

  it("waits on a task in flight instead of sending the request again", function()
    local acct, path = sim.account({ step = 0.3 }), journal_path()
    local sid = subscription(acct)
    local c = client(acct, path)
    local dbs = "/subscriptions/" .. sid .. "/databases"
    local t = assert(c:submit("POST", dbs, { name = "inflight" })) -- what a killed run sent
    put(path, acct, "k", { state = "submitted", method = "POST", path = dbs, task = t.taskId,
                           command = "databaseCreateRequest", name = "inflight" })
    local final, db = assert(c:run("POST", dbs, { name = "inflight" }, opts{ key = "k" }))
    assert.equal(1, route(acct, POST_DB))
    assert.equal(t.taskId, final.taskId)
    assert.equal("inflight", db.name)
    assert.equal("completed", record(path, acct, "k").state)
  end)

  it("records the task the moment the API answers, before any wait", function()
    local acct, path = sim.account({ step = 0.3 }), journal_path()
    local sid = subscription(acct)
    local c = client(acct, path)
    local seen
    local _, db = assert(c:run("POST", "/subscriptions/" .. sid .. "/databases", { name = "early" },
      opts{ key = "early", on_update = function(task)
        if not seen then seen = { status = task.status, rec = record(path, acct, "early") } end
      end }))
    assert.is_table(seen)
    assert.not_equal("processing-completed", seen.status)
    assert.equal("submitted", seen.rec.state)
    assert.equal("early", db.name)
  end)

  it("sends a failed operation again on a rerun", function()
    local acct, path = sim.account(), journal_path()
    local sid = subscription(acct)
    sim.config(acct.key, { outcomes = { "error:DATABASE_CREATION_FAILURE" } })
    local c = client(acct, path)
    local dbs = "/subscriptions/" .. sid .. "/databases"
    local t, err = c:run("POST", dbs, { name = "retry-me" }, opts{ key = "r" })
    assert.is_nil(t)
    assert.equal("task", err.kind)
    local rec = record(path, acct, "r")
    assert.equal("failed", rec.state)
    assert.matches("DATABASE_CREATION_FAILURE", rec.error)
    local _, db = assert(c:run("POST", dbs, { name = "retry-me" }, opts{ key = "r" }))
    assert.equal("retry-me", db.name)
    assert.equal(2, route(acct, POST_DB))
    assert.equal("completed", record(path, acct, "r").state)
  end)

  it("refuses a key already used for another request, before sending anything", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    put(path, acct, "dup", { state = "completed", method = "POST", path = "/acl/redisRules" })
    assert.has_error(function()
      c:run("POST", "/acl/roles", { name = "x" }, opts{ key = "dup" })
    end, "rctasks: key 'dup' was used for POST /acl/redisRules, not POST /acl/roles (forget it with "
      .. "rctasks journal --forget)")
    assert.equal(0, route(acct, "POST /v1/acl/roles"))
  end)

  it("needs a journal, and a key that a person can read", function()
    local acct = sim.account()
    local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url() }
    assert.has_error(function() c:run("POST", "/acl/roles", {}, { key = "k" }) end,
      "rctasks.run: option 'key' needs a journal (rctasks.new{ journal = \"path/to/file\" })")
    local j = client(acct, journal_path())
    assert.has_error(function() j:run("POST", "/acl/roles", {}, { key = "a\nb" }) end)
    assert.has_error(function() j:run("POST", "/acl/roles", {}, { key = "" }) end)
    assert.has_error(function() j:run("POST", "/acl/roles", {}, { key = ("x"):rep(201) }) end)
    assert.has_error(function() rctasks.new{ api_key = "a", secret_key = "b", journal = 42 } end,
      "rctasks.new: option 'journal' must be a file path, true or a store (rctasks.store.*)")
    assert.has_error(function() rctasks.new{ api_key = "a", secret_key = "b", journal = true } end,
      "rctasks.new: journal = true needs a coordination store (`store` or `redis`)")
  end)

  it("never stores a request body, a password or an API key", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    -- (a rule stands in for a user here: its body carries a password field all the same)
    assert(c:run("POST", "/acl/redisRules", { name = "app", redisRule = "+@read", password = "Sup3r-Secret-Pw!" },
                 opts{ key = "user" }))
    local text = read(path)
    assert.matches("user", text)
    assert.is_nil(text:find("Sup3r-Secret-Pw!", 1, true))
    assert.is_nil(text:find("password", 1, true))
    assert.is_nil(text:find(acct.key, 1, true))
    assert.is_nil(text:find(acct.secret, 1, true))
  end)

  it("replays a completed delete without sending it, and takes a 404 after a lost delete as done", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    local _, rule = assert(c:run("POST", "/acl/redisRules", { name = "gone-soon", redisRule = "+@read" },
                                 opts{ key = "rule" }))
    local item = "/acl/redisRules/" .. rule.id
    local t = assert(c:run("DELETE", item, nil, opts{ key = "rule/delete" }))
    assert.equal("processing-completed", t.status)
    local again = assert(c:run("DELETE", item, nil, opts{ key = "rule/delete" }))
    assert.equal(t.taskId, again.taskId)
    assert.equal(1, route(acct, "DELETE /v1/acl/redisRules/{id}"))
    -- a run killed after sending its delete: the record says submitting, the rule is gone
    put(path, acct, "rule/delete2", { state = "submitting", method = "DELETE", path = item })
    local done, err = c:run("DELETE", item, nil, opts{ key = "rule/delete2" })
    assert.is_nil(err)
    assert.is_true(done)
    assert.equal("completed", record(path, acct, "rule/delete2").state)
  end)

  it("fails with kind journal, sending nothing, when the journal cannot be read", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    assert(os.execute("mkdir -p " .. path)) -- a directory where the file should be
    local t, err = c:run("POST", "/acl/redisRules", { name = "never" }, opts{ key = "x" })
    assert.is_nil(t)
    assert.equal("journal", err.kind)
    assert.matches("the journal could not be read", err.message)
    assert.equal(0, route(acct, "POST /v1/acl/redisRules"))
  end)
end)

describe("the crash window", function()
  it("finds the task of a create whose answer was never recorded, and sends nothing", function()
    local acct, path = sim.account(), journal_path()
    local sid = subscription(acct)
    local c = client(acct, path)
    local dbs = "/subscriptions/" .. sid .. "/databases"
    -- a run wrote "submitting", sent the POST, and died before the answer was recorded
    put(path, acct, "lost", { state = "submitting", method = "POST", path = dbs, command = "databaseCreateRequest",
                              name = "lost" })
    local t = assert(c:submit("POST", dbs, { name = "lost" }))
    local final, db = assert(c:run("POST", dbs, { name = "lost" }, opts{ key = "lost" }))
    assert.equal(t.taskId, final.taskId)
    assert.equal("lost", db.name)
    assert.equal(1, route(acct, POST_DB))
    local named = 0
    for _, d in ipairs(assert(c:request("GET", dbs)).subscription[1].databases) do
      if d.name == "lost" then named = named + 1 end
    end
    assert.equal(1, named)
  end)

  it("does not take another create's task: the name must match", function()
    local acct, path = sim.account(), journal_path()
    local sid = subscription(acct)
    local c = client(acct, path)
    local dbs = "/subscriptions/" .. sid .. "/databases"
    put(path, acct, "mine", { state = "submitting", method = "POST", path = dbs, command = "databaseCreateRequest",
                              name = "mine" })
    assert(c:run("POST", dbs, { name = "theirs" }, opts())) -- someone else's create, after the record
    defaults.journal.lag = 0
    local _, db = assert(c:run("POST", dbs, { name = "mine" }, opts{ key = "mine" }))
    assert.equal("mine", db.name)
    assert.equal(2, route(acct, POST_DB))
  end)

  it("finds the resource by name when its task is no longer listed", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    put(path, acct, "role", { state = "submitting", method = "POST", path = "/acl/redisRules", name = "by-name" })
    assert(c:run("POST", "/acl/redisRules", { name = "by-name", redisRule = "+@read" }, opts()))
    local t, rule = assert(c:run("POST", "/acl/redisRules", { name = "by-name", redisRule = "+@read" },
                                 opts{ key = "role" }))
    assert.is_true(t)
    assert.equal("by-name", rule.name)
    assert.equal(1, route(acct, "POST /v1/acl/redisRules"))
    local rec = record(path, acct, "role")
    assert.equal("completed", rec.state)
    assert.equal(rule.id, rec.id)
  end)

  it("sends the create once the task list has had time to show it, when nothing was made", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    defaults.journal.lag = 0.3
    put(path, acct, "never-sent", { state = "submitting", method = "POST", path = "/acl/redisRules",
                                    command = "aclRedisRuleCreateRequest", name = "late" })
    local t0 = core.now()
    local _, rule = assert(c:run("POST", "/acl/redisRules", { name = "late", redisRule = "+@read" },
                                 opts{ key = "never-sent" }))
    assert.is_true(core.now() - t0 >= 0.2) -- waited out the lag before believing nothing was made
    assert.equal("late", rule.name)
    assert.equal(1, route(acct, "POST /v1/acl/redisRules"))
    assert.equal(2, route(acct, "GET /v1/tasks")) -- looked, waited, looked again
  end)

  it("refuses to guess where a lost request left nothing to find it by", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    local sid = subscription(acct)
    local backup = "/subscriptions/" .. sid .. "/databases/1/backup"
    put(path, acct, "backup", { state = "submitting", method = "POST", path = backup })
    local t, err = c:run("POST", backup, nil, opts{ key = "backup" })
    assert.is_nil(t)
    assert.equal("conflict", err.kind)
    assert.matches("cannot tell whether it was acted on", err.message)
    assert.equal(0, route(acct, "POST /v1/subscriptions/{id}/databases/{id}/backup"))
  end)

  it("looks for a create whose answer was lost on the way, in the same run", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    -- the create is done, then the connection drops before the answer arrives
    sim.faults(acct.key, { { kind = "reset_mid", path = "^/v1/acl/redisRules$" } })
    local _, rule = assert(c:run("POST", "/acl/redisRules", { name = "dropped", redisRule = "+@read" },
                                 opts{ key = "dropped" }))
    assert.equal("dropped", rule.name)
    assert.equal(1, route(acct, "POST /v1/acl/redisRules"))
    assert.equal("completed", record(path, acct, "dropped").state)
  end)
end)

describe("adopt", function()
  it("returns an existing resource of that name instead of creating it", function()
    local acct = sim.account()
    local sid = subscription(acct)
    local c = client(acct, journal_path())
    local dbs = "/subscriptions/" .. sid .. "/databases"
    local _, made = assert(c:run("POST", dbs, { name = "shared" }, opts()))
    local t, db = assert(c:run("POST", dbs, { name = "shared" }, opts{ adopt = true, ready = true }))
    assert.is_true(t)
    assert.equal(made.databaseId, db.databaseId)
    assert.equal("active", db.status)
    assert.equal(1, route(acct, POST_DB))
    local _, other = assert(c:run("POST", dbs, { name = "new-one" }, opts{ adopt = true }))
    assert.equal("new-one", other.name)
    assert.equal(2, route(acct, POST_DB))
  end)

  it("will not pick between two of the same name", function()
    local acct = sim.account()
    local c = client(acct, journal_path())
    assert(c:run("POST", "/acl/redisRules", { name = "twin", redisRule = "+@read" }, opts()))
    assert(c:run("POST", "/acl/redisRules", { name = "twin", redisRule = "+@read" }, opts()))
    local t, err = c:run("POST", "/acl/redisRules", { name = "twin", redisRule = "+@read" }, opts{ adopt = true })
    assert.is_nil(t)
    assert.equal("conflict", err.kind)
    assert.matches('2 resources in /acl/redisRules are named "twin"', err.message, 1, true)
  end)

  it("is for creates of families with names only", function()
    local c = client(sim.account(), journal_path())
    assert.has_error(function() c:run("POST", "/subscriptions/1/peerings", { name = "x" }, { adopt = true }) end)
    assert.has_error(function() c:run("POST", "/acl/redisRules", { redisRule = "+@read" }, { adopt = true }) end)
  end)
end)

describe("pipeline with a key", function()
  it("reruns as a replay: every step answered from the journal, no change sent", function()
    local acct, path = sim.account(), journal_path()
    local steps = {
      { name = "subscription", path = "/subscriptions", body = { name = "stack" } },
      { name = "cache", path = function(r) return "/subscriptions/" .. r.subscription.id .. "/databases" end,
        body = { name = "cache" } },
      { name = "rule", path = "/acl/redisRules", body = { name = "ro", redisRule = "+@read" } },
    }
    local c = client(acct, path)
    local first = assert(c:pipeline(steps, opts{ key = "stack" }))
    local requests = sim.stats(acct.key).requests
    local again = assert(client(acct, path):pipeline(steps, opts{ key = "stack" }))
    for _, name in ipairs({ "subscription", "cache", "rule" }) do
      assert.equal(first[name].id, again[name].id)
      assert.equal(first[name].task.taskId, again[name].task.taskId)
      assert.equal("completed", record(path, acct, "stack/" .. name).state)
    end
    assert.equal("active", again.cache.resource.status)
    assert.equal(1, route(acct, POST_SUB))
    assert.equal(1, route(acct, POST_DB))
    assert.equal(1, route(acct, "POST /v1/acl/redisRules"))
    -- a replay reads each resource once (and the database's subscription): no task polls
    assert.is_true(sim.stats(acct.key).requests - requests <= 6)
  end)
end)

describe("the subscription guard", function()
  local memory = require "rctasks.store.memory"

  it("sends a change refused as busy again once the subscription is active", function()
    local acct, path = sim.account(), journal_path()
    local sid = subscription(acct)
    sim.config(acct.key, { outcomes = { "error:SUBSCRIPTION_NOT_ACTIVE" } }) -- as if a change slipped in
    local c = client(acct, path)
    local _, db = assert(c:run("POST", "/subscriptions/" .. sid .. "/databases", { name = "second-try" },
                               opts{ key = "busy" }))
    assert.equal("second-try", db.name)
    assert.equal(2, route(acct, POST_DB))
    assert.equal("completed", record(path, acct, "busy").state)
  end)

  it("waits for the subscription to be active before sending a change", function()
    local acct = sim.account({ provision = 0.4 })
    local sid = subscription(acct)
    local c = client(acct, journal_path())
    local dbs = "/subscriptions/" .. sid .. "/databases"
    assert(c:submit("POST", dbs, { name = "first" })) -- turns the subscription pending for a while...
    local sub, tries
    tries = 0
    repeat -- a few polls apart: a spin would spend the client's budget and sleep out the pending time
      tries = tries + 1
      sub = assert(c:request("GET", "/subscriptions/" .. sid))
      if sub.status ~= "pending" then socket.sleep(0.02) end
    until sub.status == "pending" or tries == 100
    assert.equal("pending", sub.status)
    local _, db = assert(c:run("POST", dbs, { name = "second" }, opts{ ready = true })) -- ...so this waits
    assert.equal("active", db.status)
    assert.equal(0, sim.stats(acct.key).not_active)
  end)

  it("waits its turn for a lease another script holds, and lets go of it on every path", function()
    local acct = sim.account()
    local st = memory.new()
    local c = client(acct, st)
    local sub_key = "rct:" .. core.sha256(acct.key) .. ":g:/subscriptions/777"
    assert.is_true(st:lease(sub_key, "another script", 0.3))
    local waited
    local t, err = c:run("DELETE", "/subscriptions/777/databases/1", nil, opts{ on_guard = function(what)
      waited = what
    end })
    assert.equal("/subscriptions/777", waited)
    assert.is_nil(t) -- (there is no such subscription: the API says so in the delete's task)
    assert.equal("SUBSCRIPTION_NOT_FOUND", err.code)
    assert.same({}, st:keys("rct:")) -- the lease is gone, not left to run out
    -- a callback that raises: the lease goes all the same
    local sid = subscription(acct)
    assert.has_error(function()
      c:run("POST", "/subscriptions/" .. sid .. "/databases", { name = "boom" },
            opts{ on_update = function() error("the caller's bug") end })
    end)
    if rawget(_G, "jit") or _VERSION ~= "Lua 5.1" then assert.same({}, st:keys("rct:")) end
  end)

  it("gives up at the deadline when another script keeps the subscription", function()
    local acct = sim.account()
    local st = memory.new()
    local c = client(acct, st)
    assert.is_true(st:lease("rct:" .. core.sha256(acct.key) .. ":g:/subscriptions/5", "another script", 60))
    local t, err = c:run("PUT", "/subscriptions/5/databases/6", { memoryLimitInGb = 2 }, opts{ timeout = 0.5 })
    assert.is_nil(t)
    assert.equal("timeout", err.kind)
    assert.matches("/subscriptions/5 is held by another script's change", err.message, 1, true)
    assert.equal(0, sim.stats(acct.key).requests)
  end)

  it("is off without a journal unless asked for, and guard = false turns it off", function()
    local acct = sim.account()
    local st = memory.new()
    assert.is_true(st:lease("rct:" .. core.sha256(acct.key) .. ":g:/subscriptions/5", "another script", 60))
    local plain = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), store = st }
    local _, err = plain:run("PUT", "/subscriptions/5/databases/6", { memoryLimitInGb = 2 }, opts{ timeout = 2 })
    assert.equal("SUBSCRIPTION_NOT_FOUND", err.code) -- sent at once: no guard
    local off = client(acct, st, { guard = false })
    _, err = off:run("PUT", "/subscriptions/5/databases/6", { memoryLimitInGb = 2 }, opts{ timeout = 2 })
    assert.equal("SUBSCRIPTION_NOT_FOUND", err.code)
    local on = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url(), store = st,
                            guard = true }
    _, err = on:run("PUT", "/subscriptions/5/databases/6", { memoryLimitInGb = 2 }, opts{ timeout = 0.3 })
    assert.equal("timeout", err.kind)
  end)
end)

describe("a replay whose resource is gone", function()
  it("says which key and what to do, at once (its grace counts from the completion)", function()
    local acct, path = sim.account(), journal_path()
    local c = client(acct, path)
    -- a record written an hour ago (put() stamps the time of writing)
    assert(filestore.new(path):set("rct:" .. core.sha256(acct.key) .. ":j:old", require("cjson").encode({
      state = "completed", method = "POST", path = "/acl/redisRules", resource = "/acl/redisRules/999999",
      id = 999999, at = core.time() - 3600 })))
    local t0 = core.now()
    local t, err = c:run("POST", "/acl/redisRules", { name = "old" }, opts{ key = "old", grace = 60 })
    assert.is_nil(t)
    assert.equal(404, err.status)
    assert.matches("key 'old' completed, but its resource /acl/redisRules/999999 is gone", err.message, 1, true)
    assert.is_true(core.now() - t0 < 5)
    assert.equal(0, route(acct, "POST /v1/acl/redisRules"))
  end)
end)
