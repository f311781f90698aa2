-- Account-level families: cloud accounts, the account's users, the cost report.
-- luacheck: globals ngx
local util = require "rcsim.util"
local store = require "rcsim.store"
local common = require "rcsim.families.common"

local link = common.link

local M = {}

M.kinds = {
  -- a deleted cloud account still answers, reading `deleted`
  cloud_account = { label = "Cloud account", first = 16001, missing = "CLOUD_ACCOUNT_NOT_FOUND",
    words = { pending = { "draft", "pending" }, ready = "active", changing = "change-pending",
      deleting = "delete-draft",
              gone = "deleted", failed = { "active-error" },
              all = { "draft", "pending", "change-draft", "change-pending", "delete-draft", "active", "active-error",
                      "deleted" } } },
  account_user = { no_ends = true, label = "User", first = 1001, missing = "USER_NOT_FOUND",
    words = { pending = { "active" }, ready = "active", changing = "active", deleting = "deleting",
      all = { "active" } } },
  cost_report = { no_ends = true, label = "Cost report", missing = "GENERAL_ERROR",
    words = { pending = { "pending" }, ready = "ready", all = { "pending", "ready" } },
    new_id = function(ctx) return util.uuid() .. "." .. (ctx.body.format == "json" and "json" or "csv") end },
}

-- Every account has its owner and one more member.
function M.seed(a)
  local engine = require "rcsim.engine"
  for _, u in ipairs({ { "Owner", "owner@example.com", "Owner" }, { "Member", "member@example.com", "Member" } }) do
    local id = store.next_id("account_user", M.kinds.account_user.first)
    store.add(a, engine.kinds.account_user, id, nil, 0, 0, "active", { name = u[1], email = u[2], role = u[3] })
  end
end

local function cloud_view(r, ctx)
  local f = r.fields
  return { id = r.id, name = f.name, provider = f.provider or "AWS", status = store.status(r, ctx.now),
           accessKeyId = f.accessKeyId, awsConsoleRoleArn = f.awsConsoleRoleArn, signInLoginUrl = f.signInLoginUrl,
           links = { link(ctx.base, "/cloud-accounts/" .. r.id) } }
end
M.kinds.cloud_account.view = cloud_view

local function user_view(r, ctx)
  local f = r.fields
  return { id = r.id, name = f.name, email = f.email, role = f.role, userType = "Local", hasApiKey = f.role == "Owner",
           signUp = "2024-01-01T00:00:00Z", links = { link(ctx.base, "/users/" .. r.id) } }
end
M.kinds.account_user.view = user_view

local function owner_stays(ctx)
  if ctx.target.fields.role == "Owner" then return "USER_CANNOT_DELETE_OWN_USER" end
end

local function check_report(ctx)
  local b = ctx.body
  if type(b.startDate) ~= "string" then return "COST_REPORT_START_DATE_IS_MISSING" end
  if type(b.endDate) ~= "string" then return "COST_REPORT_END_DATE_IS_MISSING" end
  local pat = "^%d%d%d%d%-%d%d%-%d%d$"
  if not (b.startDate:find(pat) and b.endDate:find(pat)) then return "COST_REPORT_INVALID_DATE_FORMAT" end
  if b.endDate < b.startDate then return "COST_REPORT_END_DATE_BEFORE_START_DATE" end
end

-- The report file: FOCUS rows, one per subscription of the account, as JSON or CSV.
local COLUMNS = { "BillingAccountId", "BillingPeriodStart", "BillingPeriodEnd", "BilledCost", "BillingCurrency",
                  "ResourceId", "ResourceName", "ServiceName", "PricingUnit" }

local function report(ctx)
  local r = ctx.target
  local rows = {}
  for _, kname in ipairs({ "subscription", "fixed_subscription" }) do
    for _, s in ipairs(store.children(ctx.a, kname, nil, ctx.now)) do
      rows[#rows + 1] = { BillingAccountId = tostring(ctx.a.id),
        BillingPeriodStart = r.fields.startDate .. "T00:00:00Z",
        BillingPeriodEnd = r.fields.endDate .. "T00:00:00Z", BilledCost = 1.25, BillingCurrency = "USD",
        ResourceId = tostring(s.id), ResourceName = s.fields.name,
        ServiceName = kname == "subscription" and "Redis Cloud Pro" or "Redis Cloud Essentials",
        PricingUnit = kname == "subscription" and "Hours" or "Months" }
    end
  end
  local body
  if r.id:find("%.json$") then
    body = util.encode(util.array(rows))
  else
    local lines = { table.concat(COLUMNS, ",") }
    for _, row in ipairs(rows) do
      local cells = {}
      for i, c in ipairs(COLUMNS) do cells[i] = tostring(row[c]) end
      lines[#lines + 1] = table.concat(cells, ",")
    end
    body = table.concat(lines, "\n") .. "\n"
  end
  return { status = 200, body = body, content_type = "application/octet-stream",
           headers = { ["Content-Disposition"] = 'attachment; filename="' .. r.id .. '"' } }
end


local CLOUD, USER = "/cloud-accounts/{cloudAccountId}", "/users/{userId}"

M.routes = {
  { "GET", "/cloud-accounts", id = "getCloudAccounts", op = "list",
    view = common.lister("cloud_account", "cloudAccounts", cloud_view, "/cloud-accounts") },
  { "GET", CLOUD, id = "getCloudAccountById", op = "read" },
  { "POST", "/cloud-accounts", id = "createCloudAccount", op = "create", kind = "cloud_account", http = 202,
    command = "cloudAccountCreateRequest", title = true,
    done = { rid = "self", link = "/cloud-accounts/{id}", title = "getCloudAccountInformation" } },
  { "PUT", CLOUD, id = "updateCloudAccount", op = "update", http = 202, command = "cloudAccountUpdateRequest",
    title = true,
    done = { rid = "self" } },
  { "DELETE", CLOUD, id = "deleteCloudAccount", op = "delete", http = 200, command = "cloudAccountDeleteRequest",
    title = true, done = { rid = "self" } },
  { "GET", "/users", id = "getAllUsers", op = "list", view = common.lister("account_user", "users", user_view,
    "/users") },
  { "GET", USER, id = "getUserById", op = "read" },
  { "PUT", USER, id = "updateUser", op = "update", http = 200, command = "userUpdateRequest", done = { rid = "self" } },
  { "DELETE", USER, id = "deleteUserById", op = "delete", http = 200, command = "userDeleteRequest",
    check = owner_stays,
    done = { rid = "self" } },
  { "POST", "/cost-report", id = "createCostReport", op = "create", kind = "cost_report", http = 202,
    command = "costReportCreateRequest", check = check_report,
    done = { resource = function(_, rec) return { costReportId = rec.id } end } },
  { "GET", "/cost-report/{costReportId}", id = "getCostReport", op = "plain", missing = "spring", handle = report },
}

return M
