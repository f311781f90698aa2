-- Pieces the families share: the database kinds' words, database views, backups and imports,
-- database tags and traffic resume (Pro and Essentials have the same ones), A-A checks.
-- luacheck: globals ngx
local util = require "rcsim.util"
local store = require "rcsim.store"

local M = {}

M.json = function(status, v) return { status = status, body = util.encode(v) } end

local function link(base, path, rel, method)
  return { rel = rel or "self", type = method or "GET", href = base .. path }
end
M.link = link

-- The Pro database status set: provisioning reads draft, then pending.
M.DATABASE_WORDS = { pending = { "draft", "pending" }, ready = "active", changing = "active-change-pending",
  deleting = "deleting", failed = { "error" },
  all = { "draft", "pending", "active", "active-change-draft", "active-change-pending", "rcp-draft",
          "rcp-change-pending", "rcp-active-change-draft", "proxy-policy-change-draft", "proxy-policy-change-pending",
          "dynamic-endpoints-creation-pending", "active-upgrade-pending", "error", "deleting" } }

-- Import and backup runs: children of a database, started by their POST, read by their status GET.
M.IMPORT_WORDS = { pending = { "importing" }, ready = "success", failed = { "failed" },
                   all = { "importing", "success", "failed" } }
M.BACKUP_WORDS = { pending = { "in-progress" }, ready = "success", failed = { "failed" },
                   all = { "in-progress", "success", "failed" } }

-- The newest run of `kindname` under database `db` visible at `at`.
local function latest(a, kindname, db, at)
  local l = store.children(a, kindname, db, at)
  return l[#l]
end

function M.import_snapshot(ctx, at)
  local run = latest(ctx.a, "import", ctx.target, at)
  if not run then return {} end
  local st = store.status(run, at)
  if st ~= "failed" then return { status = st } end
  return { status = st, failureReason = "file-corrupted", lastImportTime = util.stamp(run.appear),
           failureReasonParams = { { key = "bytes_configured_bdb_limit", value = "1073741824" },
                                   { key = "bytes_of_expected_dataset", value = "2147483648" } } }
end

function M.backup_snapshot(ctx, at)
  local run = latest(ctx.a, "backup", ctx.target, at)
  if not run then return {} end
  return { status = store.status(run, at) }
end

-- The subscription must be active when a backup or an import (or their status) is processed.
local function sub_active(ctx, at)
  local s = ctx.of.subscription or ctx.of.fixed_subscription
  if not store.ready(s, at) then return "SUBSCRIPTION_NOT_ACTIVE" end
end
M.sub_active = sub_active

-- The busy rules of config refuse_busy (a route's `busy`). Creates and updates need the
-- subscription active; deletes only need it out of transition, so that one left in error or
-- encryption_key_pending can still be emptied and removed.
M.busy_active = sub_active

function M.busy_settled(ctx, at)
  local s = ctx.of.subscription or ctx.of.fixed_subscription
  local st, w = store.status(s, at), s.kind.words
  if st == w.changing then return "SUBSCRIPTION_NOT_ACTIVE" end
  for _, p in ipairs(w.pending) do
    if st == p then return "SUBSCRIPTION_NOT_ACTIVE" end
  end
end

function M.check_backup(ctx, at)
  local e = sub_active(ctx, at)
  if e then return e end
  local f = ctx.target.fields
  if not (ctx.body.adhocBackupPath or f.periodicBackupPath or (type(f.remoteBackup) == "table"
    and f.remoteBackup.active)) then
    return "DATABASE_BACKUP_DISABLED"
  end
end

function M.check_import(ctx, at)
  local e = sub_active(ctx, at)
  if e then return e end
  local uris = ctx.body.importFromUri
  if type(uris) ~= "table" or uris[1] == nil then return "DATABASE_IMPORT_URI_NOT_PROVIDED" end
end

-- An action's run starts when its task ends and lasts `provision` seconds.
function M.start_run(kindname)
  return function(ctx, t)
    local engine = require "rcsim.engine"
    local kind = engine.kinds[kindname]
    local id = store.next_id(kindname, 1)
    store.add(ctx.a, kind, id, ctx.target, t.t_end, engine.provision(ctx.a), engine.take_end(ctx.a, kindname), {})
  end
end

-- ===== database views =====

function M.database_view(r, ctx, prefix)
  local f, now, sub = r.fields, ctx.now, r.parent
  local port = 10000 + r.id % 10000
  local host = ("redis-%d.c%d.us-east-1-1.ec2.cloud.redislabs.com"):format(r.id, sub.id % 1000)
  return {
    databaseId = r.id, name = f.name, protocol = f.protocol or "redis", provider = "AWS", region = "us-east-1",
    redisVersion = f.redisVersion or "7.2", respVersion = f.respVersion or "resp3", status = store.status(r, now),
    memoryLimitInGb = f.memoryLimitInGb or f.datasetSizeInGb or 1, memoryUsedInMb = 1,
    dataPersistence = f.dataPersistence or "none", replication = f.replication ~= false,
    dataEvictionPolicy = f.dataEvictionPolicy or "volatile-lru",
    activatedOn = util.stamp(r.appear),
    publicEndpoint = ("%s:%d"):format(host, port), privateEndpoint = ("%s:%d"):format(host:gsub("^redis",
      "redis-internal"), port),
    links = { link(ctx.base, ("%s/%d/databases/%d"):format(prefix, sub.id, r.id)) },
  }
end

-- {accountId, subscription: [{subscriptionId, numberOfDatabases, databases}]}, as both families list them.
function M.databases_list(ctx, dbkind, prefix)
  local sub = ctx.target
  local l = {}
  for _, d in ipairs(store.children(ctx.a, dbkind, sub, ctx.now)) do l[#l + 1] = M.database_view(d, ctx, prefix) end
  return { accountId = ctx.a.id, subscription = { { subscriptionId = sub.id, numberOfDatabases = #l,
           databases = util.array(l) } },
           links = { link(ctx.base, ("%s/%d/databases"):format(prefix, sub.id)) } }
end

-- ===== database tags: plain answers, no task =====

local function tag_body(tag) return { key = tag.key, value = tag.value, createdAt = tag.createdAt,
                                      updatedAt = tag.updatedAt, links = util.array({}) } end

local function tags_path(ctx)
  local db = ctx.target
  return ctx.route.path:gsub("{subscriptionId}", tostring(db.parent.id)):gsub("{databaseId}", tostring(db.id))
    :gsub("/{tagKey}$", "")
end

local function stamp() return util.stamp(ngx.now()) end

local function tags_answer(ctx, method)
  local db = ctx.target
  local l = {}
  for _, tag in ipairs(db.fields.tags or {}) do l[#l + 1] = tag_body(tag) end
  local v = { accountId = ctx.a.id, links = { link(ctx.base, tags_path(ctx), "self", method) } }
  if db.fields.tags then v.tags = util.array(l) end
  return M.json(200, v)
end

function M.get_tags(ctx) return tags_answer(ctx, "GET") end

local function bad_tags(list)
  if type(list) ~= "table" then return true end
  for _, t in ipairs(list) do
    if type(t) ~= "table" or type(t.key) ~= "string" or type(t.value) ~= "string" then return true end
  end
end

function M.put_tags(ctx)
  if bad_tags(ctx.body.tags) then return nil, "tags must be a list of {key, value} strings" end
  local now = stamp()
  local tags = {}
  for i, t in ipairs(ctx.body.tags) do tags[i] = { key = t.key, value = t.value, createdAt = now, updatedAt = now } end
  ctx.target.fields.tags = tags
  return tags_answer(ctx, "PUT")
end

local function find_tag(db, key)
  for i, t in ipairs(db.fields.tags or {}) do
    if t.key == key then return t, i end
  end
end

function M.post_tag(ctx)
  local b = ctx.body
  if bad_tags({ b }) then return nil, "a tag needs a key and a value" end
  local db = ctx.target
  if find_tag(db, b.key) then return nil, "Tag " .. b.key .. " already exists", 409 end
  local now = stamp()
  local tag = { key = b.key, value = b.value, createdAt = now, updatedAt = now }
  db.fields.tags = db.fields.tags or {}
  table.insert(db.fields.tags, tag)
  return M.json(200, tag_body(tag))
end

function M.put_tag(ctx)
  local tag = find_tag(ctx.target, ctx.raw[3])
  if not tag then return nil, nil, 404 end
  if type(ctx.body.value) ~= "string" then return nil, "a tag needs a value" end
  tag.value, tag.updatedAt = ctx.body.value, stamp()
  return M.json(200, tag_body(tag))
end

function M.delete_tag(ctx)
  local tag, i = find_tag(ctx.target, ctx.raw[3])
  if not tag then return nil, nil, 404 end
  table.remove(ctx.target.fields.tags, i)
  return M.json(200, {})
end

function M.resume_traffic() return { status = 204, body = "" } end

-- The tag and traffic routes of a database path prefix (Pro or Essentials), with their operationIds.
function M.database_plain_routes(prefix, suffix)
  local db = prefix .. "/{subscriptionId}/databases/{databaseId}"
  local function plain(method, path, id, f)
    return { method, path, id = id .. suffix, op = "plain", handle = function(ctx)
      local r, msg, status = f(ctx)
      if r then return r end
      return { status = status or 400, body = util.spring(status or 400, msg, ngx.var.uri) }
    end }
  end
  return {
    plain("GET", db .. "/tags", "getTags", M.get_tags),
    plain("PUT", db .. "/tags", "updateTags", M.put_tags),
    plain("POST", db .. "/tags", "createTag", M.post_tag),
    plain("PUT", db .. "/tags/{tagKey}", "updateTag", M.put_tag),
    plain("DELETE", db .. "/tags/{tagKey}", "deleteTag", M.delete_tag),
    plain("POST", db .. "/traffic/resume", "resumeBdbTraffic", M.resume_traffic),
  }
end

-- A list GET of an account-level kind: {accountId, <field>: [...], links}.
function M.lister(kname, field, view, path)
  return function(ctx)
    local l = {}
    for _, r in ipairs(store.children(ctx.a, kname, nil, ctx.now)) do l[#l + 1] = view(r, ctx) end
    return { accountId = ctx.a.id, [field] = util.array(l), links = { link(ctx.base, path) } }
  end
end

-- ===== Active-Active =====

function M.active_active(sub) return sub.fields.deploymentType == "active-active" end

-- A check refusing the route on a subscription of the wrong deployment type.
function M.needs(aa, code)
  return function(ctx)
    local s = ctx.of.subscription
    if s and M.active_active(s) ~= aa then return code end
  end
end

-- Chains checks: the first refusal wins.
function M.all(...)
  local fs = { ... }
  return function(ctx, at)
    for _, f in ipairs(fs) do
      local e, info = f(ctx, at)
      if e then return e, info end
    end
  end
end

return M
