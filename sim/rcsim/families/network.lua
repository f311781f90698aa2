-- Networking of Pro subscriptions: VPC peerings (single-region and Active-Active) and transit
-- gateways (attachments, resource-share invitations). Peerings and TGWs are read only through
-- GETs that answer with a task.
local util = require "rcsim.util"
local store = require "rcsim.store"
local common = require "rcsim.families.common"

local M = { title = true }

local function gcp(f) return type(f.provider) == "string" and f.provider:upper() == "GCP" or f.vpcProjectUid ~= nil end

local PEERING_WORDS = { pending = { "initiating-request" }, ready = "active", changing = "initiating-request",
  deleting = "deleting", failed = { "failed" },
  all = { "initiating-request", "active", "inactive", "pending-acceptance", "failed", "deleting" } }

M.kinds = {
  peering = { label = "VPC peering", ids = "peering", first = 9001, missing = "VPC_PEERING_NOT_FOUND",
              words = PEERING_WORDS },
  aa_peering = { label = "VPC peering", ids = "peering", first = 9001, missing = "ACTIVE_ACTIVE_VPC_PEERING_NOT_FOUND",
                 words = PEERING_WORDS },
  tgw = { no_ends = true, label = "Transit gateway", first = 30001, missing = "TGW_DOES_NOT_EXIST",
          words = { pending = { "available" }, ready = "available", all = { "available" } } },
  tgw_attachment = { label = "Transit gateway attachment", first = 35001, missing = "TGW_ATTACHMENT_DOES_NOT_EXIST",
    words = { pending = { "pending" }, ready = "available", changing = "modifying", deleting = "deleting",
              failed = { "failed" }, all = { "initiating-request", "pending", "pendingAcceptance", "modifying",
                                             "deleting", "available", "failed", "rejected" } } },
  tgw_invitation = { no_ends = true, label = "Resource share", first = 60001,
    missing = "TGW_RESOURCE_SHARE_DOES_NOT_EXIST",
    words = { pending = { "pending" }, ready = "pending", all = { "pending", "accepted", "rejected" } } },
}

local AWS_ACCOUNT = "620187402834"

local function add_tgw(ctx, parent, at)
  local engine = require "rcsim.engine"
  local id = store.next_id("tgw", M.kinds.tgw.first)
  store.add(ctx.a, engine.kinds.tgw, id, parent, at, 0, "available",
            { awsTgwUid = ("tgw-%017x"):format(id), awsAccountId = AWS_ACCOUNT })
end

-- A subscription (or an A-A region) comes with one shared transit gateway and one pending
-- resource-share invitation.
function M.seed_tgws(ctx, parent, at)
  local engine = require "rcsim.engine"
  add_tgw(ctx, parent, at)
  local id = store.next_id("tgw_invitation", M.kinds.tgw_invitation.first)
  store.add(ctx.a, engine.kinds.tgw_invitation, id, parent, at, 0, "pending",
            { name = "rcsim-share-" .. id, awsAccountId = AWS_ACCOUNT,
              resourceShareUid = ("arn:aws:ram:us-east-1:%s:resource-share/%08x"):format(AWS_ACCOUNT, id),
              sharedDate = os.date("!%Y-%m-%dT%H:%M:%S.000+00:00", math.floor(at)) })
end

-- ===== peerings =====

local function peering_view(r, at)
  local f = r.fields
  local v = { vpcPeeringId = r.id, status = store.status(r, at) }
  if gcp(f) then
    v.projectUid, v.networkName = f.vpcProjectUid, f.vpcNetworkName
    v.redisProjectUid, v.redisNetworkName = "rlrcp-" .. r.parent.id, ("c%d-%s-rlrcp"):format(r.parent.id, "us-east1")
    v.cloudPeeringId = ("redislabs-peering-%08x"):format(r.id)
  else
    v.awsAccountId, v.vpcUid, v.vpcCidr = f.awsAccountId, f.vpcId, f.vpcCidr or (f.vpcCidrs and f.vpcCidrs[1])
    v.awsPeeringUid, v.regionName = ("pcx-%017x"):format(r.id), f.region or "us-east-1"
  end
  return v
end

local function peerings(ctx, at)
  local l = {}
  for _, p in ipairs(store.children(ctx.a, "peering", ctx.of.subscription, at)) do l[#l + 1] = peering_view(p, at) end
  return { peerings = util.array(l) }
end

local function aa_peerings(ctx, at)
  local sub = ctx.of.subscription
  local regions = {}
  for _, g in ipairs(store.children(ctx.a, "region", sub, at)) do
    local l = {}
    for _, p in ipairs(store.children(ctx.a, "aa_peering", sub, at)) do
      local f = p.fields
      if (f.sourceRegion or g.fields.region) == g.fields.region then
        -- an A-A peering names itself id, and its GCP project and network vpcProjectUid, vpcNetworkName
        local v = peering_view(p, at)
        v.id, v.vpcPeeringId, v.regionId, v.regionName = v.vpcPeeringId, nil, g.id, g.fields.region
        v.sourceRegion, v.destinationRegion = g.fields.region, f.destinationRegion
        v.vpcProjectUid, v.vpcNetworkName, v.projectUid, v.networkName = v.projectUid, v.networkName, nil, nil
        l[#l + 1] = v
      end
    end
    regions[#regions + 1] = { id = g.id, region = g.fields.region, vpcPeerings = util.array(l) }
  end
  return { subscriptionId = sub.id, regions = util.array(regions) }
end

-- ===== transit gateways =====

local function tgws(ctx, at)
  local l = {}
  for _, g in ipairs(store.children(ctx.a, "tgw", ctx.parent, at)) do
    local v = { id = g.id, awsTgwUid = g.fields.awsTgwUid, status = "available", awsAccountId = g.fields.awsAccountId,
                cidrs = util.array({}) }
    local att = store.children(ctx.a, "tgw_attachment", g, at)[1]
    if att then
      local st = store.status(att, at)
      v.attachmentUid, v.attachmentStatus = ("tgw-attach-%017x"):format(att.id), st
      local cidrs = {}
      for _, c in ipairs(type(att.fields.cidrs) == "table" and att.fields.cidrs or {}) do
        cidrs[#cidrs + 1] = { cidrAddress = c, status = st == "available" and "active" or "pending" }
      end
      v.cidrs = util.array(cidrs)
    end
    l[#l + 1] = v
  end
  return { tgws = util.array(l) }
end

local function invitations(ctx, at)
  local l = {}
  for _, r in ipairs(store.children(ctx.a, "tgw_invitation", ctx.parent, at)) do
    local f = r.fields
    l[#l + 1] = { id = r.id, name = f.name, resourceShareUid = f.resourceShareUid, awsAccountId = f.awsAccountId,
                  status = store.status(r, at), sharedDate = f.sharedDate }
  end
  return { resources = util.array(l) }
end

local function answer_invitation(word)
  return function(ctx, t)
    store.change(ctx.target, t.t_end, math.huge, word)
    if word == "accepted" then add_tgw(ctx, ctx.target.parent, t.t_end) end
  end
end

local function still_pending(ctx, at)
  if store.status(ctx.target, at) ~= "pending" then return "TGW_RESOURCE_SHARE_DOES_NOT_EXIST" end
end

-- The seven TGW operations under a subscription (single-region) or an A-A region.
local function tgw_routes(prefix, aa, ids)
  local wrong = aa and "TGW_GETTING_ACTIVE_ACTIVE_SUBSCRIPTION_TGW_IS_NOT_ALLOWED_WITH_SINGLE_REGION_SUBSCRIPTION"
    or "TGW_GETTING_SINGLE_REGION_TGWS_IS_NOT_ALLOWED_WITH_ACTIVE_ACTIVE_SUBSCRIPTION"
  local kind = common.needs(aa, wrong)
  local att = prefix .. "/transitGateways/{TgwId}/attachment"
  local inv = prefix .. "/transitGateways/invitations/{tgwInvitationId}"
  return {
    { "GET", prefix .. "/transitGateways", id = ids[1], op = "status", http = 200, command = "tgwGetRequest",
      title = false, check = kind, snapshot = tgws, done = { rid = "sub" } },
    { "GET", prefix .. "/transitGateways/invitations", id = ids[2], op = "status", http = 200, title = false,
      command = "tgwInvitationsGetRequest", check = kind, snapshot = invitations, done = { rid = "sub" } },
    { "POST", att, id = ids[3], op = "create", kind = "tgw_attachment", singleton = "tgw_attachment", http = 202,
      title = false, command = "tgwAttachmentCreateRequest", check = kind, done = { rid = "tgw" } },
    { "PUT", att, id = ids[4], op = "update", singleton = "tgw_attachment", http = 202, title = false,
      command = "tgwUpdateCidrsRequest", check = kind, done = { rid = "tgw" } },
    { "DELETE", att, id = ids[5], op = "delete", singleton = "tgw_attachment", http = 202, title = false,
      command = "tgwAttachmentDeleteRequest", check = kind, done = { rid = "tgw" } },
    { "PUT", inv .. "/accept", id = ids[6], op = "action", http = 202, title = false,
      command = "tgwAcceptInvitationRequest",
      check = common.all(kind, still_pending), apply = answer_invitation("accepted"), done = { rid = "invitation" } },
    { "PUT", inv .. "/reject", id = ids[7], op = "action", http = 202, title = false,
      command = "tgwRejectInvitationRequest",
      check = common.all(kind, still_pending), apply = answer_invitation("rejected"), done = { rid = "invitation" } },
  }
end

local SUB = "/subscriptions/{subscriptionId}"
local AA_PEERING = { peeringId = "aa_peering" }
local SR = "_IS_NOT_ALLOWED_WITH_SINGLE_REGION_SUBSCRIPTION"
local AAS = "_IS_NOT_ALLOWED_WITH_ACTIVE_ACTIVE_SUBSCRIPTION"

M.routes = {
  { "POST", SUB .. "/peerings", id = "createVpcPeering", op = "create", kind = "peering", http = 202,
    command = "peeringCreateRequest", check = common.needs(false, "CREATING_A_SINGLE_REGION_VPC_PEERING" .. AAS),
    done = { rid = "self" } },
  { "GET", SUB .. "/peerings", id = "getVpcPeering", op = "status", http = 202, command = "peeringListRequest",
    reports = "peering", check = common.needs(false, "GETTING_SINGLE_REGION_VPC_PEERINGS" .. AAS), snapshot = peerings,
    done = { rid = "sub" } },
  { "PUT", SUB .. "/peerings/{peeringId}", id = "updateVpcPeering", op = "update", http = 202,
    command = "peeringUpdateRequest", check = common.needs(false, "UPDATING_A_SINGLE_REGION_VPC_PEERING" .. AAS),
    done = { rid = "self" } },
  { "DELETE", SUB .. "/peerings/{peeringId}", id = "deleteVpcPeering", op = "delete", http = 202,
    command = "peeringDeleteRequest", check = common.needs(false, "DELETING_SINGLE_REGION_VPC_PEERING" .. AAS),
    done = {} },
  { "POST", SUB .. "/regions/peerings", id = "createActiveActiveVpcPeering", op = "create", kind = "aa_peering",
    http = 200, command = "activeActiveVpcPeeringCreateRequest", title = false,
    check = common.needs(true, "CREATING_AN_ACTIVE_ACTIVE_VPC_PEERING" .. SR), done = { rid = "self" } },
  { "GET", SUB .. "/regions/peerings", id = "getActiveActiveVpcPeerings", op = "status", http = 200, title = false,
    command = "activeActiveVpcPeeringListRequest", reports = "aa_peering",
    check = common.needs(true, "GETTING_ACTIVE_ACTIVE_SUBSCRIPTION_VPC_PEERINGS" .. SR), snapshot = aa_peerings,
    done = { rid = "sub" } },
  { "PUT", SUB .. "/regions/peerings/{peeringId}", id = "updateActiveActiveVpcPeering", op = "update", http = 200,
    params = AA_PEERING, command = "activeActiveVpcPeeringUpdateRequest", title = false,
    check = common.needs(true, "UPDATING_AN_ACTIVE_ACTIVE_VPC_PEERING" .. SR), done = { rid = "self" } },
  { "DELETE", SUB .. "/regions/peerings/{peeringId}", id = "deleteActiveActiveVpcPeering", op = "delete", http = 200,
    params = AA_PEERING, command = "activeActiveVpcPeeringDeleteRequest", title = false,
    check = common.needs(true, "DELETING_AN_ACTIVE_ACTIVE_VPC_PEERING" .. SR), done = {} },
}
for _, r in ipairs(tgw_routes(SUB, false, { "getTgws", "getTgwSharedInvitations", "createTgwAttachment",
    "updateTgwAttachmentCidrs", "deleteTgwAttachment", "acceptTgwResourceShare", "rejectTgwResourceShare" })) do
  M.routes[#M.routes + 1] = r
end
for _, r in ipairs(tgw_routes(SUB .. "/regions/{regionId}", true, { "getActiveActiveTgws",
    "getActiveActiveTgwSharedInvitations", "createActiveActiveTgwAttachment", "updateActiveActiveTgwAttachmentCidrs",
    "deleteActiveActiveTgwAttachment", "acceptActiveActiveTgwResourceShare", "rejectActiveActiveTgwResourceShare" })) do
  M.routes[#M.routes + 1] = r
end

return M
