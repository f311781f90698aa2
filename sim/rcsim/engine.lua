-- The generic API engine: the families (sim/rcsim/families/*.lua) declare resource kinds and
-- routes; this file turns a request into a route, resolves the path's records, and runs the one
-- generic handler of the route's `op`:
--   create / update / delete / action  a change: a queued task, its effects scheduled on records
--   status                             a GET answered with a task (not queued), read when it ends
--   read / list / plain                a plain answer (plain: a mutation that answers no task)
-- luacheck: globals ngx
local util = require "rcsim.util"
local tasks = require "rcsim.tasks"
local store = require "rcsim.store"
local errors = require "rcsim.errors"

local M = {}

M.kinds = {}  -- name -> kind: words, ids, missing error, view
M.routes = {} -- compiled routes, in declaration order

local FAMILIES = { "pro", "fixed", "acl", "account", "network", "private" }

-- The kind a path parameter names, unless a family or route says otherwise.
local PARAM_KIND = {
  subscriptionId = "subscription", databaseId = "database", regionId = "region",
  pscServiceId = "psc_service", endpointId = "psc_endpoint", TgwId = "tgw", tgwInvitationId = "tgw_invitation",
  peeringId = "peering", aclRedisRuleId = "acl_rule", aclRoleId = "acl_role", aclUserId = "acl_user",
  cloudAccountId = "cloud_account", userId = "account_user", costReportId = "cost_report",
}
local STRING_PARAMS = { costReportId = true, taskId = true, tagKey = true }

-- Routes are written { METHOD, path, id = operationId, op = ..., ... }.
local function compile(route, family)
  route.method, route.path = route.method or route[1], route.path or route[2]
  local names = {}
  local pat = route.path:gsub("[%-%.]", "%%%0"):gsub("{(%w+)}", function(n)
    names[#names + 1] = n
    return STRING_PARAMS[n] and "([^/]+)" or "(%d+)"
  end)
  route.pattern = "^/v1" .. pat .. "/?$"
  route.names = names
  route.stat = route.method .. " /v1" .. route.path:gsub("{%w+}", "{id}")
  route.kinds = {}
  for _, n in ipairs(names) do
    route.kinds[n] = (route.params and route.params[n]) or (family.params and family.params[n]) or PARAM_KIND[n]
  end
  for _, k in ipairs({ "sub_missing", "title" }) do
    if route[k] == nil then route[k] = family[k] end
  end
  return route
end

M.compile = compile

local seeds = {}

for _, name in ipairs(FAMILIES) do
  local f = require("rcsim.families." .. name)
  if f.seed then seeds[#seeds + 1] = f.seed end
  for kname, kind in pairs(f.kinds or {}) do
    kind.name = kname
    M.kinds[kname] = kind
  end
  for _, r in ipairs(f.routes) do M.routes[#M.routes + 1] = compile(r, f) end
end

-- What every new account starts with (default ACL rules, its users).
function M.seed(a)
  for _, f in ipairs(seeds) do f(a) end
end

local function provision(a) return a.cfg.provision or a.cfg.step end
M.provision = provision

-- The status the next created record of `kindname` ends in: config `ends`, else its ready word.
function M.take_end(a, kindname)
  local l = a.cfg.ends and a.cfg.ends[kindname]
  local w = l and table.remove(l, 1)
  return w or M.kinds[kindname].words.ready
end

-- ===== answers =====

local function json(status, v) return { status = status, body = util.encode(v) } end
M.json = json

local function spring(status, message) return { status = status, body = util.spring(status, message, ngx.var.uri) } end
M.spring = spring

local function missing_answer(style, kind, raw)
  if style == "spring" then return spring(404) end
  if style == "message" then return spring(404, kind.label .. " " .. tostring(raw) .. " not found") end
  return { status = 404, body = "" }
end

-- ===== context: the records a path names =====

local function find(a, kindname, parent, id)
  local s = a.records[kindname]
  if not s then return nil end
  if not parent then return s.by_id[id] end
  for _, r in ipairs(s.list) do
    if r.parent == parent and r.id == id then return r end
  end
end

-- Fills ctx.rec (by parameter) and ctx.of (by kind) with the records the path names, and
-- ctx.target (the record the route acts on, or the parent a create adds to). Returns the first
-- parameter whose record is not there (or the route's singleton kind when none exists).
local function resolve(ctx)
  local route, a, now = ctx.route, ctx.a, ctx.now
  local prev
  for i, n in ipairs(route.names) do
    local kname = route.kinds[n]
    local raw = ctx.raw[i]
    if kname then
      local r = find(a, kname, prev, STRING_PARAMS[n] and raw or tonumber(raw))
      if not r or not store.status(r, now) then
        return { param = n, kind = M.kinds[kname], raw = raw }
      end
      ctx.rec[n], ctx.of[kname], prev = r, r, r
    end
  end
  ctx.parent = prev
  if route.singleton then
    local l = store.children(a, route.singleton, prev, now)
    ctx.target = l[#l]
    if not ctx.target and route.op ~= "create" and route.op ~= "status" then
      return { kind = M.kinds[route.singleton], singleton = true }
    end
    if ctx.target then ctx.of[route.singleton] = ctx.target end
  else
    ctx.target = prev
  end
  return nil
end

-- The subscription (Pro or Essentials) a context is about.
local function sub_of(ctx) return ctx.of.subscription or ctx.of.fixed_subscription end

local PICK = {
  self = function(_, rec) return rec and rec.id end,
  sub = function(ctx) local s = sub_of(ctx) return s and s.id end,
  db = function(ctx) local d = ctx.of.database or ctx.of.fixed_database return d and d.id end,
  endpoint = function(ctx) return ctx.of.psc_endpoint and ctx.of.psc_endpoint.id end,
  tgw = function(ctx) return ctx.of.tgw and ctx.of.tgw.id end,
  invitation = function(ctx) return ctx.of.tgw_invitation and ctx.of.tgw_invitation.id end,
}

local function expand(template, ctx, rec)
  return (template:gsub("{(%w+)}", function(k) return tostring(PICK[k == "id" and "self" or k](ctx, rec)) end))
end

-- What a completed task carries, per the route's `done`: rid / aid name resourceId and
-- additionalResourceId, link the resource link (a path template) and title, none = no response.
local function finish(ctx, t, rec, resource)
  local d = ctx.route.done or {}
  if d.none then
    t.response = nil
  else
    t.response = { resourceId = d.rid and PICK[d.rid](ctx, rec), additionalResourceId = d.aid and PICK[d.aid](ctx, rec),
                   resource = resource or (d.resource and d.resource(ctx, rec)) }
  end
  if d.link then t.link = { path = expand(d.link, ctx, rec), title = d.title } end
end

-- ===== the generic handlers of changes =====

-- A parent that reads a word while its child changes (a subscription while a database does).
local function touch_parent(rec, from, to)
  local word = rec.kind.touches
  local p = word and rec.parent
  if p then store.change(p, from, to, word) end
end

local EFFECT = {}

function EFFECT.create(ctx, t)
  local route, a = ctx.route, ctx.a
  local kind = M.kinds[route.kind]
  local id = kind.new_id and kind.new_id(ctx) or store.next_id(kind.ids or kind.name, kind.first or 1)
  local fields = route.fields and route.fields(ctx) or util.copy(ctx.body)
  local rec = store.add(a, kind, id, ctx.parent, t.t_end, provision(a), M.take_end(a, kind.name), fields)
  rec.born = t.t_progress
  touch_parent(rec, t.t_progress, rec.ready)
  if kind.on_create then kind.on_create(ctx, rec, t) end
  return rec
end

function EFFECT.update(ctx, t)
  local rec = ctx.target
  local to = t.t_end + provision(ctx.a)
  store.change(rec, t.t_progress, to, ctx.route.changing or rec.kind.words.changing)
  for k, v in pairs(ctx.body) do rec.fields[k] = v end
  touch_parent(rec, t.t_progress, to)
  return rec
end

function EFFECT.delete(ctx, t)
  local rec = ctx.target
  store.remove(rec, t.t_progress, t.t_end + provision(ctx.a))
  touch_parent(rec, t.t_progress, rec.gone)
  return rec
end

function EFFECT.action(ctx) return ctx.target end

-- Every record the path names must still be there when processing starts; then, unless config
-- refuse_busy is off, the route's busy rule (its subscription must be settled); then the route's
-- own refusals (check returns an error type and an additionalInfo).
local function refusal(ctx, at)
  for _, n in ipairs(ctx.route.names) do
    local r = ctx.rec[n]
    if r and not store.alive(r, at) then return r.kind.missing end
  end
  local tg = ctx.target
  if ctx.route.singleton and ctx.route.op ~= "create" and tg and not store.alive(tg, at) then return tg.kind.missing end
  if ctx.route.busy and ctx.a.cfg.refuse_busy then
    local e = ctx.route.busy(ctx, at)
    if e then return e end
  end
  if ctx.route.check then return ctx.route.check(ctx, at) end
end

local function task_answer(ctx, t, status)
  return { status = status or ctx.route.http, body = tasks.body(t, ctx.now, ctx.base, "task") }
end

local function new_task(ctx)
  local route = ctx.route
  return tasks.create(ctx.a, { commandType = route.command, queue = route.op ~= "status",
                               title = route.title and "getTaskStatusUpdates" or nil }, ctx.now)
end

-- Families with sub_missing = "spring" answer a Spring 404 (no task) when the subscription or
-- region of the path does not exist; a missing resource inside one gets a failing task.
local function spring_missing(route, missing)
  local k = missing and missing.kind.name
  return route.sub_missing == "spring" and (k == "subscription" or k == "region")
end

local BUSY = "Too many resources are concurrently created / updated / deleted in the account. " ..
  "Please re-submit API requests after resource changes are completed"

-- Config max_pending: a change arriving while that many wait in received gets a 429 and no task.
local function too_busy(ctx)
  local a, max = ctx.a, ctx.a.cfg.max_pending
  if not max or ctx.route.op == "status" then return nil end
  if tasks.waiting(a, ctx.now, max) < max then return nil end
  a.stats.busy_refused = a.stats.busy_refused + 1
  return spring(429, BUSY)
end

-- The task of a change or of a status GET; nil and the answer when the path's resource is
-- missing (a Spring 404, or a task failing with the missing kind's error) or the account has
-- too many changes waiting (a 429).
local function begin(ctx, missing)
  if spring_missing(ctx.route, missing) then return nil, spring(404) end
  local busy = too_busy(ctx)
  if busy then return nil, busy end
  local t = new_task(ctx)
  if missing then
    tasks.fail(t, errors.new(missing.kind.missing))
    return nil, task_answer(ctx, t, ctx.route.missing_http)
  end
  return t
end

local function change(ctx, missing)
  local route = ctx.route
  local t, answer = begin(ctx, missing)
  if not t then return answer end
  local typ, info = refusal(ctx, t.t_progress)
  if typ then tasks.fail(t, errors.new(typ, info)) end
  if t.outcome.kind == "completed" then
    local rec = EFFECT[route.op](ctx, t)
    if route.apply then route.apply(ctx, t, rec) end
    finish(ctx, t, rec)
  end
  return task_answer(ctx, t)
end

-- A GET answered with a task: not a change, so not queued; its answer is the state read when
-- the task ends (route.snapshot returns the resource, or nil and an error type).
local function status_get(ctx, missing)
  local t, answer = begin(ctx, missing)
  if not t then return answer end
  t.resolve = function(at)
    local typ, info = refusal(ctx, at)
    if typ then return { error = errors.new(typ, info) } end
    local res, err = ctx.route.snapshot(ctx, at)
    if err then return { error = errors.new(err) } end
    finish(ctx, t, ctx.target, res)
    return { response = t.response, link = t.link }
  end
  return task_answer(ctx, t)
end

local HANDLE = {
  create = change, update = change, delete = change, action = change, status = status_get,
}

function HANDLE.read(ctx, missing)
  if missing then return missing_answer(ctx.route.missing, missing.kind, missing.raw) end
  return json(200, ctx.route.view and ctx.route.view(ctx) or ctx.target.kind.view(ctx.target, ctx))
end

function HANDLE.list(ctx, missing)
  if missing then return missing_answer(ctx.route.missing, missing.kind, missing.raw) end
  return json(200, ctx.route.view(ctx))
end

function HANDLE.plain(ctx, missing)
  if missing then return missing_answer(ctx.route.missing, missing.kind, missing.raw) end
  return ctx.route.handle(ctx)
end

-- ===== routing =====

-- Decodes a JSON object request body: {} when there is none, nil and a 400 when it is not one.
local function body_object()
  ngx.req.read_body()
  local raw = ngx.req.get_body_data()
  if not raw or not raw:find("%S") then return {} end
  local v = util.decode(raw)
  if type(v) ~= "table" or v[1] ~= nil then
    return nil, spring(400, "JSON parse error: request body is not a valid JSON object")
  end
  return v
end
M.body_object = body_object

-- The route for a request: its stats name and a thunk producing the response. `special` holds
-- routes served outside the families (the task service), tried first.
function M.route(method, uri, a, now, base, special)
  local matched
  for _, list in ipairs({ special, M.routes }) do
    for _, r in ipairs(list) do
      local caps = { uri:match(r.pattern) }
      if caps[1] then
        if r.method == method then
          return r.stat, function()
            if r.run then return r.run(a, now, base, caps) end
            local ctx = { a = a, now = now, base = base, route = r, raw = caps, rec = {}, of = {},
                          query = ngx.req.get_uri_args() }
            if r.op ~= "read" and r.op ~= "list" then
              local body, err = body_object()
              if not body then return err end
              ctx.body = body
            end
            if r.validate then
              local msg = r.validate(ctx)
              if msg then return spring(400, msg) end
            end
            local missing = resolve(ctx)
            return HANDLE[r.op](ctx, missing)
          end
        end
        matched = matched or r
      end
    end
  end
  if matched then
    return method .. matched.stat:match("^%S+( .*)$"), function()
      return spring(405, "Request method '" .. method .. "' not supported")
    end
  end
  return method .. " other", function() return spring(404) end
end

-- The operations served, for GET /sim/operations: what a replay needs to drive each one.
function M.operations()
  local l = {}
  for _, r in ipairs(M.routes) do
    local k = r.singleton or r.kind
    l[#l + 1] = { method = r.method, path = "/v1" .. r.path, operationId = r.id, op = r.op, http = r.http,
                  commandType = r.command, kind = k, singleton = r.singleton ~= nil, reports = r.reports }
  end
  return l
end

-- The status words of a kind config `ends` applies to (one the API creates), for validation.
function M.words(kindname)
  local k = M.kinds[kindname]
  return k and not k.no_ends and k.words or nil
end

return M
