-- rctasks.families: the Redis Cloud API's resource families, one row each, and what follows from
-- them: which family a request path belongs to, where a finished task's resource lives, how that
-- resource is read (a GET by id, a list filtered by id, or a GET that answers with a task), and
-- its status words (ready, pending, failed, gone). run, wait_ready and wait_gone read them here.
local core = require "rctasks.core"
local errors = require "rctasks.errors"
local poll = require "rctasks.poll"
local retry = require "rctasks.retry"
local taskmod = require "rctasks.task"
local url = require "rctasks.url"

local M = {}

local ONCE = retry.ONCE

-- The status words of most families, and those of databases (Pro and Essentials alike).
local STD = { ready = { "active" }, pending = { "pending" }, failed = { "error" }, gone = { "deleting" } }
local DB = { ready = { "active" }, failed = { "error" }, gone = { "deleting" },
  pending = { "draft", "pending", "active-change-draft", "active-change-pending", "rcp-draft",
              "rcp-change-pending", "rcp-active-change-draft", "proxy-policy-change-draft",
              "proxy-policy-change-pending", "dynamic-endpoints-creation-pending", "active-upgrade-pending" } }

local PSC_ENDPOINT = { ready = { "active" }, failed = { "failed", "rejected" }, gone = { "deleted" },
  pending = { "initialized", "processing", "pending", "accept-pending", "reject-pending" } }

-- Each row: name; item, the path template of one resource ({x} stands for a number, {x*} for any
-- one segment; {id} or {id*} is its own id, absent for a resource a subscription has at most one
-- of); create, where a create is posted when that is not the item path without its last
-- segment; read, how it is read when not by a GET
-- of the item path: { list = template, field =, key = } (GET the list, find the element whose
-- `key` is the id) or { task = template, field =, key = } (a GET that answers with a task whose
-- response.resource holds the resource, or its `field` the elements); id, where a finished create
-- names the new resource (default response.resourceId); the status words; settle, how many polls
-- in a row must see it ready (the API flips some between active and pending after a change);
-- command, the commandType of a create's task; listed, where resources are found by the name a
-- create gives them: { list = template, field = path to the elements (an array on the way is
-- its first element), id = the element's id field } (adoption and the journal's crash window).
M.ROWS = {
  { name = "subscription", item = "/subscriptions/{id}", command = "subscriptionCreateRequest",
    listed = { list = "/subscriptions", field = { "subscriptions" }, id = "id" }, statuses = {
      -- with customer-managed keys a subscription stops here until the key is granted
      ready = { "active", "encryption_key_pending" }, pending = { "pending" }, failed = { "error" },
      gone = { "deleting" } } },
  { name = "database", item = "/subscriptions/{sid}/databases/{id}", statuses = DB, parent = "subscription",
    command = "databaseCreateRequest",
    listed = { list = "/subscriptions/{sid}/databases", field = { "subscription", "databases" }, id = "databaseId" } },
  { name = "fixedSubscription", item = "/fixed/subscriptions/{id}", statuses = STD,
    command = "fixedSubscriptionCreateRequest",
    listed = { list = "/fixed/subscriptions", field = { "subscriptions" }, id = "id" } },
  { name = "fixedDatabase", item = "/fixed/subscriptions/{sid}/databases/{id}", statuses = DB,
    parent = "fixedSubscription", command = "fixedDatabaseCreateRequest",
    listed = { list = "/fixed/subscriptions/{sid}/databases", field = { "subscription", "databases" },
              id = "databaseId" } },
  { name = "aclRedisRule", item = "/acl/redisRules/{id}", statuses = STD, command = "aclRedisRuleCreateRequest",
    listed = { list = "/acl/redisRules", field = { "redisRules" }, id = "id" },
    read = { list = "/acl/redisRules", field = "redisRules", key = "id" } },
  { name = "aclRole", item = "/acl/roles/{id}", statuses = STD, settle = 2, command = "aclRoleCreateRequest",
    listed = { list = "/acl/roles", field = { "roles" }, id = "id" },
    read = { list = "/acl/roles", field = "roles", key = "id" } },
  { name = "aclUser", item = "/acl/users/{id}", statuses = STD, settle = 2, command = "aclUserCreateRequest",
    listed = { list = "/acl/users", field = { "users" }, id = "id" } },
  { name = "user", item = "/users/{id}", statuses = STD },
  { name = "cloudAccount", item = "/cloud-accounts/{id}", command = "cloudAccountCreateRequest",
    listed = { list = "/cloud-accounts", field = { "cloudAccounts" }, id = "id" }, statuses = {
      ready = { "active" }, failed = { "active-error" }, gone = { "deleted" },
      pending = { "draft", "pending", "change-draft", "change-pending", "delete-draft" } } },
  { name = "peering", item = "/subscriptions/{sid}/peerings/{id}", command = "peeringCreateRequest", statuses = {
      ready = { "active", "inactive", "pending-acceptance" }, pending = { "initiating-request" },
      failed = { "failed" } },
    read = { task = "/subscriptions/{sid}/peerings", field = "peerings", key = "vpcPeeringId" } },
  { name = "activeActivePeering", item = "/subscriptions/{sid}/regions/peerings/{id}",
    command = "activeActiveVpcPeeringCreateRequest", statuses = {
      ready = { "active", "inactive", "pending-acceptance" }, pending = { "initiating-request" },
      failed = { "failed" } },
    read = { task = "/subscriptions/{sid}/regions/peerings", field = "peerings", key = "vpcPeeringId" } },
  { name = "transitGateway", item = "/subscriptions/{sid}/transitGateways/{id}/attachment",
    command = "tgwAttachmentCreateRequest", statuses = {
      ready = { "available" }, failed = { "failed", "rejected" }, gone = { "deleted" },
      pending = { "initiating-request", "pending", "pendingAcceptance", "modifying", "deleting", "rejecting",
                  "failing", "rollingBack", "provisioning" } },
    read = { task = "/subscriptions/{sid}/transitGateways", field = "tgws", key = "id" } },
  { name = "activeActiveTransitGateway", item = "/subscriptions/{sid}/regions/{rid}/transitGateways/{id}/attachment",
    statuses = { ready = { "available" }, failed = { "failed", "rejected" }, gone = { "deleted" },
                 pending = { "initiating-request", "pending", "pendingAcceptance", "modifying", "provisioning" } },
    read = { task = "/subscriptions/{sid}/regions/{rid}/transitGateways", field = "tgws", key = "id" } },
  { name = "pscEndpoint", item = "/subscriptions/{sid}/private-service-connect/{psc}/endpoints/{id}",
    create = "/subscriptions/{sid}/private-service-connect/{psc}", statuses = PSC_ENDPOINT,
    read = { task = "/subscriptions/{sid}/private-service-connect/{psc}", field = "endpoints", key = "id" } },
  { name = "activeActivePscEndpoint",
    item = "/subscriptions/{sid}/regions/{rid}/private-service-connect/{psc}/endpoints/{id}",
    create = "/subscriptions/{sid}/regions/{rid}/private-service-connect/{psc}", statuses = PSC_ENDPOINT,
    read = { task = "/subscriptions/{sid}/regions/{rid}/private-service-connect/{psc}", field = "endpoints",
             key = "id" } },
  { name = "pscService", item = "/subscriptions/{sid}/private-service-connect", statuses = {
      ready = { "active" }, failed = { "provision-failed", "failed" },
      gone = { "delete-queued", "delete-pending", "deleted" },
      pending = { "create-queued", "initialized", "create-pending" } },
    read = { task = "/subscriptions/{sid}/private-service-connect" } },
  { name = "activeActivePscService", item = "/subscriptions/{sid}/regions/{rid}/private-service-connect",
    statuses = { ready = { "active" }, failed = { "provision-failed", "failed" },
                 gone = { "delete-queued", "delete-pending", "deleted" },
                 pending = { "create-queued", "initialized", "create-pending" } },
    read = { task = "/subscriptions/{sid}/regions/{rid}/private-service-connect" } },
  { name = "privateLink", item = "/subscriptions/{sid}/private-link", statuses = {
      ready = { "active" }, pending = { "initializing" }, failed = { "failed" }, gone = { "deleting" } },
    read = { task = "/subscriptions/{sid}/private-link" } },
  { name = "activeActivePrivateLink", item = "/subscriptions/{sid}/regions/{rid}/private-link", statuses = {
      ready = { "active" }, pending = { "initializing" }, failed = { "failed" }, gone = { "deleting" } },
    read = { task = "/subscriptions/{sid}/regions/{rid}/private-link" } },
  { name = "costReport", item = "/cost-report/{id*}", statuses = {}, id = { "resource", "costReportId" },
    command = "costReportCreateRequest" },
}

-- GETs that answer with a task whose response.resource is the answer: status reads, whose
-- resource.status says when the work they report on is over.
M.STATUS_READS = {
  { path = "/subscriptions/{sid}/databases/{db}/import", ready = { "success" }, failed = { "failed" } },
  { path = "/subscriptions/{sid}/databases/{db}/backup", ready = { "success" }, failed = { "failed" } },
  { path = "/fixed/subscriptions/{sid}/databases/{db}/import", ready = { "success" }, failed = { "failed" } },
  { path = "/fixed/subscriptions/{sid}/databases/{db}/backup", ready = { "success" }, failed = { "failed" } },
}

------------------------------------------------------------------------------------------------
-- Templates: "/subscriptions/{sid}/databases/{id}" -> a pattern capturing each placeholder.

local function compile(template)
  local names = {}
  local pat = template:gsub("[%-%.]", "%%%0"):gsub("{(%w+)(%*?)}", function(n, any)
    names[#names + 1] = n
    return any == "*" and "([^/]+)" or "(%d+)"
  end)
  return "^" .. pat, names
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

for _, f in ipairs(M.ROWS) do
  f.pattern, f.names = compile(f.item)
  f.singleton = f.names[#f.names] ~= "id"
  f.create = f.create or (not f.singleton and f.item:gsub("/{id%*?}$", "")) or nil
  f.create_pattern, f.create_names = compile(f.create or f.item)
  f.ready, f.pending, f.failed, f.gone = set_of(f.statuses.ready), set_of(f.statuses.pending),
    set_of(f.statuses.failed), set_of(f.statuses.gone)
  f.settle = f.settle or 1
end
for _, s in ipairs(M.STATUS_READS) do
  s.pattern = compile(s.path)
  s.ready_set, s.failed_set = set_of(s.ready), set_of(s.failed)
end
local BY_NAME = {}
for _, f in ipairs(M.ROWS) do BY_NAME[f.name] = f end
M.by_name = BY_NAME

-- Fill a template from named values; nil when one is missing.
local function fill(template, values)
  local missing = false
  local p = template:gsub("{(%w+)%*?}", function(n)
    local v = values[n]
    if v == nil then missing = true; return "" end
    return v
  end)
  if missing then return nil end
  return p
end

-- Which resource a path names: the family, its item path and the placeholder values, from the
-- longest item template the path starts with ("/subscriptions/1/databases/2/import" names the
-- database). `exact` is true when the path is the item path itself.
function M.locate(path)
  local p = path:match("^[^?]*")
  local best
  for _, f in ipairs(M.ROWS) do
    local caps = { p:match(f.pattern .. "()") }
    if #caps > 0 then
      local stop = caps[#caps]
      local rest = p:sub(stop)
      if (rest == "" or rest:sub(1, 1) == "/") and (not best or stop > best.stop) then
        local values = {}
        for i, n in ipairs(f.names) do values[n] = caps[i] end
        best = { family = f, values = values, item = p:sub(1, stop - 1), exact = rest == "", stop = stop }
      end
    end
  end
  return best
end

-- The family a create is posted to (POST /subscriptions/{sid}/databases), with the values of
-- its placeholders.
function M.collection(path)
  local p = path:match("^[^?]*"):gsub("/+$", "")
  for _, f in ipairs(M.ROWS) do
    if f.create then
      local caps = { p:match(f.create_pattern .. "$") }
      if #caps > 0 then -- (with no placeholder, match returns the whole path)
        local values = {}
        for i, n in ipairs(f.create_names) do values[n] = caps[i] end
        return f, values
      end
    end
  end
  return nil
end

-- The status read a path is, if it is one.
function M.status_read(path)
  local p = path:match("^[^?]*")
  for _, s in ipairs(M.STATUS_READS) do
    if p:find(s.pattern .. "$") then return s end
  end
  return nil
end

-- The id a finished create names, as a path segment.
local function new_id(f, t)
  local r = rawget(t, "response")
  if type(r) ~= "table" then return nil end
  local v = r.resourceId
  if f.id then
    v = r
    for _, k in ipairs(f.id) do v = type(v) == "table" and v[k] or nil end
  end
  return url.segment(v)
end

-- The item path of the resource the finished task `t` of `method path` is about, and its
-- family; nil when the request names none the library knows. The request path decides (the
-- real API's resource links are not always API paths); a resource link is the fallback.
function M.resource_of(base_url, method, path, t)
  local f, values = M.collection(path)
  if method == "POST" and f then
    values.id = new_id(f, t)
    if values.id then return fill(f.item, values), f end
  else
    local at = M.locate(path)
    if at then return at.item, at.family end
  end
  local href = url.rebase(base_url, taskmod.link(t, "resource"))
  local linked = href and M.locate(href)
  if linked and linked.exact then return linked.item, linked.family end
  return nil
end

-- The item path of the resource `path`'s family belongs to (a database's subscription), or nil.
function M.parent_item(path)
  local at = M.locate(path)
  local parent = at and at.exact and at.family.parent and BY_NAME[at.family.parent]
  if not parent then return nil end
  return fill(parent.item, { id = at.values.sid })
end

------------------------------------------------------------------------------------------------
-- Reading one resource: read(exec, at, deadline) -> resource | nil, err, where a missing one is
-- an http 404 error whatever the family's way of reading (a list without it, a task without it).

local function decode_any(body)
  if not body:find("%S") then return true end
  return core.decode(body)
end

local function missing(exec, path)
  return errors.new("http", { status = 404, message = "HTTP 404 Not Found: " .. path .. " is not there",
    method = "GET", url = exec.base_url .. path })
end

-- The element of `list` whose `key` equals the id (numbers and strings compared as text).
local function find(list, key, id)
  if type(list) ~= "table" then return nil end
  for _, e in ipairs(list) do
    if type(e) == "table" and e[key] ~= nil and tostring(e[key]) == tostring(id) then return e end
  end
  return nil
end

-- A GET that answers with a task: wait for it (inside the deadline) and take its resource. A
-- task failing with a ..._NOT_FOUND error type is a missing resource, like a 404.
function M.task_resource(exec, policy, path, deadline, o)
  local t, err = exec:call("GET", path, nil, core.decode_task, ONCE, deadline)
  if not t then return nil, err end
  if not taskmod.ok(t) then
    t, err = poll.wait(exec, policy, t.taskId, o, deadline)
    if not t then
      if err.kind == "task" and type(err.code) == "string" and err.code:find("_NOT_FOUND$") then
        return nil, missing(exec, path)
      end
      return nil, err
    end
  end
  local r = rawget(t, "response")
  return type(r) == "table" and r.resource or nil, nil, t
end

-- read(exec, policy, at, deadline, o): the resource `at` (from locate) names. `o`: the wait
-- options, for the tasks a task-answering read makes.
function M.read(exec, policy, at, deadline, o)
  local rd = at.family.read
  if not rd then return exec:call("GET", at.item, nil, decode_any, ONCE, deadline) end
  local holder, err
  if rd.list then
    holder, err = exec:call("GET", fill(rd.list, at.values), nil, decode_any, ONCE, deadline)
  else
    holder, err = M.task_resource(exec, policy, fill(rd.task, at.values), deadline, o)
  end
  if err then return nil, err end
  local r = holder
  if rd.field then r = find(type(holder) == "table" and holder[rd.field], rd.key, at.values.id) end
  if r == nil then return nil, missing(exec, at.item) end
  return r
end

------------------------------------------------------------------------------------------------
-- Finding a resource by name: named(exec, policy, f, values, name, deadline) -> item path, element
-- | false (none has it) | nil, err. Two with the name is a conflict: adoption must not guess.

local function elements(holder, field)
  local v = holder
  for _, k in ipairs(field) do
    if type(v) ~= "table" then return nil end
    if v[1] ~= nil then v = v[1] end -- the API wraps some lists in a one-element array
    v = type(v) == "table" and v[k] or nil
  end
  return type(v) == "table" and v or nil
end

function M.named(exec, policy, f, values, name, deadline)
  local n = f.listed
  local list_path = fill(n.list, values)
  if not list_path then return false end
  local holder, err = exec:call("GET", list_path, nil, decode_any, policy, deadline)
  if holder == nil then
    if err.status == 404 then return false end -- no list (the subscription is not there): no such resource
    return nil, err
  end
  local hit, hits = nil, 0
  for _, e in ipairs(elements(holder, n.field) or {}) do
    if type(e) == "table" and e.name == name and url.segment(e[n.id]) then hit, hits = e, hits + 1 end
  end
  if hits == 0 then return false end
  if hits > 1 then
    return nil, errors.new("conflict", { message = string.format("%d resources in %s are named %q: "
      .. "rctasks will not pick one", hits, list_path, name), method = "GET", url = exec.base_url .. list_path })
  end
  local v = {}
  for k, x in pairs(values) do v[k] = x end
  v.id = url.segment(hit[n.id])
  return fill(f.item, v), hit
end

M.decode_any = decode_any
M.set_of = set_of

return M
