-- Real task bodies through run, wait_ready, wait_gone and wait_status (a fake transport plays the
-- API): for every body of spec/fixtures/api-bodies (or RCTASKS_BODIES) whose operation those
-- serve, the call ends the way a user expects, reads the resource where the real API serves it,
-- and never follows a link to a path the API does not serve. The simulator's side of the same
-- bodies is spec/19-replay_spec.lua.
local cjson = require "cjson"
local fake = require "helpers.fake"
local sys = require "helpers.sys"

local DIR = os.getenv("RCTASKS_BODIES") or "spec/fixtures/api-bodies"
local INDEX = cjson.decode((assert(sys.read(DIR .. "/index.json"), "no index.json in " .. DIR)))
local BASE = "https://api.example.test/v1"

-- Values for a path template's placeholders, from the task where it names them.
local function fill(template, t)
  local r = type(t.response) == "table" and t.response or {}
  local rid = type(r.resourceId) == "number" and string.format("%d", r.resourceId) or "31"
  local sub = type(r.additionalResourceId) == "number" and string.format("%d", r.additionalResourceId) or "1001"
  return (template:gsub("^/v1", ""):gsub("{(%w+)}", function(name)
    if name == "subscriptionId" then return rid == sub and "1001" or sub end
    if name == "regionId" then return "2" end
    if name == "pscServiceId" then return "44" end
    if name == "endpointId" then return "55" end
    if name == "tgwInvitationId" then return "77" end
    return rid -- the resource's own id: databaseId, aclRoleId, cloudAccountId, TgwId, ...
  end))
end

local function copy_task(t, status)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  c.status = status
  if status ~= "processing-completed" and status ~= "processing-error" then c.response = nil end
  return c
end

-- The GETs the real API answers with a task (its 23 task-answering reads).
local TASK_GETS = { "/peerings$", "/regions/peerings$", "/cidr$", "/import$", "/backup$", "/transitGateways$",
  "/transitGateways/invitations$", "/private%-service%-connect$", "/private%-service%-connect/%d+$",
  "/creationScripts$", "/deletionScripts$", "/private%-link$", "/endpoint%-script$" }
local function answers_with_task(path)
  for _, p in ipairs(TASK_GETS) do if path:find(p) then return true end end
  return false
end

-- A fake API: the submit answer, then the task as the body says, then the resource reads: a list
-- with the element, a task carrying it, or the object itself; 404 once `gone` is set.
local function api(row, t, opts)
  local paths = {}
  local submit_status = (row.http_status >= 200 and row.http_status < 300) and row.http_status or 200
  local function answer(req, n)
    local path = req.url:sub(#BASE + 1)
    paths[#paths + 1] = req.method .. " " .. path
    if n == 1 then return { submit_status, cjson.encode(copy_task(t, "received")) } end
    if path:find("^/tasks/") then
      local tid = path:match("^/tasks/(.*)$")
      if tid == t.taskId then return { 200, cjson.encode(t) } end
      return { 200, cjson.encode({ taskId = tid, status = "processing-completed",
        response = { resource = opts.carried(opts.read_path) } }) }
    end
    if opts.gone then return { 404, "" } end
    if req.method == "GET" and answers_with_task(path) then
      opts.read_path = path
      return { 202, cjson.encode({ taskId = "read-" .. n, status = "received" }) }
    end
    return { 200, cjson.encode(opts.carried(path)) }
  end
  return answer, paths
end

-- A resource answer: every list a family reads holds an element for each id the request names
-- (and the task's resourceId); a transit gateway's ready word is "available".
local function resources(rid, request_path)
  return function(path)
    local status = (path or ""):find("/transitGateways$") and "available" or "active"
    local list = {}
    for id in ((request_path or "") .. "/" .. rid):gmatch("/(%d+)") do
      list[#list + 1] = { id = tonumber(id), vpcPeeringId = tonumber(id), status = status }
    end
    return { id = tonumber(rid), status = status, roles = list, redisRules = list, peerings = list, tgws = list,
             endpoints = list }
  end
end

local done, checked = 0, 0

describe("real task bodies through the workflow helpers", function()
  for _, row in ipairs(INDEX) do
    local op = row.operations[1]
    if row.kind == "task" and op and op.path ~= "/v1/tasks" and op.path ~= "/v1/tasks/{taskId}" then
      local t = cjson.decode((assert(sys.read(DIR .. "/" .. row.file))))
      local path = fill(op.path, t)
      local method = op.method
      it(row.file .. ": " .. method .. " " .. path, function()
        checked = checked + 1
        local r = type(t.response) == "table" and t.response or {}
        local rid = type(r.resourceId) == "number" and string.format("%d", r.resourceId) or "31"
        local failed = t.status == "processing-error"
        local final_body = t
        if not failed and t.status ~= "processing-completed" then
          final_body = copy_task(t, "processing-completed") -- an intermediate body: it then completes
          final_body.response = { resourceId = tonumber(rid) }
        end
        local answer, paths = api(row, final_body, { gone = method == "DELETE", carried = resources(rid, path) })
        local c = fake.client({ answer }, { base_url = BASE })
        local final, res = c:run(method, path, method ~= "GET" and method ~= "DELETE" and {} or nil,
          { ready = true, timeout = 600 })
        for _, p in ipairs(paths) do
          assert.is_nil(p:find("/acl/%d+/acl/"), "followed a link the API does not serve: " .. p)
          assert.is_nil(p:find("/v1/", 1, true), "doubled /v1: " .. p)
        end
        if failed then
          assert.is_nil(final)
          local err = res
          assert.equal("task", err.kind, tostring(err))
          local e = type(r.error) == "table" and r.error or {}
          for _, field in ipairs({ e.type, e.status, e.description, r.additionalInfo }) do
            if type(field) == "string" and #field < 400 then
              assert.matches(field, err.message, 1, true)
            end
          end
          done = done + 1
          return
        end
        assert.is_table(final, tostring(res))
        assert.equal("processing-completed", final.status)
        if method == "GET" then
          assert.same(final_body.response and final_body.response.resource, res)
        elseif method == "DELETE" then
          assert.is_nil(res)
        end
        done = done + 1
      end)
    end
  end

  it("covered every task body of the operations it serves", function()
    assert.equal(checked, done)
    assert.is_true(done >= 100, done .. " bodies")
  end)
end)

describe("families", function()
  local function client(answers) return fake.client(answers, { base_url = BASE }) end

  it("reads an ACL role (no GET by id) from the list, never from its link to /v1/acl/{id}/acl/roles", function()
    local body = assert(sys.read(DIR .. "/tasks/028-aclRoleUpdateRequest-processing-completed.json"))
    local c, tr = client({ { 202, body }, { 200, '{"accountId":1,"roles":[{"id":20000,"status":"pending"}]}' },
                           { 200, '{"accountId":1,"roles":[{"id":20000,"status":"active","name":"r"}]}' } })
    local t, role = c:run("PUT", "/acl/roles/20000", { name = "r" }, { ready = true })
    assert.equal("processing-completed", t.status)
    assert.equal("r", role.name)
    for _, r in ipairs(tr.requests) do
      if r.method == "GET" then assert.equal(BASE .. "/acl/roles", r.url) end
    end
  end)

  it("reads a Pro database its create names by resourceId only, then waits for its subscription", function()
    local body = '{"taskId":"' .. fake.ID .. '","commandType":"databaseCreateRequest","status":"processing-completed",'
      .. '"response":{"resourceId":51}}'
    local c, tr = client({ { 202, body }, { 200, '{"databaseId":51,"status":"pending"}' },
                           { 200, '{"databaseId":51,"status":"active"}' }, { 200, '{"id":7,"status":"pending"}' },
                           { 200, '{"id":7,"status":"active"}' } })
    local t, db = c:run("POST", "/subscriptions/7/databases", { name = "db" }, { ready = true, interval = 0 })
    assert.equal("processing-completed", t.status)
    assert.equal(51, db.databaseId)
    assert.equal(BASE .. "/subscriptions/7/databases/51", tr.requests[2].url)
    assert.equal(BASE .. "/subscriptions/7", tr.requests[#tr.requests].url)
  end)

  it("takes the family's ready words: customer-managed keys pending, a peering pending acceptance", function()
    local c = client({ { 200, '{"id":1,"status":"encryption_key_pending"}' } })
    assert.equal("encryption_key_pending", assert(c:wait_ready("/subscriptions/1")).status)
    c = client({ { 202, '{"taskId":"p1","status":"processing-completed","response":{"resource":{"peerings":' ..
      '[{"vpcPeeringId":9,"status":"pending-acceptance"}]}}}' } })
    assert.equal("pending-acceptance", assert(c:wait_ready("/subscriptions/1/peerings/9")).status)
    c = client({ { 200, '{"id":1,"status":"available"}' } }) -- not a subscription word: waits to the deadline
    local _, err = c:wait_ready("/subscriptions/1", { timeout = 5 })
    assert.equal("timeout", err.kind)
  end)

  it("failed statuses are the family's and end the wait at once: a cloud account's active-error", function()
    local c, tr = client({ { 200, '{"id":3,"status":"draft"}' }, { 200, '{"id":3,"status":"active-error"}' } })
    local _, err = c:wait_ready("/cloud-accounts/3")
    assert.equal("task", err.kind)
    assert.equal("active-error", err.code)
    assert.equal(2, #tr.requests)
  end)

  it("settles ACL users: ready must be seen twice in a row (the API flips them after a change)", function()
    local c, tr = client({ { 200, '{"id":5,"status":"active"}' }, { 200, '{"id":5,"status":"pending"}' },
                           { 200, '{"id":5,"status":"active"}' }, { 200, '{"id":5,"status":"active"}' } })
    assert(c:wait_ready("/acl/users/5"))
    assert.equal(4, #tr.requests)
    c, tr = client({ { 200, '{"id":5,"status":"active"}' } })
    assert(c:wait_ready("/acl/users/5", { settle = 1 }))
    assert.equal(1, #tr.requests)
  end)

  it("a DELETE waits until the resource is gone; gone = false does not", function()
    local del = '{"taskId":"' .. fake.ID .. '","commandType":"subscriptionDeleteRequest",'
      .. '"status":"processing-completed"}'
    local c, tr = client({ { 202, del }, { 200, '{"id":1,"status":"deleting"}' }, { 404, "" } })
    local t, res = c:run("DELETE", "/subscriptions/1")
    assert.equal("processing-completed", t.status)
    assert.is_nil(res)
    assert.equal(3, #tr.requests)
    c, tr = client({ { 202, del } })
    assert(c:run("DELETE", "/subscriptions/1", nil, { gone = false }))
    assert.equal(1, #tr.requests)
  end)

  it("wait_gone: true at a 404, at a list without the element, or at status deleted", function()
    assert.is_true(client({ { 200, '{"status":"deleting"}' }, { 404, "" } }):wait_gone("/subscriptions/1"))
    assert.is_true(client({ { 200, '{"roles":[{"id":4,"status":"deleting"}]}' }, { 200, '{"roles":[]}' } })
      :wait_gone("/acl/roles/4"))
    assert.is_true(client({ { 200, '{"id":3,"status":"deleted"}' } }):wait_gone("/cloud-accounts/3"))
    local _, err = client({ { 200, '{"status":"deleting"}' } }):wait_gone("/subscriptions/1", { timeout = 10 })
    assert.equal("timeout", err.kind)
    assert.matches("still there", err.message, 1, true)
  end)

  it("wait_ready on a path that answers with a task says so at once", function()
    local c, tr = client({ { 202, '{"taskId":"t9","status":"received"}' } })
    local _, err = c:wait_ready("/subscriptions/1/databases/2/import")
    assert.equal("decode", err.kind)
    assert.matches("answers with a task", err.message, 1, true)
    assert.equal(1, #tr.requests)
  end)

  it("run on a GET that answers with a task returns the task and the resource it carries", function()
    local completed = assert(sys.read(DIR .. "/tasks/055-peeringListRequest-processing-completed.json"))
    local c = client({ { 202, '{"taskId":"e02b40d6-1395-4861-a3b9-ecf829d835fd","status":"received"}' },
                       { 200, completed } })
    local t, cidr = c:run("GET", "/subscriptions/1/cidr")
    assert.equal("processing-completed", t.status)
    assert.same({ "1", "2", "3" }, cidr.cidr_ips)
  end)

  it("wait_status polls an import's status, one task per poll, until it ends", function()
    local function status(s, n)
      return { 200, '{"taskId":"i' .. n .. '","status":"processing-completed","response":{"resource":{"status":"' ..
        s .. '"}}}' }
    end
    local c, tr, clock = client({ status("importing", 1), status("importing", 2), status("success", 3) })
    local start = clock.t
    local r = assert(c:wait_status("/subscriptions/1/databases/2/import"))
    assert.equal("success", r.status)
    assert.equal(3, #tr.requests)
    assert.is_true(clock.t - start >= 3 - 1e-9) -- the wait schedule between polls: 1 s, then 2 s
    c = client({ { 200, '{"taskId":"i","status":"processing-completed","response":{"resource":{"status":"failed",'
      .. '"failureReason":"file-corrupted"}}}' } })
    local _, err = c:wait_status("/subscriptions/1/databases/2/import")
    assert.equal("task", err.kind)
    assert.equal("file-corrupted", err.resource.failureReason)
  end)

  it("an operation that answers without a task returns what it answered, from submit and from run", function()
    local tags = '{"tags":[{"key":"env","value":"prod"}],"accountId":69369}'
    local c = client({ { 200, tags } })
    local v = assert(c:submit("PUT", "/subscriptions/1/databases/2/tags", { tags = {} }))
    assert.equal(69369, v.accountId)
    c = client({ { 200, tags } })
    assert.equal("prod", assert(c:run("PUT", "/subscriptions/1/databases/2/tags", {})).tags[1].value)
    c = client({ { 204, "" } })
    assert.is_true(c:run("POST", "/subscriptions/1/databases/2/traffic/resume"))
  end)

  it("a failed task's message carries its status, type, description and additionalInfo", function()
    local info = "rcp-cannot-provision-without-plan"
    local body = '{"taskId":"' .. fake.ID .. '","status":"processing-error","response":{"error":'
      .. '{"type":"GENERAL_ERROR","status":"500 INTERNAL_SERVER_ERROR","description":"It failed"},'
      .. '"additionalInfo":"' .. info .. '"}}'
    local _, err = client({ { 202, body } }):run("POST", "/subscriptions", {})
    for _, s in ipairs({ "GENERAL_ERROR", "500 INTERNAL_SERVER_ERROR", "It failed", info }) do
      assert.matches(s, err.message, 1, true)
    end
  end)
end)
