-- Role-based access control: Redis ACL rules, roles and users. Rules and roles have no GET by id
-- (only their lists); a finished create or update links `resource` to a path that is not an API
-- path (…/acl/{id}/acl/roles), as the real API does.
local util = require "rcsim.util"
local store = require "rcsim.store"
local common = require "rcsim.families.common"

local link = common.link

local M = { title = true }

local WORDS = { pending = { "pending" }, ready = "active", changing = "pending", deleting = "deleting",
                failed = { "error" }, all = { "pending", "active", "error", "deleting" } }

M.kinds = {
  acl_rule = { label = "ACL redis rule", first = 11001, missing = "ACL_REDIS_RULE_NOT_FOUND", words = WORDS },
  acl_role = { label = "ACL role", first = 12001, missing = "ACL_ROLE_NOT_FOUND", words = WORDS },
  acl_user = { label = "ACL user", first = 13001, missing = "ACL_USER_NOT_FOUND", words = WORDS },
}

-- Every account starts with the three default rules.
local DEFAULT_RULES = { { "Full-Access", "+@all  ~*" }, { "Read-Write", "+@all -@dangerous ~*" },
                        { "Read-Only", "+@read ~*" } }

function M.seed(a)
  local engine = require "rcsim.engine"
  for _, d in ipairs(DEFAULT_RULES) do
    local id = store.next_id("acl_rule", M.kinds.acl_rule.first)
    store.add(a, engine.kinds.acl_rule, id, nil, 0, 0, "active", { name = d[1], redisRule = d[2], isDefault = true })
  end
end

local function alive(a, kname, at)
  return store.children(a, kname, nil, at)
end

local function by_name(a, kname, name, at)
  for _, r in ipairs(alive(a, kname, at)) do
    if r.fields.name == name and store.alive(r, at) then return r end
  end
end

-- ===== checks =====

local KEYWORDS = { allkeys = true, allchannels = true, allcommands = true, nocommands = true, resetkeys = true,
                   resetchannels = true }

-- A rule is space-separated tokens: +cmd, -cmd, +@cat, -@cat, ~keys, %R~keys, &channels or a keyword.
local function valid_rule(s)
  if type(s) ~= "string" or not s:find("%S") then return false end
  for tok in s:gmatch("%S+") do
    if not (KEYWORDS[tok] or tok:find("^[+-]@?[%w|_]+$") or tok:find("^~.") or tok:find("^%%R?W?~.")
      or tok:find("^&.")) then
      return false
    end
  end
  return true
end

local function check_rule(ctx)
  local b = ctx.body
  if ctx.route.op ~= "create" and ctx.target.fields.isDefault then return "ACL_REDIS_RULE_CANNOT_UPDATE_DEFAULT" end
  if b.redisRule ~= nil or ctx.route.op == "create" then
    if not valid_rule(b.redisRule) then return "ACL_REDIS_RULE_PATTERN_NOT_VALID" end
  end
end

local function rule_in_use(ctx, at)
  local rule = ctx.target
  if rule.fields.isDefault then return "ACL_REDIS_RULE_CANNOT_DELETE_DEFAULT" end
  for _, role in ipairs(alive(ctx.a, "acl_role", at)) do
    for _, rr in ipairs(role.fields.redisRules or {}) do
      if rr.ruleName == rule.fields.name then return "ACL_REDIS_RULE_CANNOT_DELETE_WHEN_ASSOCIATED_WITH_ROLES" end
    end
  end
end

-- The databases a role names must exist, in subscriptions that exist.
local function check_role(ctx, at)
  local a = ctx.a
  for _, rr in ipairs(type(ctx.body.redisRules) == "table" and ctx.body.redisRules or {}) do
    if type(rr) ~= "table" or not by_name(a, "acl_rule", rr.ruleName, at) then return "ACL_REDIS_RULE_NOT_FOUND" end
    for _, d in ipairs(type(rr.databases) == "table" and rr.databases or {}) do
      local sub = type(d) == "table" and (store.get(a, "subscription", d.subscriptionId)
        or store.get(a, "fixed_subscription", d.subscriptionId))
      if not store.alive(sub, at) then return "SUBSCRIPTION_NOT_FOUND" end
      local found
      for _, kname in ipairs({ "database", "fixed_database" }) do
        for _, db in ipairs(store.children(a, kname, sub, at)) do
          if db.id == d.databaseId and store.alive(db, at) then found = true end
        end
      end
      if not found then return "DATABASE_NOT_FOUND" end
    end
  end
end

local function role_has_users(ctx, at)
  for _, u in ipairs(alive(ctx.a, "acl_user", at)) do
    if u.fields.role == ctx.target.fields.name then return "ACL_ROLE_HAS_ACTIVE_USERS_AND_CANNOT_BE_DELETED" end
  end
end

-- Passwords: at least 8 characters with a lower and an upper case letter, a digit and a symbol.
local function valid_password(p)
  return type(p) == "string" and #p >= 8 and p:find("%l") and p:find("%u") and p:find("%d") and p:find("[^%w]")
end

local function check_user(ctx, at)
  local b = ctx.body
  local create = ctx.route.op == "create"
  if (create or b.role ~= nil) and not by_name(ctx.a, "acl_role", b.role, at) then return "ACL_ROLE_DOES_NOT_EXISTS" end
  if (create or b.password ~= nil) and not valid_password(b.password) then return "ACL_USER_PASSWORD_NOT_VALID" end
end

-- ===== views =====

local function rule_view(r, now)
  return { id = r.id, name = r.fields.name, acl = r.fields.redisRule, isDefault = r.fields.isDefault == true,
           status = store.status(r, now) }
end

local function role_view(r, ctx)
  local a, now = ctx.a, ctx.now
  local rules = {}
  for _, rr in ipairs(r.fields.redisRules or {}) do
    local rule = by_name(a, "acl_rule", rr.ruleName, now)
    local dbs = {}
    for _, d in ipairs(rr.databases or {}) do
      dbs[#dbs + 1] = { subscriptionId = d.subscriptionId, databaseId = d.databaseId,
        databaseName = "db-" .. tostring(d.databaseId),
                        regions = util.array(d.regions or {}) }
    end
    rules[#rules + 1] = { ruleId = rule and rule.id, ruleName = rr.ruleName, databases = util.array(dbs) }
  end
  local users = {}
  for _, u in ipairs(alive(a, "acl_user", now)) do
    if u.fields.role == r.fields.name then users[#users + 1] = { id = u.id, name = u.fields.name } end
  end
  return { id = r.id, name = r.fields.name, redisRules = util.array(rules), users = util.array(users),
           status = store.status(r, now) }
end

local function user_view(r, ctx)
  return { id = r.id, name = r.fields.name, role = r.fields.role, status = store.status(r, ctx.now),
           links = { link(ctx.base, "/acl/users/" .. r.id) } }
end
M.kinds.acl_user.view = user_view


local RULE, ROLE, USER = "/acl/redisRules/{aclRedisRuleId}", "/acl/roles/{aclRoleId}", "/acl/users/{aclUserId}"
local RULE_LINK = { rid = "self", link = "/acl/{id}/acl/redisRules", title = "getACLRedisRulesInformation" }
local ROLE_LINK = { rid = "self", link = "/acl/{id}/acl/roles", title = "getACLRolesInformation" }
local USER_LINK = { rid = "self", link = "/acl/{id}/acl/users", title = "getACLUserInformation" }

M.routes = {
  { "GET", "/acl/redisRules", id = "getAllRedisRules", op = "list",
    view = common.lister("acl_rule", "redisRules", function(r, ctx) return rule_view(r, ctx.now) end,
      "/acl/redisRules") },
  { "POST", "/acl/redisRules", id = "createRedisRule", op = "create", kind = "acl_rule", http = 202,
    command = "aclRedisRuleCreateRequest", check = check_rule, done = RULE_LINK },
  { "PUT", RULE, id = "updateRedisRule", op = "update", http = 202, command = "aclRedisRuleUpdateRequest",
    check = check_rule, done = { rid = "self" } },
  { "DELETE", RULE, id = "deleteRedisRule", op = "delete", http = 202, command = "aclRedisRuleDeleteRequest",
    check = rule_in_use, done = { rid = "self" } },
  { "GET", "/acl/roles", id = "getRoles", op = "list", view = common.lister("acl_role", "roles", role_view,
    "/acl/roles") },
  { "POST", "/acl/roles", id = "createRole", op = "create", kind = "acl_role", http = 202,
    command = "aclRoleCreateRequest",
    check = check_role, done = ROLE_LINK },
  { "PUT", ROLE, id = "updateRole", op = "update", http = 202, command = "aclRoleUpdateRequest", check = check_role,
    done = ROLE_LINK },
  { "DELETE", ROLE, id = "deleteAclRole", op = "delete", http = 200, command = "aclRoleDeleteRequest",
    check = role_has_users, done = { rid = "self" } },
  { "GET", "/acl/users", id = "getAllACLUsers", op = "list", view = common.lister("acl_user", "users", user_view,
    "/acl/users") },
  { "GET", USER, id = "getUserByID", op = "read", missing = "message" },
  { "POST", "/acl/users", id = "createUser", op = "create", kind = "acl_user", http = 202,
    command = "aclUserCreateRequest",
    check = check_user, done = USER_LINK },
  { "PUT", USER, id = "updateUser_1", op = "update", http = 200, command = "aclUserUpdateRequest", check = check_user,
    done = USER_LINK },
  { "DELETE", USER, id = "deleteUser", op = "delete", http = 200, command = "aclUserDeleteRequest",
    done = { rid = "self" } },
}

return M
