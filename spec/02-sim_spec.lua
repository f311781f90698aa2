-- The local API simulator is faithful to what the real Redis Cloud API sends (sim/README.md lists it):
-- checked with raw LuaSocket requests, no rctasks code involved.
local socket = require "socket"
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

local function final(t)
  return t.status ~= "received" and t.status ~= "processing-in-progress"
end

local function link(t, rel)
  for _, l in ipairs(t.links or {}) do
    if l.rel == rel then return l.href end
  end
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

    it("creates a database under a subscription, naming both ids in the completed task", function()
      local a = sim.account()
      local sub = poll(a, create_sub(a).taskId, final).response.resourceId
      local status, body = req(a, "POST", "/subscriptions/" .. sub .. "/databases", '{"name":"db1"}')
      assert.equal(202, status)
      local t = poll(a, sim.decode(body).taskId, final)
      assert.equal("databaseCreateRequest", t.commandType)
      assert.equal("processing-completed", t.status)
      assert.equal(sub, t.response.additionalResourceId)
      local db = t.response.resourceId
      assert.equal(sim.url() .. "/subscriptions/" .. sub .. "/databases/" .. db, link(t, "resource"))
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

    it("answers 404 with a Spring body naming an unknown subscription", function()
      local a = sim.account()
      local status, e = get_json(a, "/subscriptions/4242")
      assert.equal(404, status)
      assert.equal(404, e.status)
      assert.matches("4242", e.message)
    end)

    it("deletes a subscription through a task, after which it is gone", function()
      local a = sim.account()
      local sub = poll(a, create_sub(a).taskId, final).response.resourceId
      local status, body = req(a, "DELETE", "/subscriptions/" .. sub)
      assert.equal(202, status)
      local t = poll(a, sim.decode(body).taskId, final)
      assert.equal("subscriptionDeleteRequest", t.commandType)
      assert.equal("processing-completed", t.status)
      assert.equal(404, (req(a, "GET", "/subscriptions/" .. sub)))
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
