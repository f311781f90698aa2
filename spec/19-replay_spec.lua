-- Replays real Redis Cloud API bodies against the simulator: for every row of a bodies index
-- (RCTASKS_BODIES, default spec/fixtures/api-bodies; its index.json), drive the simulator to the
-- same operation and state (the same request answered, the same task status or HTTP status),
-- then compare what it sends with the real body: field names and JSON types, recursively.
--
-- How bodies are compared:
--   * values may differ, shapes may not; a JSON null is the same as an absent field (the API
--     leaves nulls out); arrays are compared by their elements' shapes (every element of one must
--     have the shape of some element of the other; an empty array has no shape to compare);
--   * `links` arrays are keyed by `rel` (a link's rel is its name), so the HAL `_links` object of
--     older bodies reads the same as a current `links` array;
--   * a 2xx row accepts any 2xx (the fixtures' mocks answered 200 where the API declares 202);
--   * empty bodies must be empty; HTML bodies are compared by their tag sequence.
-- Rows compared differently, decided from the index and the body's own form, never by file name:
--   EDITED   provenance says hand-written, sanitised or a template, or the body uses HAL
--            `_links` (no current API body does): its authors dropped `description`,
--            `timestamp`, links and link titles and wrote `response: {}` for anything, so those
--            are compared only where the body has them, and `response: {}` accepts any object;
--   RECON    provenance RECONSTRUCTED: the `links` the source did not show are not compared;
--   INVENTED provenance INVENTED (another client's own test data, not the API's words): the
--            request is replayed and must get the row's HTTP status and an answer in the API's
--            own form (tasks with one of its five statuses, an empty 404, nginx's 401 page);
--            the invented body's shape is not compared.
local sim = require "helpers.sim"
local socket = require "socket"
local cjson = require "cjson"

local DIR = os.getenv("RCTASKS_BODIES")
if not DIR or DIR == "" then DIR = "spec/fixtures/api-bodies" end

------------------------------------------------------------------------------------------------
-- JSON that keeps arrays, objects and nulls apart (cjson 2.1.0 decodes [] and {} alike).

local ARRAY = {}
local NULL = setmetatable({}, { __tostring = function() return "null" end })

local function decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function fail(what) error(("bad JSON at byte %d: %s"):format(pos, what), 0) end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if e == "u" then
          out[#out + 1] = "?"
          pos = pos + 6
        else
          out[#out + 1] = map[e] or e
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
  end
  -- The items of an object or an array up to `close`, each read by item().
  local function items(close, item)
    pos = pos + 1
    ws()
    if s:sub(pos, pos) == close then pos = pos + 1; return end
    local c
    repeat
      item()
      ws()
      c = s:sub(pos, pos)
      pos = pos + 1
    until c ~= ","
    if c ~= close then fail("'" .. close .. "'") end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local o = {}
      items("}", function()
        ws()
        if s:sub(pos, pos) ~= '"' then fail("object key") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then fail("':'") end
        pos = pos + 1
        o[k] = value()
      end)
      return o
    elseif c == "[" then
      local a = setmetatable({}, ARRAY)
      items("]", function() a[#a + 1] = value() end)
      return a
    elseif c == '"' then
      return str()
    elseif s:find("^true", pos) then pos = pos + 4; return true
    elseif s:find("^false", pos) then pos = pos + 5; return false
    elseif s:find("^null", pos) then pos = pos + 4; return NULL
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" then fail("a value") end
    pos = pos + #num
    return tonumber(num)
  end
  local ok, v = pcall(function()
    local x = value()
    ws()
    if pos <= #s then fail("trailing data") end
    return x
  end)
  if ok then return v end
  return nil, v
end

local function is_array(v) return type(v) == "table" and getmetatable(v) == ARRAY end

local function jtype(v)
  if v == nil or v == NULL then return "absent" end
  if type(v) == "table" then return is_array(v) and "array" or "object" end
  return type(v) -- string, number, boolean
end

------------------------------------------------------------------------------------------------
-- Shapes.

-- The canonical form compared: nulls dropped, link lists keyed by rel (their titles dropped
-- when `notitles`).
local function canon(v, notitles)
  if type(v) ~= "table" or v == NULL then return v end
  if is_array(v) then
    local a = setmetatable({}, ARRAY)
    for i, x in ipairs(v) do a[i] = canon(x, notitles) end
    return a
  end
  local o = {}
  for k, x in pairs(v) do
    if x ~= NULL then o[k] = canon(x, notitles) end
  end
  local links = o.links
  local keyed = is_array(links) and links[1] ~= nil
  for _, l in ipairs(is_array(links) and links or {}) do
    if type(l) ~= "table" or type(l.rel) ~= "string" then keyed = false end
  end
  if keyed then
    local m = {}
    for _, l in ipairs(links) do
      local x = {}
      for k, y in pairs(l) do if k ~= "rel" then x[k] = y end end
      m[l.rel] = x
    end
    o.links = m
  end
  if type(o._links) == "table" and not is_array(o._links) then
    local m = {}
    for rel, l in pairs(o._links) do
      local x = {}
      for k, y in pairs(type(l) == "table" and l or {}) do if k ~= "rel" then x[k] = y end end
      m[rel] = x
    end
    o.links, o._links = m, nil
  end
  if notitles and type(o.links) == "table" and not is_array(o.links) then
    for _, l in pairs(o.links) do if type(l) == "table" then l.title = nil end end
  end
  return o
end

local sorted_keys = sim.keys

-- The first difference of shape between real and got, as "path: what", or nil.
local function diff(real, got, path)
  local rt, gt = jtype(real), jtype(got)
  if rt ~= gt then return ("%s: the real body has %s, the simulator sent %s"):format(path, rt, gt) end
  if rt == "object" then
    for _, k in ipairs(sorted_keys(real)) do
      if got[k] == nil then return ("%s.%s: in the real body, missing from the simulator's"):format(path, k) end
    end
    for _, k in ipairs(sorted_keys(got)) do
      if real[k] == nil then return ("%s.%s: sent by the simulator, not in the real body"):format(path, k) end
    end
    for _, k in ipairs(sorted_keys(real)) do
      local d = diff(real[k], got[k], path .. "." .. k)
      if d then return d end
    end
  elseif rt == "array" and real[1] ~= nil and got[1] ~= nil then
    local function cover(xs, ys, label, swap)
      for i, x in ipairs(xs) do
        local first
        for _, y in ipairs(ys) do
          local d = swap and diff(y, x, path .. "[" .. i .. "]") or diff(x, y, path .. "[" .. i .. "]")
          if not d then first = nil; break end
          first = first or d
        end
        if first then return first .. " (no " .. label .. " element has this one's shape)" end
      end
    end
    return cover(real, got, "simulator", false) or cover(got, real, "real", true)
  end
  return nil
end

-- The tag sequence of an HTML page, its shape.
local function tags(html)
  local l = {}
  for t in html:gmatch("<(/?%w+)") do l[#l + 1] = t:lower() end
  return table.concat(l, " ")
end

------------------------------------------------------------------------------------------------
-- The index and how each row is compared.

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function tolerance(row, real)
  local p = row.provenance or ""
  local t = { edited = p:find("hand%-written") ~= nil or p:find("sanitised") ~= nil or p:find("template") ~= nil,
              recon = p:find("RECONSTRUCTED") ~= nil, invented = p:find("INVENTED") ~= nil }
  if type(real) == "table" and type(real._links) == "table" then t.edited, t.hal = true, true end
  return t
end

-- Applies a row's tolerance to the simulator's canonical task (see the header).
local function tolerate(t, real, got)
  if type(real) ~= "table" or type(got) ~= "table" or is_array(got) then return got end
  if t.edited then
    for _, k in ipairs({ "description", "timestamp" }) do
      if real[k] == nil then got[k] = nil end
    end
    if jtype(real.response) == "object" and next(real.response) == nil and jtype(got.response) == "object" then
      got.response = {}
    end
    if jtype(real.links) == "object" and jtype(got.links) == "object" then
      for rel in pairs(got.links) do if real.links[rel] == nil then got.links[rel] = nil end end
    end
  end
  if t.recon and real.links == nil then got.links = nil end
  return got
end

------------------------------------------------------------------------------------------------
-- Driving the simulator.

local OPS -- the simulator's operations, "METHOD /v1/path" -> {op, kind, singleton, reports, ...}

local function operations()
  if OPS then return OPS end
  local status, body = sim.request("GET", "/sim/operations")
  assert(status == 200, "GET /sim/operations: " .. tostring(status))
  OPS = {}
  for _, o in ipairs(sim.decode(body)) do OPS[o.method .. " " .. o.path] = o end
  return OPS
end

local function req(a, method, path, body, nokeys)
  local raw = body ~= nil and method ~= "GET" and cjson.encode(body) or nil
  if raw == "[]" then raw = "{}" end
  local status, text, h
  for _ = 1, 3 do -- the sim's 400/min budget is per account; a fresh one per run keeps far below it
    status, text, h = sim.request(method, path, not nokeys and a.key or nil, not nokeys and a.secret or nil, raw)
    if status then break end
    socket.sleep(0.01)
  end
  assert(status, method .. " " .. path .. ": " .. tostring(text))
  return status, text, h
end

local FINAL = { ["processing-completed"] = true, ["processing-error"] = true }

-- Polls a task until it reads `want` (or ends); returns the raw body of that view.
local function wait_task(a, id, want)
  local last
  for _ = 1, 2000 do
    local status, text = req(a, "GET", "/v1/tasks/" .. id)
    if status == 200 then
      local t = sim.decode(text)
      last = t.status
      if t.status == want or (not want and FINAL[t.status]) then return text, t end
      if FINAL[t.status] then break end
    end
    socket.sleep(0.003)
  end
  error(("task %s never read %s (last %s)"):format(id, tostring(want or "final"), tostring(last)), 2)
end

local function has_key(v, names)
  if type(v) ~= "table" then return false end
  for k, x in pairs(v) do
    if names[k] or has_key(x, names) then return true end
  end
  return false
end

local function first_status(v)
  if type(v) ~= "table" then return nil end
  if type(v.status) == "string" then return v.status end
  for _, k in ipairs(sorted_keys(v)) do
    local s = first_status(v[k])
    if s then return s end
  end
end

local GCP = { projectUid = true, networkName = true, vpcProjectUid = true, vpcNetworkName = true }

-- Request bodies the API needs, by operation; any other operation gets {}.
local function bodies(run, key)
  local peering = run.gcp and { provider = "GCP", vpcProjectUid = "my-gcp-project", vpcNetworkName = "my-vpc" }
    or { region = "us-east-1", awsAccountId = "123456789012", vpcId = "vpc-0123456789", vpcCidr = "10.10.0.0/24" }
  local aa_peering = run.gcp and { provider = "GCP", sourceRegion = "us-east-1", vpcProjectUid = "my-gcp-project",
                                   vpcNetworkName = "my-vpc" }
    or { sourceRegion = "us-east-1", destinationRegion = "us-west-2", awsAccountId = "123456789012",
         vpcId = "vpc-0123456789", vpcCidr = "10.20.0.0/24" }
  local B = {
    ["POST /v1/subscriptions"] = { name = "replay", deploymentType = run.aa and "active-active" or "single-region",
      cloudProviders = { { provider = run.gcp and "GCP" or "AWS", regions = run.aa and
        { { region = "us-east-1" }, { region = "us-east-2" } } or { { region = "us-east-1" } } } },
      databases = { { name = "plan", datasetSizeInGb = 1 } } },
    ["PUT /v1/subscriptions/{subscriptionId}"] = { name = "renamed" },
    ["POST /v1/subscriptions/{subscriptionId}/regions"] = { regions = { { region = "eu-west-1" } } },
    ["DELETE /v1/subscriptions/{subscriptionId}/regions"] = { regions = { { region = "us-east-2" } } },
    ["PUT /v1/subscriptions/{subscriptionId}/maintenance-windows"] = { mode = "manual",
      windows = { { startHour = 2, durationInHours = 4, days = { "Monday" } } } },
    ["PUT /v1/subscriptions/{subscriptionId}/cidr"] = { cidrIps = { "10.0.0.0/16" }, securityGroupIds = { "sg-1" } },
    ["PUT /v1/subscriptions/{subscriptionId}/resource-tags"] = { tags = { { key = "team", value = "replay" } } },
    ["POST /v1/subscriptions/{subscriptionId}/databases"] = { name = "db", datasetSizeInGb = 1,
      periodicBackupPath = "s3://bucket/backups" },
    ["PUT /v1/subscriptions/{subscriptionId}/databases/{databaseId}"] = { name = "renamed" },
    ["POST /v1/fixed/subscriptions"] = { name = "replay", planId = 98183 },
    ["PUT /v1/fixed/subscriptions/{subscriptionId}"] = { name = "renamed" },
    ["POST /v1/fixed/subscriptions/{subscriptionId}/databases"] = { name = "db", periodicBackupPath = "s3://bucket/b" },
    ["PUT /v1/fixed/subscriptions/{subscriptionId}/databases/{databaseId}"] = { name = "renamed" },
    ["POST /v1/acl/redisRules"] = { name = "replay-rule", redisRule = "+@read ~*" },
    ["PUT /v1/acl/redisRules/{aclRedisRuleId}"] = { name = "replay-rule", redisRule = "+@read -@dangerous ~*" },
    ["POST /v1/acl/roles"] = { name = "replay-role", redisRules = { { ruleName = "Read-Only", databases = {} } } },
    ["PUT /v1/acl/roles/{aclRoleId}"] = { name = "replay-role", redisRules = { { ruleName = "Read-Write",
      databases = {} } } },
    ["POST /v1/acl/users"] = { name = "replay-user", role = run.role, password = "Replay-Passw0rd!" },
    ["PUT /v1/acl/users/{aclUserId}"] = { role = run.role, password = "Replay-Passw0rd!2" },
    ["POST /v1/cloud-accounts"] = { name = "replay", provider = "AWS", accessKeyId = "AKIA0", accessSecretKey = "s",
      consoleUsername = "u", consolePassword = "p",
        signInLoginUrl = "https://123456789012.signin.aws.amazon.com/console" },
    ["PUT /v1/cloud-accounts/{cloudAccountId}"] = { name = "renamed", accessKeyId = "AKIA1", accessSecretKey = "s",
      consoleUsername = "u", consolePassword = "p",
        signInLoginUrl = "https://123456789012.signin.aws.amazon.com/console" },
    ["PUT /v1/users/{userId}"] = { name = "Renamed", role = "Viewer" },
    ["POST /v1/cost-report"] = { startDate = "2025-01-01", endDate = "2025-01-31", format = "json" },
    ["POST /v1/subscriptions/{subscriptionId}/peerings"] = peering,
    ["PUT /v1/subscriptions/{subscriptionId}/peerings/{peeringId}"] = { vpcCidrs = { "10.30.0.0/24" } },
    ["POST /v1/subscriptions/{subscriptionId}/regions/peerings"] = aa_peering,
    ["PUT /v1/subscriptions/{subscriptionId}/regions/peerings/{peeringId}"] = { vpcCidrs = { "10.40.0.0/24" } },
  }
  local function add_region_forms(suffix, v)
    B["POST /v1/subscriptions/{subscriptionId}" .. suffix] = v
    B["POST /v1/subscriptions/{subscriptionId}/regions/{regionId}" .. suffix] = v
  end
  add_region_forms("/private-service-connect/{pscServiceId}", { gcpProjectId = "my-gcp-project", gcpVpcName = "my-vpc",
    gcpVpcSubnetName = "my-subnet", endpointConnectionName = "replay-endpoint" })
  add_region_forms("/private-link", { shareName = "replay-share", principal = "123456789012", type = "aws_account",
    alias = "replay" })
  add_region_forms("/private-link/principals", { principal = "210987654321", type = "aws_account", alias = "second" })
  for _, p in ipairs({ "/v1/subscriptions/{subscriptionId}",
    "/v1/subscriptions/{subscriptionId}/regions/{regionId}" }) do
    B["DELETE " .. p .. "/private-link/principals"] = { principal = "123456789012" }
    B["PUT " .. p .. "/transitGateways/{TgwId}/attachment"] = { cidrs = { "10.50.0.0/24" } }
    B["PUT " .. p .. "/private-service-connect/{pscServiceId}/endpoints/{endpointId}"] = { gcpVpcName = "renamed" }
  end
  for _, p in ipairs({ "/v1/subscriptions/{subscriptionId}", "/v1/fixed/subscriptions/{subscriptionId}" }) do
    local db = p .. "/databases/{databaseId}"
    B["POST " .. db .. "/backup"] = { adhocBackupPath = "s3://bucket/adhoc" }
    B["POST " .. db .. "/import"] = { sourceType = "http", importFromUri = { "https://example.com/dump.rdb" } }
    B["POST " .. db .. "/upgrade"] = { targetRedisVersion = "7.4" }
  end
  local b = B[key]
  if b == nil then return {} end
  return b
end

-- Optional parts clients ask for: the replay asks for them too.
local QUERY = { creationScripts = "?includeTerraformGcpScript=true",
  ["endpoint-script"] = "?includeTerraformAwsScript=true" }

local function key_of(method, template) return method .. " " .. template end

local ensure -- forward

-- What an operation's body names must exist first: an ACL user names a role.
local function needs(run, template)
  if template:find("/v1/acl/users", 1, true) and not run.role then
    ensure(run, "POST", "/v1/acl/roles", "/v1/acl/roles")
    run.role = "replay-role"
  end
end

-- Runs an operation whose task must complete; returns the final task.
local function complete(run, method, template, path)
  needs(run, template)
  local status, text = req(run.a, method, path, bodies(run, key_of(method, template)))
  assert(status >= 200 and status < 300, method .. " " .. path .. " answered " .. status .. " " .. text)
  local _, t = wait_task(run.a, sim.decode(text).taskId)
  assert(t.status == "processing-completed", method .. " " .. path .. " ended " .. t.status .. " " .. cjson.encode(t))
  socket.sleep(run.settle) -- provisioning
  return t
end

-- Creates what a prerequisite operation creates and returns the new id.
function ensure(run, method, template, path)
  local t = complete(run, method, template, path)
  local r = t.response or {}
  return r.resourceId or (r.resource and r.resource.costReportId)
end

-- The concrete path of `template`: every parameter's resource created (or found) on the way,
-- but the `missing`th one (an id nothing has).
local function build_path(run, template, missing)
  local ops = operations()
  local path = ""
  local rest = template
  local names = {}
  for n in template:gmatch("{(%w+)}") do names[#names + 1] = n end
  for i, n in ipairs(names) do
    local before, after = rest:match("^(.-){" .. n .. "}(.*)$")
    local collection = path .. before:gsub("/$", "")
    local ctemplate = template:sub(1, #template - #rest) .. before:gsub("/$", "")
    local id
    if missing == "last" and i == #names then missing = i end
    if type(missing) == "number" and i >= missing and n ~= "regionId" then
      id = n == "taskId" and "11111111-2222-4333-8444-555555555555" or "999999"
    elseif n == "regionId" then
      id = 1
    elseif n == "taskId" then
      id = assert(sim.decode(select(2, req(run.a, "POST", "/v1/subscriptions", { name = "t" }))).taskId)
    else
      local create = ops[key_of("POST", ctemplate)] or ops[key_of("POST", ctemplate:gsub("/[^/]+$", ""))]
      local status_get = ops[key_of("GET", ctemplate)]
      if create and create.op == "create" then
        id = ensure(run, "POST", create.path, create.path == ctemplate and collection or collection:gsub("/[^/]+$", ""))
      elseif status_get and status_get.op == "status" then
        local _, text = req(run.a, "GET", collection)
        local _, t = wait_task(run.a, sim.decode(text).taskId)
        local res = t.response.resource
        local l = res.tgws or res.resources or res.peerings or {}
        id = assert(l[1], "nothing listed at " .. collection).id
      else
        local _, text = req(run.a, "GET", collection)
        local v = sim.decode(text)
        for _, list in pairs(v) do
          if type(list) == "table" and list[1] and list[#list].id then id = list[#list].id end
        end
      end
    end
    path = collection .. "/" .. tostring(id)
    rest = after
  end
  return path .. rest
end

-- The singleton or listed resource an operation works on, created first (unless the row says
-- it is missing, or shows nothing for a status GET to report).
local function prerequisite(run, template, path, o, missing, nothing)
  local ops = operations()
  if missing or o.op == "create" then return end
  local create
  if o.singleton then
    local t = template
    while t ~= "" and not create do
      local c = ops[key_of("POST", t)]
      if c and c.op == "create" and c.kind == o.kind then create = c end
      t = t:gsub("/[^/]*$", "")
    end
  elseif o.op == "status" and not nothing then
    create = ops[key_of("POST", template)]
  end
  if create and create.path ~= template then
    path = path:sub(1, #path - (#template - #create.path))
  end
  if create then complete(run, "POST", create.path, path) end
end

-- A status GET's body with no field but `links` reports nothing: the replay creates nothing for it.
local function reports_nothing(res)
  if type(res) ~= "table" then return false end
  for k in pairs(res) do
    if k ~= "links" then return false end
  end
  return true
end

-- The simulator outcome that fails a task as the real task failed: its error type and additionalInfo.
local function failure(real)
  local r = type(real) == "table" and type(real.response) == "table" and real.response or {}
  local typ = type(r.error) == "table" and r.error.type or (type(r.error) == "string" and r.error) or "GENERAL_ERROR"
  return "error:" .. typ .. (type(r.additionalInfo) == "string" and (":" .. r.additionalInfo) or "")
end

-- The simulator's answer to one operation of a row: status, raw body.
local function replay_op(row, real, method, template)
  local o = operations()[key_of(method, template)]
  assert(o, "the simulator does not serve " .. method .. " " .. template)
  local answered = row.answered and row.answered[1]
  local via_task = answered and answered.path == "/v1/tasks/{taskId}" and template ~= "/v1/tasks/{taskId}"
  local resource = type(real) == "table" and type(real.response) == "table" and real.response.resource or nil
  local nothing = reports_nothing(resource)
  local run = { a = sim.account({ provision = 0.02 }), settle = 0.03, gcp = has_key(real, GCP),
                aa = template:find("/regions") ~= nil or template:find("/flush$") ~= nil }
  local kind = o.reports or o.kind
  local word = first_status(resource)
  if kind and word and not (row.provenance
    or ""):find("INVENTED") then -- end what the GET reports in the status the body shows, when it is one of its words
    sim.request("PUT", "/sim/accounts/" .. run.a.key, nil, nil, cjson.encode({ ends = { [kind] = { word } } }))
  end
  -- a task answered with 404 names a missing resource in an existing parent
  local missing = row.http_status == 404
  local path = build_path(run, template, missing and not o.singleton and "last" or nil)
  prerequisite(run, template, path, o, missing and o.singleton, nothing)
  if path:find("/private%-link") then
    ensure(run, "POST", "/v1/subscriptions/{subscriptionId}/databases",
      path:match("^(/v1/subscriptions/%d+)") .. "/databases")
  end
  local invented = (row.provenance or ""):find("INVENTED") ~= nil
  local want = not invented and row.task_status or nil
  local cfg = {}
  if want == "initialized" then cfg.initialized = 0.06 end
  if want == "processing-in-progress" or (want == "received" and via_task) then cfg.step = 0.06 end
  if want == "processing-error" then cfg.outcomes = { failure(real) } end
  needs(run, template)
  if next(cfg) then sim.config(run.a.key, cfg) end
  local q = QUERY[template:match("([^/]+)$")] or ""
  local status, text = req(run.a, method, path .. q, bodies(run, key_of(method, template)))
  if via_task then
    assert(status >= 200 and status < 300, method .. " " .. path .. " answered " .. status .. ": " .. text)
    text = wait_task(run.a, sim.decode(text).taskId, want)
    status = 200
  end
  return status, text
end

-- The state a GET /v1/tasks list shows: each listed task made by its operation, ending as listed.
local function replay_list(real)
  local a = sim.account({ provision = 0.02 })
  local run = { a = a, settle = 0.03 }
  local by_command = {}
  for k, o in pairs(operations()) do
    if o.commandType and (o.op == "create" or not by_command[o.commandType]) then by_command[o.commandType] = k end
  end
  for _, t in ipairs(type(real) == "table" and is_array(real.tasks) and real.tasks or {}) do
    local key = by_command[t.commandType]
    local outcome = t.status == "processing-error" and failure(t) or nil
    if key and not (t.status == "processing-completed" or t.status == "processing-error") then key = nil end
    if key then
      local method, template = key:match("^(%S+) (.*)$")
      local path = build_path(run, template)
      prerequisite(run, template, path, operations()[key], false, false)
      if outcome then sim.config(a.key, { outcomes = { outcome } }) end
      local _, text = req(a, method, path, bodies(run, key))
      wait_task(a, sim.decode(text).taskId)
    else -- a command the simulator has no operation for: a bare task of that name
      sim.task(a.key, { commandType = t.commandType, outcome = outcome or (FINAL[t.status] and "completed" or "stuck"),
                        queue = false })
    end
  end
  socket.sleep(0.1)
  return req(a, "GET", "/v1/tasks")
end

------------------------------------------------------------------------------------------------
-- The rows.

local index = assert(decode(read(DIR .. "/index.json")), "cannot read " .. DIR .. "/index.json")

local function ok2xx(s) return s >= 200 and s < 300 end

local STATUSES = { initialized = true, received = true, ["processing-in-progress"] = true,
                   ["processing-completed"] = true, ["processing-error"] = true }

-- Whether an answer has the API's own form: nil, or what is wrong with it.
local function api_form(status, text)
  if status == 401 then
    return not text:find("<title>401 Authorization Required</title>", 1, true) and "not nginx's 401 page" or nil
  end
  if status == 404 then return text ~= "" and "a 404 with a body" or nil end
  local v = decode(text)
  if jtype(v) ~= "object" then return "not a JSON object" end
  local list = is_array(v.tasks) and v.tasks or { v }
  for i, t in ipairs(list) do
    for _, k in ipairs({ "taskId", "commandType", "status", "timestamp" }) do
      if jtype(t[k]) ~= "string" then return ("task %d: %s is not a string"):format(i, k) end
    end
    if not STATUSES[t.status] then return ("task %d: status %s is not one of the API's five"):format(i, t.status) end
    if not is_array(t.links) then return ("task %d: no links array"):format(i) end
  end
end

local function compare(row, file, status, text)
  local real_text = read(DIR .. "/" .. row.file)
  local ext = row.file:match("%.(%w+)$")
  local ctx = ("%s (%s)"):format(row.file, file)
  if ok2xx(row.http_status) then
    assert(ok2xx(status), ("%s: the real answer is %d, the simulator's %d"):format(ctx, row.http_status, status))
  else
    assert(status == row.http_status, ("%s: the real answer is %d, the simulator's %d"):format(ctx, row.http_status,
      status))
  end
  if ext == "empty" or not real_text:find("%S") then
    assert(text == "", ctx .. ": the real body is empty, the simulator sent " .. #text .. " bytes")
    return
  end
  if ext == "html" then
    assert(tags(real_text) == tags(text), ctx .. ": HTML tags differ: real '" .. tags(real_text) ..
      "', simulator '" .. tags(text) .. "'")
    return
  end
  local real = assert(decode(real_text), ctx .. ": the real body is not JSON")
  local tol = tolerance(row, real)
  if tol.invented then return api_form(status, text) end
  local got, derr = decode(text)
  assert(got, ctx .. ": the simulator's answer is not JSON (" .. tostring(derr) .. "): " .. text:sub(1, 200))
  local r, g = canon(real, tol.hal), canon(got, tol.hal)
  g = tolerate(tol, r, g)
  return diff(r, g, "$"), tol
end

local function row_label(row)
  local op = row.operations[1]
  return ("%s: %s %s (%s, HTTP %d)"):format(row.file, op and op.method or "any", op and op.path or "request",
    tostring(row.task_status or row.kind), row.http_status)
end

describe("replay of real API bodies from " .. DIR, function()
  it("reads an index of rows with the fields the replay needs", function()
    assert.is_true(is_array(index) and #index > 0)
    for i, row in ipairs(index) do
      assert.is_string(row.file, "row " .. i)
      assert.is_number(row.http_status, row.file)
      assert.is_true(is_array(row.operations), row.file)
    end
  end)

  it("compares shapes: names, types, nested arrays; values and nulls are not differences", function()
    local function d(a, b) return diff(canon(assert(decode(a))), canon(assert(decode(b))), "$") end
    assert.is_nil(d('{"a":1,"b":[{"c":"x"}],"n":null}', '{"a":2,"b":[{"c":"y"},{"c":"z"}]}'))
    assert.equal("$.a: the real body has number, the simulator sent string", d('{"a":1}', '{"a":"1"}'))
    assert.matches("^%$%.b%[1%]%.c: ", d('{"b":[{"c":1}]}', '{"b":[{"c":[]}]}'))
    assert.matches("^%$%.x: sent by the simulator", d('{}', '{"x":1}'))
    assert.matches("^%$%.r: the real body has object, the simulator sent array", d('{"r":{}}', '{"r":[]}'))
    assert.is_nil(d('{"links":[{"rel":"self","href":"a","type":"GET"}]}',
      '{"_links":{"self":{"href":"b","type":"GET"}}}'))
    assert.matches("links%.resource", d('{"links":[{"rel":"self","href":"a"}]}',
      '{"links":[{"rel":"resource","href":"r"},{"rel":"self","href":"a"}]}'))
  end)

  for _, row in ipairs(is_array(index) and index or {}) do
    local ops = #row.operations > 0 and row.operations or { { method = "GET", path = "/v1/tasks", nokeys = true } }
    it(row_label(row), function()
      local real_text = read(DIR .. "/" .. row.file)
      local real = decode(real_text)
      for _, op in ipairs(ops) do
        local status, text
        if row.http_status == 401 then
          local a = sim.account()
          status, text = req(a, op.method, op.path:gsub("{%w+}", "1"), nil, true)
        elseif row.kind == "list" then
          status, text = replay_list(real)
        elseif row.kind == "error" then
          local run = { a = sim.account({ provision = 0.02 }), settle = 0.03 }
          -- an error body for a missing resource: the path's first one is missing
          status, text = req(run.a, op.method, build_path(run, op.path, 1))
        elseif op.path == "/v1/tasks/{taskId}" then -- a task read with no operation behind it
          local a = sim.account()
          local id = sim.task(a.key, { queue = false, resourceId = 1 })
          text = wait_task(a, id)
          status = 200
        else
          status, text = replay_op(row, real, op.method, op.path)
        end
        local d = compare(row, op.method .. " " .. op.path, status, text)
        assert(d == nil, row.file .. ": " .. tostring(d) .. "\n  simulator: " .. text:sub(1, 600))
      end
    end)
  end
end)
