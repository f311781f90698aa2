-- Subscriptions and databases: each appears when its create task completes, `pending` then
-- `active` after `provision` seconds, `deleting` while its delete task runs, gone after it.
local tasks = require "rcsim.tasks"

local M = {}

local next_sub, next_db = 100001, 51000001

local function provision(acct) return acct.cfg.provision or acct.cfg.step end

-- Status at `now`, or nil while it does not exist (yet, or any more).
local function status(r, now)
  if now < r.created or (r.deleted and now >= r.deleted) then return nil end
  if r.deleting and now >= r.deleting then return "deleting" end
  if now < r.active then return "pending" end
  return "active"
end

local function alive(r) return r and not r.deleted end

local function not_found(kind, id)
  local upper = kind:upper()
  return { type = upper .. "_NOT_FOUND", status = "404 NOT_FOUND",
           description = ("%s %s not found"):format(kind:sub(1, 1):upper() .. kind:sub(2), id) }
end

local function new_resource(t, acct, fields)
  fields.created = t.t_end
  fields.active = t.t_end + provision(acct)
  return fields
end

function M.create_subscription(acct, body, now)
  local t = tasks.create(acct, { commandType = "subscriptionCreateRequest" }, now)
  if t.outcome.kind == "completed" then
    local id = next_sub
    next_sub = id + 1
    acct.subs[id] = new_resource(t, acct, { id = id, name = body.name, dbs = {} })
    acct.sub_order[#acct.sub_order + 1] = id
    t.resourceId, t.resource_path = id, "/subscriptions/" .. id
  end
  return t
end

local function delete(r, t)
  if t.outcome.kind == "completed" then r.deleting, r.deleted = t.t_progress, t.t_end end
  return t
end

function M.delete_subscription(acct, id, now)
  local s = acct.subs[id]
  if not alive(s) then
    return tasks.create(acct, { commandType = "subscriptionDeleteRequest", error = not_found("subscription", id) }, now)
  end
  local t = tasks.create(acct, { commandType = "subscriptionDeleteRequest", resourceId = id }, now)
  return delete(s, t)
end

function M.update_subscription(acct, id, now)
  local err = not alive(acct.subs[id]) and not_found("subscription", id) or nil
  return tasks.create(acct, { commandType = "subscriptionUpdateRequest", resourceId = id, error = err }, now)
end

function M.create_database(acct, sid, body, now)
  local s = acct.subs[sid]
  if not alive(s) then
    return tasks.create(acct, { commandType = "databaseCreateRequest", error = not_found("subscription", sid) }, now)
  end
  local t = tasks.create(acct, { commandType = "databaseCreateRequest" }, now)
  if t.outcome.kind == "completed" then
    local id = next_db
    next_db = id + 1
    s.dbs[id] = new_resource(t, acct, { id = id, name = body.name, memory = body.memoryLimitInGb })
    t.resourceId, t.additionalResourceId = id, sid
    t.resource_path = ("/subscriptions/%d/databases/%d"):format(sid, id)
  end
  return t
end

local function db_of(acct, sid, id)
  local s = acct.subs[sid]
  return s and alive(s) and s.dbs[id] or nil
end

function M.delete_database(acct, sid, id, now)
  local d = db_of(acct, sid, id)
  if not alive(d) then
    return tasks.create(acct, { commandType = "dbDeleteRequest", error = not_found("database", id) }, now)
  end
  local t = tasks.create(acct, { commandType = "dbDeleteRequest", resourceId = id, additionalResourceId = sid }, now)
  return delete(d, t)
end

function M.update_database(acct, sid, id, now)
  local err = not alive(db_of(acct, sid, id)) and not_found("database", id) or nil
  return tasks.create(acct, { commandType = "databaseUpdateRequest", resourceId = id,
                              additionalResourceId = sid, error = err }, now)
end

-- Views: nil when the resource is not visible at `now`.
function M.subscription_view(acct, id, now, base)
  local s = acct.subs[id]
  local st = s and status(s, now)
  if not st then return nil end
  local n = 0
  for _, d in pairs(s.dbs) do if status(d, now) then n = n + 1 end end
  return { id = id, name = s.name, status = st, paymentMethodType = "credit-card",
           memoryStorage = "ram", numberOfDatabases = n,
           links = { { rel = "self", type = "GET", href = base .. "/subscriptions/" .. id } } }
end

function M.subscriptions_view(acct, now, base)
  local l = {}
  for _, id in ipairs(acct.sub_order) do
    l[#l + 1] = M.subscription_view(acct, id, now, base)
  end
  return l
end

function M.database_view(acct, sid, id, now, base)
  local d = db_of(acct, sid, id)
  local st = d and status(d, now)
  if not st then return nil end
  return { databaseId = id, name = d.name, protocol = "redis", provider = "AWS", region = "us-east-1",
           status = st, memoryLimitInGb = d.memory or 1,
           publicEndpoint = ("redis-%d.c1.us-east-1-1.ec2.cloud.redislabs.com:%d"):format(id, 10000 + id % 10000),
           links = { { rel = "self", type = "GET",
                       href = ("%s/subscriptions/%d/databases/%d"):format(base, sid, id) } } }
end

-- nil when the subscription is not visible; else the list of its visible databases.
function M.databases_view(acct, sid, now, base)
  local s = acct.subs[sid]
  if not (s and status(s, now)) then return nil end
  local ids = {}
  for id in pairs(s.dbs) do ids[#ids + 1] = id end
  table.sort(ids)
  local l = {}
  for _, id in ipairs(ids) do l[#l + 1] = M.database_view(acct, sid, id, now, base) end
  return l
end

return M
