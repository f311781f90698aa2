-- The rctasks command-line tool and the examples, run as processes against the simulator.
local sim = require "helpers.sim"

local LUA = require("helpers.sys").LUA
local ROOT = io.popen("pwd"):read("*l")

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  os.remove(path)
  return s
end

-- Runs `cmd` (a shell fragment) with exactly the REDISCLOUD_* variables of `env`; returns exit
-- code, stdout, stderr. Every run checks that no key of `env` appears in what it printed.
local function sh(cmd, env)
  local out, err = os.tmpname(), os.tmpname()
  local vars = {}
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. quote(v) end
  local line = "env -u REDISCLOUD_ACCESS_KEY -u REDISCLOUD_SECRET_KEY -u REDISCLOUD_URL -u RCTASKS_JOURNAL " ..
    table.concat(vars, " ") .. " " .. cmd .. " >" .. out .. " 2>" .. err .. " </dev/null; echo $?"
  local p = io.popen(line)
  local rc = tonumber(p:read("*a"))
  p:close()
  local o, e = slurp(out), slurp(err)
  for _, name in ipairs({ "REDISCLOUD_ACCESS_KEY", "REDISCLOUD_SECRET_KEY" }) do
    local secret = env and env[name]
    if secret then
      assert.is_nil(o:find(secret, 1, true), "a key appeared on stdout")
      assert.is_nil(e:find(secret, 1, true), "a key appeared on stderr")
    end
  end
  return rc, o, e
end

local function rctasks(args, env) return sh(LUA .. " bin/rctasks " .. args, env) end

local function account(cfg)
  local a = sim.account(cfg)
  a.env = { REDISCLOUD_ACCESS_KEY = a.key, REDISCLOUD_SECRET_KEY = a.secret, REDISCLOUD_URL = sim.url() }
  return a
end

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\r\n]+") do t[#t + 1] = l end
  return t
end

describe("rctasks CLI", function()
  it("prints help for the tool and for every command, exit 0", function()
    local rc, out = rctasks("--help")
    assert.equal(0, rc)
    assert.matches("usage: rctasks <command>", out, 1, true)
    assert.matches("REDISCLOUD_ACCESS_KEY", out, 1, true)
    for _, cmd in ipairs({ "list", "get", "wait", "watch", "journal" }) do
      local rc2, out2 = rctasks(cmd .. " --help")
      assert.equal(0, rc2)
      assert.matches("usage: rctasks " .. cmd, out2, 1, true)
      local rc3, out3 = rctasks("help " .. cmd)
      assert.equal(0, rc3); assert.equal(out2, out3)
    end
  end)

  it("exits 2 with a hint on stderr for usage errors", function()
    local a = account()
    for _, args in ipairs({ "", "frobnicate", "list --colour", "list extra", "get", "get a b",
                            "wait x --timeout soon", "watch --count 0", "get ../../etc", "list --json=yes" }) do
      local rc, out, err = rctasks(args, a.env)
      assert.equal(2, rc, "rctasks " .. args)
      assert.equal("", out)
      assert.is_truthy(err:find("usage") or err:find("--help"), "rctasks " .. args)
    end
    assert.equal(0, sim.stats(a.key).requests)
  end)

  it("takes credentials from the environment only: missing keys or an http:// remote URL exit 2", function()
    local rc, _, err = rctasks("list", { REDISCLOUD_ACCESS_KEY = "k" .. sim.hex(8) })
    assert.equal(2, rc)
    assert.matches("REDISCLOUD_SECRET_KEY", err, 1, true)
    local rc2, _, err2 = rctasks("list", {
      REDISCLOUD_ACCESS_KEY = "k" .. sim.hex(8), REDISCLOUD_SECRET_KEY = "s" .. sim.hex(8),
      REDISCLOUD_URL = "http://api.example.com/v1" })
    assert.equal(2, rc2)
    assert.matches("loopback", err2, 1, true)
  end)

  it("lists tasks as an aligned table, filtered by --status", function()
    local a = account({ outcomes = { "completed", "error" } })
    local ok = sim.task(a.key, { queue = false, resourceId = 100123 })
    local bad = sim.task(a.key, { queue = false })
    local t = sim.task(a.key, { outcome = "stuck", queue = false })
    os.execute("sleep 0.1") -- the sim's 0.02 s steps end: ok and bad are done, t is stuck
    local rc, out = rctasks("list", a.env)
    assert.equal(0, rc)
    local l = lines(out)
    assert.equal(4, #l)
    local col = l[1]:find("STATUS", 1, true)
    assert.matches("^TASK ID", l[1])
    for i = 2, 4 do assert.is_truthy(l[i]:sub(col):match("^processing%-"), l[i]) end
    for _, id in ipairs({ ok, bad, t }) do assert.matches(id, out, 1, true) end
    assert.matches("100123", out, 1, true)

    local rc2, out2 = rctasks("list --status processing-error", a.env)
    assert.equal(0, rc2)
    assert.equal(2, #lines(out2))
    assert.matches(bad, out2, 1, true)
  end)

  it("lists tasks as one JSON array with --json, [] when there are none", function()
    local a = account()
    local rc0, out0 = rctasks("list --json", a.env)
    assert.equal(0, rc0)
    assert.same({}, sim.decode(out0))
    assert.equal("[]\n", out0)
    local id1, id2 = sim.task(a.key, {}), sim.task(a.key, {})
    local rc, out = rctasks("list --json --limit 5", a.env)
    assert.equal(0, rc)
    local v = assert(sim.decode(out))
    assert.equal(2, #v)
    local got = { [v[1].taskId] = true, [v[2].taskId] = true }
    assert.same({ [id1] = true, [id2] = true }, got)
    assert.is_string(v[1].status)
  end)

  it("shows one task, as text or as JSON", function()
    local a = account()
    local id = sim.task(a.key, { resourceId = 51055029 })
    os.execute("sleep 0.1")
    local rc, out = rctasks("get " .. id, a.env)
    assert.equal(0, rc)
    assert.matches("taskId%s+" .. id:gsub("%-", "%%-"), out)
    assert.matches("status%s+processing%-completed", out)
    assert.matches("resourceId%s+51055029", out)
    local rc2, out2 = rctasks("get " .. id .. " --json", a.env)
    assert.equal(0, rc2)
    local v = assert(sim.decode(out2))
    assert.equal(id, v.taskId)
    assert.equal(51055029, v.response.resourceId)
  end)

  it("exits 4 on an API error (unknown task, wrong secret) or a network error", function()
    local a = account()
    local ghost = "00000000-0000-4000-8000-000000000000"
    local rc, out, err = rctasks("get " .. ghost, a.env)
    assert.equal(4, rc); assert.equal("", out)
    assert.matches("404", err, 1, true); assert.matches(ghost, err, 1, true)
    sim.task(a.key, {})
    local env = { REDISCLOUD_ACCESS_KEY = a.key, REDISCLOUD_SECRET_KEY = "wrong" .. sim.hex(8),
                  REDISCLOUD_URL = sim.url() }
    local rc2, _, err2 = rctasks("wait " .. ghost, env)
    assert.equal(4, rc2)
    assert.matches("401", err2, 1, true)
    env.REDISCLOUD_URL = "http://127.0.0.1:9/v1"
    local rc3, _, err3 = rctasks("list", env)
    assert.equal(4, rc3)
    assert.matches("CURLE_COULDNT_CONNECT", err3, 1, true)
  end)

  it("waits a task to completion, one plain line per status when piped, exit 0", function()
    local a = account({ step = 0.1 })
    local id = sim.task(a.key, { resourceId = 7 })
    local rc, out = rctasks("wait " .. id .. " --interval 0.05 --max-interval 0.1", a.env)
    assert.equal(0, rc)
    assert.is_nil(out:find("\r", 1, true))
    local l = lines(out)
    assert.matches("received$", l[1])
    assert.matches("processing%-completed$", l[#l - 1])
    assert.equal("task " .. id .. " processing-completed resource 7", l[#l])
  end)

  it("exits 1 when the task fails, naming the task and the API error", function()
    local a = account({ outcomes = { "error:PLANNER_TIMEOUT" } })
    local id = sim.task(a.key, {})
    local rc, _, err = rctasks("wait " .. id .. " --interval 0.05", a.env)
    assert.equal(1, rc)
    assert.matches(id, err, 1, true)
    assert.matches("PLANNER_TIMEOUT", err, 1, true)
    local rc2, out2 = rctasks("wait " .. id .. " --json", a.env)
    assert.equal(1, rc2)
    assert.equal("processing-error", assert(sim.decode(out2)).status)
  end)

  it("exits 3 at --timeout", function()
    local a = account({ outcomes = { "stuck" } })
    local id = sim.task(a.key, {})
    local rc, _, err = rctasks("wait " .. id .. " --timeout 0.3 --interval 0.05", a.env)
    assert.equal(3, rc)
    assert.matches("timeout", err, 1, true)
  end)

  it("prints only the final task as JSON with wait --json", function()
    local a = account()
    local id = sim.task(a.key, {})
    local rc, out = rctasks("wait " .. id .. " --json --interval 0.05", a.env)
    assert.equal(0, rc)
    local v = assert(sim.decode(out))
    assert.equal(id, v.taskId); assert.equal("processing-completed", v.status)
  end)

  it("redraws one live status line on a terminal", function()
    local a = account({ step = 0.4 }) -- each status lasts 0.4 s: polls at most 0.2 s apart see them all
    local id = sim.task(a.key, {})
    -- script(1) gives the tool a pseudo-terminal as stdout
    local inner = LUA .. " bin/rctasks wait " .. id .. " --interval 0.1 --max-interval 0.1"
    local rc, out = sh("script -qec " .. quote(inner) .. " /dev/null", a.env)
    assert.equal(0, rc)
    assert.matches("\r\27[K", out, 1, true)
    assert.matches("next poll in", out, 1, true)
    assert.matches("processing-in-progress", out, 1, true)
    assert.matches("task " .. id .. " processing-completed", out, 1, true)
  end)

  it("watches the task list, refreshing --count times", function()
    local a = account()
    local id = sim.task(a.key, {})
    local rc, out = rctasks("watch --interval 0.05 --count 3", a.env)
    assert.equal(0, rc)
    local n = 0
    for _ in out:gmatch("\n# ") do n = n + 1 end
    if out:sub(1, 2) == "# " then n = n + 1 end
    assert.equal(3, n)
    assert.matches(id, out, 1, true)
  end)

  -- A task body the simulator sends in place of the real one: for GET /v1/tasks/{id}, and inside
  -- the list for GET /v1/tasks.
  local function served(a, id, fields)
    local task = '{"taskId":"' .. id .. '","commandType":"subscriptionCreateRequest",' ..
      '"timestamp":"2024-05-10T14:14:34Z"' .. fields .. "}"
    sim.request("DELETE", "/sim/accounts/" .. a.key .. "/faults")
    sim.faults(a.key, { { kind = "status", status = 200, path = "/tasks/", times = 10, text = task,
                          content_type = "application/json" } })
    return task
  end

  it("neutralises control characters and terminal escapes in what the server sent", function()
    local a = account()
    local id = sim.task(a.key, {})
    local evil = "\\u001b]0;owned\\u0007\\u001b[2J\\r\\nFAKE LINE\\u009b31m\\u007f"
    local fields = ',"status":"processing-completed","description":"' .. evil .. '","response":{"error":'
      .. '{"type":"' .. evil .. '"},"additionalInfo":"' .. evil .. '"}'
    local task = served(a, id, fields)
    for _, args in ipairs({ "get " .. id, "wait " .. id .. " --interval 0.05", "list" }) do
      if args == "list" then
        sim.request("DELETE", "/sim/accounts/" .. a.key .. "/faults")
        sim.faults(a.key, { { kind = "status", status = 200, path = "/tasks$", text = '{"tasks":[' .. task .. ']}',
                              content_type = "application/json" } })
      end
      local rc, out, err = rctasks(args, a.env)
      assert.equal(0, rc, args .. ": " .. err)
      for _, s in ipairs({ out, err }) do
        assert.is_nil(s:find("[%z\1-\9\11-\31\127]"), args .. ": a control character reached the terminal")
        assert.is_nil(s:find("\194[\128-\159]"), args .. ": a C1 control reached the terminal")
      end
      if args:find("^get") then assert.matches("owned", out, 1, true) end
      if args == "list" then assert.matches(id, out, 1, true) end
    end
  end)

  it("lets no raw C1 byte (an 8-bit CSI) through, and keeps a list as wide as its short cells", function()
    local a = account()
    local id = sim.task(a.key, {})
    sim.faults(a.key, { { kind = "status", status = 401, text = "<html><title>401 \155 2J\155 31m</title></html>",
                          content_type = "text/html" } })
    local rc, out, err = rctasks("get " .. id, a.env)
    assert.equal(4, rc)
    assert.is_nil((out .. err):find("[\128-\159]"), err)
    local long = ("p"):rep(200000)
    sim.faults(a.key, { { kind = "status", status = 200, path = "/tasks$", content_type = "application/json",
      text = '{"tasks":[{"taskId":"' .. id .. '","status":"' .. long .. '"},{"taskId":"t2","status":"received"}]}' } })
    rc, out = rctasks("list", a.env)
    assert.equal(0, rc)
    assert.is_true(#out < 2000, #out .. " bytes for two rows")
    assert.matches("(200000 bytes)", out, 1, true)
  end)

  it("prints a task holding a number JSON cannot carry (1e400) as JSON, and never a traceback", function()
    local a = account()
    local id = sim.task(a.key, {})
    served(a, id, ',"status":"processing-completed","response":{"resourceId":1e400}')
    local rc, out, err = rctasks("get " .. id .. " --json", a.env)
    assert.equal(0, rc, err)
    assert.is_nil(err:find("traceback", 1, true))
    local v = assert(sim.decode(out))
    assert.equal(id, v.taskId)
  end)

  it("never prints a key a server echoes back in a successful task", function()
    local a = account()
    local id = sim.task(a.key, {})
    served(a, id, ',"status":"processing-completed","description":"' .. a.key .. ' ' .. a.secret .. '",'
      .. '"response":{"resource":{"' .. a.secret .. '":"' .. a.key .. '"}}')
    -- sh() fails the spec if either key shows on stdout or stderr
    for _, args in ipairs({ "get " .. id, "get " .. id .. " --json", "wait " .. id .. " --json" }) do
      local rc, out = rctasks(args, a.env)
      assert.equal(0, rc, args)
      assert.matches("[redacted]", out, 1, true)
    end
  end)

  it("shows and waits on a task whose fields are named like the task's methods", function()
    local a = account()
    local id = sim.task(a.key, {})
    served(a, id, ',"status":"processing-completed","ok":false,"failed":"yes","link":7,"resource_id":[1],'
      .. '"error_message":{},"response":{"resourceId":5}')
    for _, args in ipairs({ "get " .. id, "get " .. id .. " --json", "wait " .. id, "wait " .. id .. " --json" }) do
      local rc, out, err = rctasks(args, a.env)
      assert.equal(0, rc, args .. ": " .. err)
      assert.is_nil(err:find("traceback", 1, true), args)
      assert.matches("processing-completed", out, 1, true)
    end
  end)

  it("exits 4 with one line, no traceback, when the library cannot even load", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir .. "/bin && cp bin/rctasks " .. dir .. "/bin/"))
    local rc, out, err = sh("env LUA_PATH=/nonexistent/?.lua LUA_CPATH=/nonexistent/?.so " .. LUA .. " " ..
      dir .. "/bin/rctasks list")
    os.execute("rm -rf " .. dir)
    assert.equal(4, rc)
    assert.equal("", out)
    assert.is_nil(err:find("traceback", 1, true), err)
    assert.equal(1, #lines(err))
  end)

  it("runs from any directory, with the modules of its checkout", function()
    local rc, out = sh("sh -c " .. quote("cd / && " .. LUA .. " " .. quote(ROOT .. "/bin/rctasks") .. " --version"))
    assert.equal(0, rc)
    assert.matches("^rctasks %S+\n$", out)
  end)
end)

describe("rctasks journal", function()
  -- A journal as runs leave it: written through the library, as scripts write it.
  local function journal_file(records)
    local path = os.tmpname()
    local jmod = require "rctasks.journal"
    local J = jmod.new(assert(require("rctasks.store.file").new(path)), require("rctasks.core").sha256("k"))
    for key, rec in pairs(records) do assert(J:put(key, rec)) end
    return path
  end

  it("shows each key's state, request, task and resource, marks what is in flight, and the locks", function()
    local path = journal_file({
      ["prod/sub"] = { state = "completed", method = "POST", path = "/subscriptions", task = "t-1",
                       resource = "/subscriptions/100001", id = 100001 },
      ["prod/cache"] = { state = "submitted", method = "POST", path = "/subscriptions/100001/databases",
                         task = "t-2" },
      ["prod/rule"] = { state = "failed", method = "POST", path = "/acl/redisRules",
                        error = "task failed: 400 BAD_REQUEST - ACL_REDIS_RULE_PATTERN_NOT_VALID: \27]0;owned\7" },
    })
    local st = require("rctasks.store.file").new(path)
    assert(st:lease("rct:" .. require("rctasks.core").sha256("k") .. ":g:/subscriptions/100001", "x", 60))
    local rc, out, err = rctasks("journal " .. quote(path))
    assert.equal(0, rc)
    assert.equal("", err)
    local l = lines(out)
    assert.matches("^KEY +STATE +REQUEST +TASK +RESOURCE +WRITTEN +BY$", l[1])
    assert.matches("^prod/cache +submitted %* +POST /subscriptions/100001/databases +t%-2 ", l[2])
    assert.matches("^prod/rule +failed +POST /acl/redisRules +%- +%- ", l[3])
    assert.matches("^prod/sub +completed +POST /subscriptions +t%-1 +/subscriptions/100001 +%d+s ago", l[4])
    assert.equal("  prod/rule: task failed: 400 BAD_REQUEST - ACL_REDIS_RULE_PATTERN_NOT_VALID: ?]0;owned?", l[5])
    assert.equal("3 records: 1 in flight (*: 0 submitting, 1 submitted), 1 completed, 1 failed", l[6])
    assert.equal("lock held: /subscriptions/100001", l[7])
    assert.is_nil(out:find("\27", 1, true))
  end)

  it("reads a journal cut mid-record or holding garbage up to its last whole record, with one warning", function()
    local path = journal_file({ ["a"] = { state = "completed", method = "DELETE", path = "/acl/roles/7" } })
    local f = assert(io.open(path, "ab"))
    f:write("\0\255 not json\n", '{"k":"rct:', ("x"):rep(40)) -- garbage, then a record cut short
    f:close()
    local rc, out, err = rctasks("journal " .. quote(path))
    assert.equal(0, rc)
    assert.matches("^a +completed +DELETE /acl/roles/7", lines(out)[2])
    assert.matches("1 records: 0 in flight", out, 1, true)
    assert.equal(1, #lines(err))
    assert.matches("2 unreadable line%(s%), skipped .* read up to the last whole record", err)
  end)

  it("forgets a key, prints JSON, and says what is wrong with a missing file", function()
    local path = journal_file({ ["x/y"] = { state = "submitting", method = "POST", path = "/acl/redisRules" },
                                ["z"] = { state = "completed", method = "POST", path = "/acl/roles" } })
    local rc, out = rctasks("journal " .. quote(path) .. " --json")
    assert.equal(0, rc)
    local v = assert(require("cjson").decode(out))
    assert.equal(2, #v.records)
    assert.equal("x/y", v.records[1].key)
    assert.equal("submitting", v.records[1].state)
    assert.equal(12, #v.records[1].account)
    rc, out = rctasks("journal " .. quote(path) .. " --forget x/y")
    assert.equal(0, rc)
    assert.equal("forgot x/y\n", out)
    rc, out = rctasks("journal " .. quote(path))
    assert.equal(0, rc)
    assert.matches("1 records: 0 in flight", out, 1, true)
    local err, _
    rc, _, err = rctasks("journal " .. quote(path) .. " --forget nope")
    assert.equal(2, rc)
    assert.matches("no record of key 'nope'", err, 1, true)
    rc, _, err = rctasks("journal /nonexistent/journal")
    assert.equal(2, rc)
    assert.matches("cannot open journal '/nonexistent/journal'", err, 1, true)
    rc, _, err = sh(LUA .. " bin/rctasks journal")
    assert.equal(2, rc)
    assert.matches("name a journal FILE (or set RCTASKS_JOURNAL)", err, 1, true)
    rc, out = sh("RCTASKS_JOURNAL=" .. quote(path) .. " " .. LUA .. " bin/rctasks journal")
    assert.equal(0, rc)
    assert.matches("^z +completed", lines(out)[2])
  end)
end)

describe("examples", function()
  local function example(name, a)
    local env = {}
    for k, v in pairs(a.env) do env[k] = v end
    return sh("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/" ..
      (LUA == "lua5.4" and "5.4" or "jit") .. "/?.so;;' " .. LUA .. " examples/" .. name, env)
  end

  it("provision.lua provisions a subscription, two databases, an ACL rule, a role and a user", function()
    local a = account()
    local rc, out, err = example("provision.lua", a)
    assert.equal(0, rc, err)
    assert.matches("database %d+ %(cache%) is active at redis%-", out)
    assert.matches("database %d+ %(sessions%) is active at redis%-", out)
    assert.matches("ACL rule %d+, role %d+ and user %d+ are active", out)
    assert.matches("%d+ requests in %d+s", out)
    local routes = sim.stats(a.key).by_route
    assert.equal(2, routes["POST /v1/subscriptions/{id}/databases"])
    assert.equal(1, routes["POST /v1/acl/users"])
  end)

  it("teardown.lua deletes it all again, each delete waited out until gone; a rerun has nothing left", function()
    local a = account()
    assert.equal(0, (example("provision.lua", a)))
    local rc, out, err = example("teardown.lua", a)
    assert.equal(0, rc, err)
    assert.equal(6, select(2, out:gsub(" gone\n", "")))
    local subs = sim.decode(select(2, sim.request("GET", "/subscriptions", a.key, a.secret)))
    assert.same({}, subs.subscriptions)
    rc, out = example("teardown.lua", a)
    assert.equal(0, rc)
    assert.matches("nothing to tear down", out, 1, true)
  end)

  it("wait_all.lua waits for several subscriptions at once", function()
    local a = account()
    local rc, out, err = example("wait_all.lua", a)
    assert.equal(0, rc, err)
    assert.equal(4, select(2, out:gsub("subscription %d+", "")))
  end)
end)
