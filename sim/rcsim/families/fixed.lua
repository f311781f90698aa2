-- Essentials (fixed) subscriptions and their databases: create/update/delete, upgrade, backups and
-- imports with their status GETs, database tags, traffic resume.
local util = require "rcsim.util"
local store = require "rcsim.store"
local common = require "rcsim.families.common"
local pro = require "rcsim.families.pro"

local link = common.link

local M = { params = { subscriptionId = "fixed_subscription", databaseId = "fixed_database" } }

local function subscription_view(r, ctx)
  local f = r.fields
  return { id = r.id, name = f.name, status = store.status(r, ctx.now), planId = f.planId or 98183,
           paymentMethodType = f.paymentMethodId and "credit-card" or "free", paymentMethodId = f.paymentMethodId,
           creationDate = util.stamp(r.appear),
           links = { link(ctx.base, "/fixed/subscriptions/" .. r.id) } }
end

M.kinds = {
  fixed_subscription = { label = "Subscription", ids = "subscription", first = 100001,
    missing = "SUBSCRIPTION_NOT_FOUND",
    words = { pending = { "pending" }, ready = "active", changing = "pending", deleting = "deleting",
              failed = { "error" }, all = { "pending", "active", "error", "deleting" } },
    view = subscription_view },
  fixed_database = { label = "Database", ids = "database", first = 51000001, missing = "DATABASE_NOT_FOUND",
    touches = "pending", words = common.DATABASE_WORDS,
    view = function(r, ctx) return common.database_view(r, ctx, "/fixed/subscriptions") end },
}

-- A free plan is one without a payment method; an account holds at most one.
local function one_free_plan(ctx, at)
  if ctx.body.paymentMethodId then return nil end
  for _, s in ipairs(store.children(ctx.a, "fixed_subscription", nil, at)) do
    if not s.fields.paymentMethodId and store.alive(s,
      at) then return "FIXED_SUBSCRIPTION_ACCOUNT_ALREADY_HAS_A_FREE_PLAN" end
  end
end


local SUB = "/fixed/subscriptions/{subscriptionId}"
local DB = SUB .. "/databases/{databaseId}"
local ACTIVE, SETTLED = common.busy_active, common.busy_settled
local DB_DONE = { rid = "self", aid = "sub", link = "/fixed/subscriptions/{sub}/databases/{id}" }

M.routes = {
  { "POST", "/fixed/subscriptions", id = "createSubscription_1", op = "create", kind = "fixed_subscription", http = 202,
    command = "fixedSubscriptionCreateRequest", validate = pro.needs_name, check = one_free_plan,
    done = { rid = "self", link = "/fixed/subscriptions/{id}" } },
  { "GET", "/fixed/subscriptions", id = "getAllSubscriptions_1", op = "list",
    view = common.lister("fixed_subscription", "subscriptions", subscription_view, "/fixed/subscriptions") },
  { "GET", SUB, id = "getSubscriptionById_1", op = "read" },
  { "PUT", SUB, id = "updateSubscription_1", op = "update", http = 202, command = "fixedSubscriptionUpdateRequest",
    busy = ACTIVE, done = { rid = "self", link = "/fixed/subscriptions/{id}" } },
  { "DELETE", SUB, id = "deleteSubscriptionById_1", op = "delete", http = 200,
    command = "fixedSubscriptionDeleteRequest",
    busy = SETTLED, check = pro.no_databases("fixed_database"), done = { rid = "self" } },
  { "POST", SUB .. "/databases", id = "createFixedDatabase", op = "create", kind = "fixed_database", http = 200,
    command = "fixedDatabaseCreateRequest", busy = ACTIVE, done = DB_DONE },
  { "GET", SUB .. "/databases", id = "getFixedSubscriptionDatabases", op = "list",
    view = function(ctx) return common.databases_list(ctx, "fixed_database", "/fixed/subscriptions") end },
  { "GET", DB, id = "getFixedSubscriptionDatabaseByID", op = "read" },
  -- the API names this update operation deleteFixedDatabaseByID
  { "PUT", DB, id = "deleteFixedDatabaseByID", op = "update", http = 200, command = "fixedDatabaseUpdateRequest",
    busy = ACTIVE, done = DB_DONE },
  { "DELETE", DB, id = "deleteFixedDatabaseByID_1", op = "delete", http = 200, command = "fixedDatabaseDeleteRequest",
    busy = SETTLED, done = { rid = "self", aid = "sub" } },
  { "POST", DB .. "/upgrade", id = "upgradeEssentialsDatabaseRedisVersion", op = "update", http = 200,
    command = "fixedDatabaseUpgradeRedisVersionRequest", changing = "active-upgrade-pending", busy = ACTIVE,
    apply = function(ctx) ctx.target.fields.redisVersion = ctx.body.targetRedisVersion or "7.4" end, done = DB_DONE },
  { "POST", DB .. "/backup", id = "backupDatabase_1", op = "action", http = 200, command = "fixedDatabaseBackupRequest",
    check = common.check_backup, apply = common.start_run("backup"), done = { rid = "self", aid = "sub" } },
  { "GET", DB .. "/backup", id = "getDatabaseBackupStatus_1", op = "status", http = 200, reports = "backup",
    command = "databaseBackupStatusRequest", check = common.sub_active, snapshot = common.backup_snapshot, done = {} },
  { "POST", DB .. "/import", id = "importDatabase_1", op = "action", http = 200, command = "fixedDatabaseImportRequest",
    check = common.check_import, apply = common.start_run("import"), done = { rid = "self", aid = "sub" } },
  { "GET", DB .. "/import", id = "getDatabaseImportStatus_1", op = "status", http = 200, reports = "import",
    command = "databaseImportStatusRequest", check = common.sub_active, snapshot = common.import_snapshot,
    done = { rid = "db", aid = "sub" } },
}
for _, r in ipairs(common.database_plain_routes("/fixed/subscriptions", "_1")) do M.routes[#M.routes + 1] = r end

return M
