-- Pro subscriptions and their databases: create/update/delete, upgrade, flush, A-A regions and
-- local properties, backups and imports with their status GETs, maintenance windows, the CIDR
-- allow-list, resource tags, database tags, traffic resume.
local util = require "rcsim.util"
local store = require "rcsim.store"
local common = require "rcsim.families.common"

local link = common.link

local M = { title = true } -- their task links carry the title getTaskStatusUpdates

-- ===== kinds =====

local REGIONS = { "us-east-1", "us-east-2", "eu-west-1" }

-- The region names a create body asks for (cloudProviders[1].regions[].region), else defaults.
local function region_names(body, aa)
  local cp = type(body.cloudProviders) == "table" and body.cloudProviders[1]
  local l = {}
  for _, r in ipairs(type(cp) == "table" and type(cp.regions) == "table" and cp.regions or {}) do
    if type(r) == "table" and type(r.region) == "string" then l[#l + 1] = r.region end
  end
  if l[1] then return l end
  return aa and { REGIONS[1], REGIONS[2] } or { REGIONS[1] }
end

-- Region ids count from 1 within their subscription.
local function add_region(ctx, sub, name, at)
  local engine = require "rcsim.engine"
  local n = 0
  for _, x in ipairs(store.all(ctx.a, "region").list) do
    if x.parent == sub and x.id > n then n = x.id end
  end
  local r = store.add(ctx.a, engine.kinds.region, n + 1, sub, at, 0, "active", { region = name })
  if common.active_active(sub) then require("rcsim.families.network").seed_tgws(ctx, r, at) end
  return r
end

local function on_create_subscription(ctx, rec)
  local aa = common.active_active(rec)
  for _, name in ipairs(region_names(rec.fields, aa)) do add_region(ctx, rec, name, rec.appear) end
  if not aa then require("rcsim.families.network").seed_tgws(ctx, rec, rec.appear) end
end

local function subscription_view(r, ctx)
  local now = ctx.now
  local regions = {}
  for _, g in ipairs(store.children(ctx.a, "region", r, now)) do
    regions[#regions + 1] = { region = g.fields.region, networking = { { deploymentCIDR = "10.0.0.0/24",
      vpcId = "vpc-" .. string.format("%08x", r.id * 16 + g.id) } },
        preferredAvailabilityZones = { g.fields.region .. "a" },
      multipleAvailabilityZones = false }
  end
  local cp = type(r.fields.cloudProviders) == "table" and r.fields.cloudProviders[1] or {}
  return {
    id = r.id, name = r.fields.name, status = store.status(r, now),
    deploymentType = common.active_active(r) and "active-active" or "single-region",
    paymentMethodType = "credit-card", paymentMethodId = r.fields.paymentMethodId,
      memoryStorage = r.fields.memoryStorage or "ram",
    storageEncryption = false, numberOfDatabases = #store.children(ctx.a, "database", r, now),
    cloudDetails = { { provider = cp.provider or "AWS", cloudAccountId = cp.cloudAccountId or 1, totalSizeInGb = 0.1,
                       regions = regions, links = util.array({}) } },
    links = { link(ctx.base, "/subscriptions/" .. r.id) },
  }
end

M.kinds = {
  subscription = { label = "Subscription", ids = "subscription", first = 100001, missing = "SUBSCRIPTION_NOT_FOUND",
    words = { pending = { "pending" }, ready = "active", changing = "pending", deleting = "deleting",
              failed = { "error" }, all = { "pending", "active", "error", "deleting", "encryption_key_pending" } },
    on_create = on_create_subscription, view = subscription_view },
  region = { no_ends = true, label = "Region", missing = "SUBSCRIPTION_INVALID_REGION_ID",
    words = { pending = { "active" }, ready = "active", changing = "active", deleting = "deleting",
      all = { "active" } } },
  database = { label = "Database", ids = "database", first = 51000001, missing = "DATABASE_NOT_FOUND",
    touches = "pending", words = common.DATABASE_WORDS,
    view = function(r, ctx) return common.database_view(r, ctx, "/subscriptions") end },
  import = { label = "Import", missing = "DATABASE_NOT_FOUND", words = common.IMPORT_WORDS },
  backup = { label = "Backup", missing = "DATABASE_NOT_FOUND", words = common.BACKUP_WORDS },
}

-- ===== checks =====

-- No more than three subscriptions provisioning or changing at once in an account.
local function few_pending(ctx, at)
  local n = 0
  for _, kname in ipairs({ "subscription", "fixed_subscription" }) do
    for _, s in ipairs(store.children(ctx.a, kname, nil, at)) do
      if not store.ready(s, at) then n = n + 1 end
    end
  end
  if n >= 3 then return "TOO_MANY_PENDING_SUBSCRIPTIONS" end
end

local function check_create(ctx, at)
  local dbs = ctx.body.databases
  if type(dbs) == "table" and dbs[1] == nil then return "GENERAL_ERROR", "rcp-cannot-provision-without-plan" end
  return few_pending(ctx, at)
end

-- A subscription is deleted only once every database in it is gone.
local function no_databases(kname)
  return function(ctx, at)
    if store.children(ctx.a, kname, ctx.target, at)[1] then return "SUBSCRIPTION_IN_USE" end
  end
end
M.no_databases = no_databases

local function needs_name(ctx)
  if type(ctx.body.name) ~= "string" or ctx.body.name == "" then return "Subscription name is required" end
end
M.needs_name = needs_name

-- ===== effects of actions =====

local function regions_changed(ctx, t)
  local engine = require "rcsim.engine"
  store.change(ctx.target, t.t_progress, t.t_end + engine.provision(ctx.a), "pending")
end

local function add_regions(ctx, t)
  regions_changed(ctx, t)
  local l = type(ctx.body.regions) == "table" and ctx.body.regions or { { region = ctx.body.region } }
  for _, r in ipairs(l) do
    if type(r) == "table" and type(r.region) == "string" then add_region(ctx, ctx.target, r.region, t.t_end) end
  end
end

local function delete_regions(ctx, t)
  regions_changed(ctx, t)
  local engine = require "rcsim.engine"
  local gone = {}
  for _, r in ipairs(type(ctx.body.regions) == "table" and ctx.body.regions or {}) do
    if type(r) == "table" and r.region then gone[r.region] = true end
  end
  for _, g in ipairs(store.children(ctx.a, "region", ctx.target, t.t_end)) do
    if gone[g.fields.region] then store.remove(g, t.t_progress, t.t_end + engine.provision(ctx.a)) end
  end
end

local function has_regions(ctx)
  local l = ctx.body.regions
  if not common.active_active(ctx.target) then return "ADDING_REGION_IS_NOT_ALLOWED_WITH_SINGLE_REGION_SUBSCRIPTION" end
  if type(l) ~= "table" or l[1] == nil then return "ACTIVE_ACTIVE_REGIONS_MUST_BE_DEFINED_ONCE" end
end

local function upgrade(ctx, t)
  local engine = require "rcsim.engine"
  local f = ctx.target.fields
  f.upgrade = { from = t.t_progress, to = t.t_end + engine.provision(ctx.a),
    target = ctx.body.targetRedisVersion or "7.4",
                previous = f.redisVersion or "7.2" }
  f.redisVersion = f.upgrade.target
end

-- Upgrade progress, read by GET .../upgrade (no task).
local function upgrade_view(ctx)
  local db, now = ctx.target, ctx.now
  local u = db.fields.upgrade
  if not u then return { databaseId = db.id, upgradeStatus = "done",
    targetRedisVersion = db.fields.redisVersion or "7.2",
                         progress = 100 } end
  local done = now >= u.to
  return { databaseId = db.id, targetRedisVersion = u.target, upgradeStatus = done and "done" or "in-progress",
           progress = done and 100 or math.floor((now - u.from) / (u.to - u.from) * 100) }
end

local function cidr_resource(ctx)
  local f = ctx.of.subscription.fields
  return { cidr_ips = util.array(f.cidr_ips or { "0.0.0.0/0" }),
    security_group_ids = util.array(f.security_group_ids or {}) }
end

local function set_cidr(ctx)
  local f, b = ctx.target.fields, ctx.body
  if type(b.cidrIps) == "table" then f.cidr_ips = b.cidrIps end
  if type(b.securityGroupIds) == "table" then f.security_group_ids = b.securityGroupIds end
end

local function maintenance_view(ctx)
  local m = ctx.target.fields.maintenance or { mode = "automatic" }
  return { mode = m.mode or "automatic", windows = util.array(m.windows or {}) }
end

local function regions_view(ctx)
  local sub = ctx.target
  local l = {}
  for _, g in ipairs(store.children(ctx.a, "region", sub, ctx.now)) do
    l[#l + 1] = { regionId = g.id, region = g.fields.region, deploymentCIDR = ("10.%d.0.0/24"):format(g.id),
                  vpcId = ("vpc-%08x"):format(sub.id * 16 + g.id), databases = util.array({}) }
  end
  return { subscriptionId = sub.id, regions = util.array(l), links = { link(ctx.base,
    "/subscriptions/" .. sub.id .. "/regions") } }
end


-- ===== routes =====

local SUB = "/subscriptions/{subscriptionId}"
local DB = SUB .. "/databases/{databaseId}"
local ACTIVE, SETTLED = common.busy_active, common.busy_settled
local NOT_AA = "GETTING_SINGLE_REGION_CIDR_WHITE_LIST_IS_NOT_ALLOWED_WITH_ACTIVE_ACTIVE_SUBSCRIPTION"

M.routes = {
  { "POST", "/subscriptions", id = "createSubscription", op = "create", kind = "subscription", http = 202,
    command = "subscriptionCreateRequest", validate = needs_name, check = check_create,
    done = { rid = "self", link = "/subscriptions/{id}", title = "getSubscriptionInformation" } },
  { "GET", "/subscriptions", id = "getAllSubscriptions", op = "list",
    view = common.lister("subscription", "subscriptions", subscription_view, "/subscriptions") },
  { "GET", SUB, id = "getSubscriptionById", op = "read" },
  { "PUT", SUB, id = "updateSubscription", op = "update", http = 200, command = "subscriptionUpdateRequest",
    busy = ACTIVE, done = {} },
  { "DELETE", SUB, id = "deleteSubscriptionById", op = "delete", http = 200, command = "subscriptionDeleteRequest",
    busy = SETTLED, check = no_databases("database"), done = {} },
  { "POST", SUB .. "/regions", id = "addNewRegionToActiveActiveSubscription", op = "action", http = 200,
    command = "activeActiveRegionCreateRequest", busy = ACTIVE, check = has_regions, apply = add_regions,
    done = { rid = "sub" } },
  { "DELETE", SUB .. "/regions", id = "deleteRegionsFromActiveActiveSubscription", op = "action", http = 200,
    command = "activeActiveRegionDeleteRequest", busy = ACTIVE, check = has_regions, apply = delete_regions,
    done = { rid = "sub" } },
  { "GET", SUB .. "/regions", id = "getRegionsFromActiveActiveSubscription", op = "read", view = regions_view },
  { "PUT", SUB .. "/maintenance-windows", id = "updateSubscriptionMaintenanceWindows", op = "action", http = 200,
    command = "subscriptionMaintenanceWindowsUpdateRequest", title = false,
    apply = function(ctx) ctx.target.fields.maintenance = ctx.body end,
    done = { rid = "sub", link = "/subscriptions/{sub}" } },
  { "GET", SUB .. "/maintenance-windows", id = "getSubscriptionMaintenanceWindows", op = "read",
    view = maintenance_view },
  { "GET", SUB .. "/cidr", id = "getCidrWhiteList", op = "status", http = 202, command = "peeringListRequest",
    check = common.needs(false, NOT_AA), snapshot = cidr_resource, done = {} },
  { "PUT", SUB .. "/cidr", id = "updateSubscriptionCidrWhiteList", op = "action", http = 202,
    command = "cidrUpdateRequest",
    check = common.needs(false,
      "UPDATING_SINGLE_REGION_CIDR_WHITE_LIST_IS_NOT_ALLOWED_WITH_ACTIVE_ACTIVE_SUBSCRIPTION"),
    apply = set_cidr, done = { resource = cidr_resource } },
  { "PUT", SUB .. "/resource-tags", id = "updateSubscriptionResourceTags", op = "action", http = 202,
    command = "subscriptionUpdateRequest", apply = function(ctx) ctx.target.fields.resourceTags = ctx.body.tags end,
    done = {} },

  { "POST", SUB .. "/databases", id = "createDatabase", op = "create", kind = "database", http = 202,
    command = "databaseCreateRequest", busy = ACTIVE, done = { rid = "self" } },
  { "GET", SUB .. "/databases", id = "getSubscriptionDatabases", op = "list",
    view = function(ctx) return common.databases_list(ctx, "database", "/subscriptions") end },
  { "GET", DB, id = "getSubscriptionDatabaseByID", op = "read" },
  { "PUT", DB, id = "updateDatabase", op = "update", http = 200, command = "databaseUpdateRequest",
    busy = ACTIVE, done = { rid = "self" } },
  { "DELETE", DB, id = "deleteDatabaseById", op = "delete", http = 200, command = "dbDeleteRequest",
    busy = SETTLED, done = { rid = "self" } },
  { "PUT", DB .. "/regions", id = "updateCrdbLocalProperties", op = "update", http = 200,
    command = "databaseRegionsUpdateRequest", busy = ACTIVE,
    check = common.needs(true, "ACTIVE_ACTIVE_SUBSCRIPTION_IS_NOT_SUPPORTED"),
    done = { rid = "self" } },
  { "PUT", DB .. "/flush", id = "flushCrdb", op = "action", http = 200, command = "databaseFlushRequest",
    busy = ACTIVE, check = common.needs(true, "ACTIVE_ACTIVE_SUBSCRIPTION_IS_NOT_SUPPORTED"), done = { rid = "self" } },
  { "POST", DB .. "/upgrade", id = "upgradeDatabaseRedisVersion", op = "update", http = 200,
    command = "databaseUpgradeRedisVersionRequest", changing = "active-upgrade-pending", busy = ACTIVE, apply = upgrade,
    done = { rid = "self" } },
  { "GET", DB .. "/upgrade", id = "getDatabaseRedisVersionUpgradeStatus", op = "read", view = upgrade_view },
  { "POST", DB .. "/backup", id = "backupDatabase", op = "action", http = 200, command = "databaseBackupRequest",
    title = false, check = common.check_backup, apply = common.start_run("backup"), done = { rid = "self" } },
  { "GET", DB .. "/backup", id = "getDatabaseBackupStatus", op = "status", http = 200, reports = "backup",
    command = "databaseBackupStatusRequest", title = false, check = common.sub_active,
    snapshot = common.backup_snapshot, done = { rid = "db", aid = "sub" } },
  { "POST", DB .. "/import", id = "importDatabase", op = "action", http = 200, command = "databaseImportRequest",
    title = false, check = common.check_import, apply = common.start_run("import"), done = { rid = "self" } },
  { "GET", DB .. "/import", id = "getDatabaseImportStatus", op = "status", http = 200, reports = "import",
    command = "databaseImportStatusRequest", title = false, check = common.sub_active,
    snapshot = common.import_snapshot, done = { rid = "db", aid = "sub" } },
}
for _, r in ipairs(common.database_plain_routes("/subscriptions", "")) do M.routes[#M.routes + 1] = r end

return M
