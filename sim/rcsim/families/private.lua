-- Private connectivity of Pro subscriptions: Private Service Connect (a service, its endpoints and
-- their scripts) and Private Link (the link, its principals and connections, the endpoint script),
-- single-region and per A-A region. A missing subscription answers a Spring 404 without message.
local util = require "rcsim.util"
local store = require "rcsim.store"
local common = require "rcsim.families.common"

local M = { sub_missing = "spring" }

M.kinds = {
  psc_service = { label = "Private Service Connect service", first = 70001, missing = "PSC_SERVICE_NOT_FOUND",
    words = { pending = { "create-pending" }, ready = "active", changing = "create-pending",
              deleting = "delete-pending", failed = { "provision-failed", "failed" },
              all = { "create-queued", "initialized", "create-pending", "active", "delete-queued", "delete-pending",
                      "deleted", "provision-failed", "failed" } } },
  psc_endpoint = { label = "Private Service Connect endpoint", first = 71001, missing = "PSC_ENDPOINT_NOT_FOUND",
    words = { pending = { "initialized", "processing" }, ready = "active", changing = "pending", deleting = "deleted",
              failed = { "failed", "rejected" },
              all = { "initialized", "processing", "pending", "accept-pending", "active", "rejected", "reject-pending",
                      "deleted", "failed" } } },
  private_link = { label = "Private Link", first = 80001, missing = "PRIVATE_LINK_NOT_FOUND",
    words = { pending = { "initializing" }, ready = "active", changing = "initializing", deleting = "deleting",
              failed = { "failed" }, all = { "initializing", "active", "deleting", "failed" } } },
}

-- ===== Private Service Connect =====

local function service_view(ctx, at, s)
  s = s or store.children(ctx.a, "psc_service", ctx.parent, at)[1]
  if not s then return nil, "PSC_SERVICE_NOT_FOUND" end
  local tag = ("mc%d-0.us-central1-mz"):format(s.id % 10000)
  return { id = s.id, connectionHostName = "psc." .. tag .. ".gcp.cloud.rlrcp.com",
           serviceAttachmentName = "service-attachment-" .. tag:gsub("%.", "-") .. "-rlrcp",
             status = store.status(s, at) }
end

local function endpoints_view(ctx, at)
  local svc = ctx.of.psc_service
  local l = {}
  for _, e in ipairs(store.children(ctx.a, "psc_endpoint", svc, at)) do
    local f = e.fields
    l[#l + 1] = { id = e.id, gcpProjectId = f.gcpProjectId, gcpVpcName = f.gcpVpcName,
      gcpVpcSubnetName = f.gcpVpcSubnetName,
                  endpointConnectionName = f.endpointConnectionName, status = store.status(e, at) }
  end
  return { pscServiceId = svc.id, endpoints = util.array(l) }
end

local function script(ctx, at, creation)
  local e = ctx.of.psc_endpoint
  local name = e.fields.endpointConnectionName or ("redis-" .. e.id)
  local s = { bash = "#!/bin/bash\n# " .. (creation and "create" or "delete") .. " PSC endpoint " .. name .. "\n",
              powershell = "# " .. (creation and "create" or "delete") .. " PSC endpoint " .. name .. "\n" }
  local q = ctx.query.includeTerraformGcpScript
  if creation and (q == "true" or q == true) then
    local svc = service_view(ctx, at, ctx.of.psc_service)
    s.terraformGcp = { serviceAttachments = { { name = "projects/rlrcp/regions/us-central1/serviceAttachments/" ..
      tostring(svc.serviceAttachmentName), dnsRecord = tostring(svc.connectionHostName) .. ".",
      ipAddressName = name .. "-psc-static-ip1", forwardingRuleName = name } } }
  end
  return { script = s }
end

local function no_service(ctx)
  if ctx.target then return "PSC_SERVICE_ALREADY_EXISTS" end
end

local function no_endpoints(ctx, at)
  if store.children(ctx.a, "psc_endpoint", ctx.target, at)[1] then
    return "PSC_SERVICE_CANNOT_DELETE_SERVICE_WITH_ACTIVE_ENDPOINTS"
  end
end

-- An update with `action` accepts or rejects the endpoint; without one it edits its fields.
local function endpoint_action(ctx, t)
  local act = ctx.body.action
  if act == "reject" then store.change(ctx.target, t.t_end, math.huge, "rejected") end
  if act == "accept" then store.change(ctx.target, t.t_progress, t.t_end, "accept-pending") end
end

local function psc_routes(prefix, aa, ids, cmd)
  local kind = common.needs(aa, aa and "PSC_CREATING_AN_ACTIVE_ACTIVE_SUBSCRIPTION_PRIVATE_SERVICE_CONNECT" ..
    "_IS_NOT_ALLOWED_WITH_A_FLEXIBLE_SUBSCRIPTION" or "PSC_CREATING_A_FLEXIBLE_SUBSCRIPTION_PRIVATE_SERVICE_CONNECT" ..
    "_IS_NOT_ALLOWED_WITH_AN_ACTIVE_ACTIVE_SUBSCRIPTION")
  local svc = prefix .. "/private-service-connect"
  local ep = svc .. "/{pscServiceId}/endpoints/{endpointId}"
  return {
    { "POST", svc, id = ids[1], op = "create", kind = "psc_service", singleton = "psc_service", http = 202,
      command = cmd .. "ServiceCreateRequest", check = common.all(kind, no_service), done = { rid = "self" } },
    { "GET", svc, id = ids[2], op = "status", http = 202, command = cmd .. "ServiceGetRequest", reports = "psc_service",
      check = kind, snapshot = service_view, done = { rid = "sub" } },
    { "DELETE", svc, id = ids[3], op = "delete", singleton = "psc_service", http = 202, missing_http = 404,
      command = cmd .. "ServiceDeleteRequest", check = common.all(kind, no_endpoints), done = { rid = "sub" } },
    { "POST", svc .. "/{pscServiceId}", id = ids[4], op = "create", kind = "psc_endpoint", http = 202,
      command = cmd .. "EndpointCreateRequest", check = kind, done = { rid = "self" } },
    { "GET", svc .. "/{pscServiceId}", id = ids[5], op = "status", http = 202, reports = "psc_endpoint",
      command = cmd .. "ServiceEndpointsGetRequest", check = kind, snapshot = endpoints_view, done = { rid = "sub" } },
    { "PUT", ep, id = ids[6], op = "update", http = 202, command = cmd .. "EndpointUpdateRequest", check = kind,
      apply = endpoint_action, done = { rid = "self" } },
    { "DELETE", ep, id = ids[7], op = "delete", http = 202, missing_http = 404,
      command = cmd .. "EndpointDeleteRequest",
      check = kind, done = { rid = "sub" } },
    { "GET", ep .. "/creationScripts", id = ids[8], op = "status", http = 202,
      command = cmd .. "ServiceEndpointScriptGetRequest",
      check = kind, snapshot = function(ctx, at) return script(ctx, at, true) end, done = { rid = "endpoint" } },
    { "GET", ep .. "/deletionScripts", id = ids[9], op = "status", http = 202,
      command = cmd .. "ServiceEndpointScriptGetRequest",
      check = kind, snapshot = function(ctx, at) return script(ctx, at, false) end, done = { rid = "endpoint" } },
  }
end

-- ===== Private Link =====

local function principal(p, now)
  return { principal = p.principal, type = p.type or "aws_account", alias = p.alias,
           status = now >= p.ready and "associated" or "associating" }
end

local function link_view(ctx, at)
  local l = store.children(ctx.a, "private_link", ctx.parent, at)[1]
  -- no Private Link (never made, or deleted): the GET still completes, with an empty resource
  if not l then return { links = util.array({}) } end
  local f, sub = l.fields, ctx.of.subscription
  local principals, connections = {}, {}
  for _, p in ipairs(f.principals) do
    principals[#principals + 1] = principal(p, at)
    if at >= p.ready and not p.disassociated then
      connections[#connections + 1] = { associationId = ("rassoc-%08x"):format(#connections + l.id),
        connectionId = ("vpce-con-%08x"):format(#connections + l.id), type = "resource-endpoint",
        ownerId = p.principal:match("(%d%d%d%d%d%d%d%d%d%d%d%d)") or "123456789012",
        associationDate = util.stamp(p.ready) }
    end
  end
  local dbs = {}
  for _, d in ipairs(store.children(ctx.a, "database", sub, at)) do
    dbs[#dbs + 1] = { databaseId = d.id, port = 10000 + d.id % 10000,
                      rlEndpoint = ("pl-%d.%d.rlrcp.com"):format(d.id, sub.id) }
  end
  local arn = "arn:aws:ram:us-east-1:123456789012:resource-share/" .. l.id
  local v = { status = store.status(l, at), principals = util.array(principals),
              resourceConfigurationId = ("rcfg-%08x"):format(l.id),
              resourceConfigurationArn = "arn:aws:vpc-lattice:us-east-1:123456789012:resourceconfiguration/" .. l.id,
              shareArn = arn, shareName = f.shareName, connections = util.array(connections),
                databases = util.array(dbs),
              subscriptionId = sub.id, errorMessage = "" }
  if ctx.of.region then v.regionId = ctx.of.region.id end
  return v
end

local function endpoint_script(ctx)
  local v = { resourceEndpointScript = "#!/bin/bash\n# create the resource endpoint for subscription " ..
              ctx.of.subscription.id .. "\n" }
  local q = ctx.query.includeTerraformAwsScript
  if q == "true" or q == true then v.terraformAwsScript = 'resource "aws_vpc_endpoint" "redis" {}\n' end
  return v
end

local function new_principal(ctx, at)
  local b = ctx.body
  local engine = require "rcsim.engine"
  return { principal = b.principal, type = b.type, alias = b.alias, ready = at + engine.provision(ctx.a) }
end

local function link_fields(ctx) return { shareName = ctx.body.shareName, principals = {} } end

local function first_principal(ctx, t, rec)
  if type(ctx.body.principal) == "string" then
    local p = new_principal(ctx, t.t_end)
    p.ready = rec.ready
    table.insert(rec.fields.principals, p)
  end
end

local function add_principal(ctx, t)
  table.insert(ctx.target.fields.principals, new_principal(ctx, t.t_end))
end

local function find_principal(ctx)
  for i, p in ipairs(ctx.target.fields.principals) do
    if p.principal == ctx.body.principal then return i end
  end
end

local function principal_exists(ctx)
  if not find_principal(ctx) then return "PRIVATE_LINK_PRINCIPAL_NOT_FOUND" end
end

local function no_link(ctx) if ctx.target then return "PRIVATE_LINK_ALREADY_EXISTS" end end

local function link_routes(prefix, aa, ids, cmd)
  local kind = common.needs(aa, aa and "PRIVATE_LINK_CREATE_AN_ACTIVE_ACTIVE_SUBSCRIPTION_PRIVATE_LINK" ..
    "_IS_NOT_ALLOWED_WITH_A_SINGLE_REGION_SUBSCRIPTION" or "PRIVATE_LINK_CREATE_A_FLEXIBLE_SUBSCRIPTION_PRIVATE_LINK" ..
    "_IS_NOT_ALLOWED_WITH_AN_ACTIVE_ACTIVE_SUBSCRIPTION")
  local pl = prefix .. "/private-link"
  local S = "private_link"
  -- declared 204 with a task: a 204 cannot carry the task its schema declares, so these answer 200
  return {
    { "POST", pl, id = ids[1], op = "create", kind = S, singleton = S, http = 200, command = cmd .. "CreateRequest",
      check = common.all(kind, no_link), fields = link_fields, apply = first_principal, done = { rid = "sub" } },
    { "GET", pl, id = ids[2], op = "status", http = 202, command = cmd .. "GetRequest", reports = S, check = kind,
      snapshot = link_view, done = { rid = "sub" } },
    { "DELETE", pl, id = ids[3], op = "delete", singleton = S, http = 200, command = cmd .. "DeleteRequest",
      check = kind,
      done = { none = true } },
    { "POST", pl .. "/principals", id = ids[4], op = "action", singleton = S, http = 200,
      command = cmd .. "PrincipalCreateRequest", check = kind, apply = add_principal, done = { rid = "sub" } },
    { "DELETE", pl .. "/principals", id = ids[5], op = "action", singleton = S, http = 200,
      command = cmd .. "PrincipalDeleteRequest", check = common.all(kind, principal_exists),
      apply = function(ctx) table.remove(ctx.target.fields.principals, find_principal(ctx)) end,
        done = { rid = "sub" } },
    { "POST", pl .. "/connections/disassociate", id = ids[6], op = "action", singleton = S, http = 202,
      command = cmd .. "ConnectionsDisassociateRequest", check = kind,
      apply = function(ctx) for _, p in ipairs(ctx.target.fields.principals) do p.disassociated = true end end,
      done = { rid = "sub" } },
    { "GET", pl .. "/endpoint-script", id = ids[7], op = "status", http = 202,
      command = cmd .. "EndpointScriptGetRequest",
      check = kind, snapshot = endpoint_script, done = { rid = "sub" } },
  }
end

local SUB = "/subscriptions/{subscriptionId}"
local REGION = SUB .. "/regions/{regionId}"

M.routes = {}
local function add(list) for _, r in ipairs(list) do M.routes[#M.routes + 1] = r end end
add(psc_routes(SUB, false, { "createPscService", "getPscService", "deletePscService", "createPscServiceEndpoint",
  "getPscServiceEndpoints", "updatePscServiceEndpoint", "deletePscServiceEndpoint",
    "getPscServiceEndpointCreationScript",
  "getPscServiceEndpointDeletionScript" }, "psc"))
add(psc_routes(REGION, true, { "createActiveActivePscService", "getActiveActivePscService",
  "deleteActiveActivePscService",
  "createActiveActivePscServiceEndpoint", "getActiveActivePscServiceEndpoints", "updateActiveActivePscServiceEndpoint",
  "deleteActiveActivePscServiceEndpoint", "getActiveActivPscServiceEndpointCreationScript",
  "getActiveActivPscServiceEndpointDeletionScript" }, "activeActivePsc"))
add(link_routes(SUB, false, { "createPrivateLink", "getPrivateLink", "deletePrivateLink", "createPrivateLinkPrincipal",
  "deletePrivateLinkPrincipals", "disassociatePrivateLinkConnections", "getPrivateLinkEndpointScript" }, "privateLink"))
add(link_routes(REGION, true, { "createActiveActivePrivateLink", "getActiveActivePrivateLink",
  "deleteActiveActivePrivateLink", "createActiveActivePrivateLinkPrincipal", "deleteActiveActivePrivateLinkPrincipals",
  "disassociateActiveActivePrivateLinkConnections", "getActiveActivePrivateLinkEndpointScript" },
    "activeActivePrivateLink"))

return M
