-- rcsim: a local Redis Cloud API (tasks, subscriptions, databases) with fault injection.
-- One nginx worker holds all state in these module tables; `handle` is the only entry point.
-- luacheck: globals ngx
local util = require "rcsim.util"
local tasks = require "rcsim.tasks"
local res = require "rcsim.resources"
local faults = require "rcsim.faults"

local M = {}

local DEFAULTS = { step = 0.5, lag = 0.1, rate_limit = 400, rate_window = 60, latency = 0 }
local CONFIG_KEYS = { step = "number", provision = "number", lag = "number", rate_limit = "number",
                      rate_window = "number", retry_after = "number", latency = "number",
                      outcomes = "table", secret = "string" }

local accounts = {}
local next_account_id = 1000001

local function account(key)
  local a = accounts[key]
  if a then return a end
  a = { key = key, id = next_account_id, cfg = { outcomes = {} }, tasks = {}, subs = {}, sub_order = {},
        busy_until = 0, faults = {}, inflight = 0, rl_start = -math.huge, rl_count = 0,
        stats = { requests = 0, connections = 0, tls_handshakes = 0, by_route = {}, max_concurrent = 0,
                  rate_limited = 0, faults = 0 } }
  for k, v in pairs(DEFAULTS) do a.cfg[k] = v end
  next_account_id = next_account_id + 1
  accounts[key] = a
  return a
end

local function base_url()
  return ngx.var.scheme .. "://" .. (ngx.var.http_host or (ngx.var.server_addr .. ":" .. ngx.var.server_port)) .. "/v1"
end

local function read_body()
  ngx.req.read_body()
  return ngx.req.get_body_data()
end

local function json(status, v) return { status = status, body = util.encode(v) } end

local function spring(status, err, msg, extra)
  return { status = status, body = util.spring(status, err, msg, ngx.var.uri, extra) }
end

local function not_found(msg, typ) return spring(404, "Not Found", msg, typ and { type = typ } or nil) end

-- Decodes a JSON object request body, or answers 400 like Spring does.
local function body_object()
  local raw = read_body()
  local v = raw and util.decode(raw)
  if type(v) ~= "table" then
    return nil, spring(400, "Bad Request", "JSON parse error: request body is not a valid JSON object")
  end
  return v
end

local function task_answer(t, now, base) return json(202, tasks.view(t, now, base, "task")) end

-- ===== /v1 routes: each returns a response {status=, body=, headers=} =====

local function get_task(a, now, base, id)
  local t = util.is_uuid(id) and tasks.by_id[id]
  if not t or t.acct ~= a or not tasks.visible(t, now) then return { status = 404, body = "" } end
  return { status = 200, body = tasks.body(t, now, base) }
end

local function list_tasks(a, now, base)
  return json(200, { tasks = util.array(tasks.list(a, now, base)) })
end

local function post_subscription(a, now, base)
  local body, err = body_object()
  if not body then return err end
  if type(body.name) ~= "string" or body.name == "" then
    return spring(400, "Bad Request", "Subscription name is required", { type = "SUBSCRIPTION_NAME_REQUIRED" })
  end
  return task_answer(res.create_subscription(a, body, now), now, base)
end

local function list_subscriptions(a, now, base)
  return json(200, { accountId = a.id, subscriptions = util.array(res.subscriptions_view(a, now, base)) })
end

local function get_subscription(a, now, base, sid)
  local v = res.subscription_view(a, tonumber(sid), now, base)
  if not v then return not_found("Subscription " .. sid .. " not found", "SUBSCRIPTION_NOT_FOUND") end
  return json(200, v)
end

local function post_database(a, now, base, sid)
  local body, err = body_object()
  if not body then return err end
  return task_answer(res.create_database(a, tonumber(sid), body, now), now, base)
end

local function list_databases(a, now, base, sid)
  local l = res.databases_view(a, tonumber(sid), now, base)
  if not l then return not_found("Subscription " .. sid .. " not found", "SUBSCRIPTION_NOT_FOUND") end
  return json(200, { accountId = a.id, subscription = { { subscriptionId = tonumber(sid),
                     numberOfDatabases = #l, databases = util.array(l) } } })
end

local function get_database(a, now, base, sid, dbid)
  local v = res.database_view(a, tonumber(sid), tonumber(dbid), now, base)
  if not v then return not_found("Database " .. dbid .. " not found", "DATABASE_NOT_FOUND") end
  return json(200, v)
end

local ROUTES = {
  { "^/v1/tasks/?$", "/v1/tasks", { GET = list_tasks } },
  { "^/v1/tasks/([^/]+)$", "/v1/tasks/{id}", { GET = get_task } },
  { "^/v1/subscriptions/?$", "/v1/subscriptions", { GET = list_subscriptions, POST = post_subscription } },
  { "^/v1/subscriptions/(%d+)$", "/v1/subscriptions/{id}", {
      GET = get_subscription,
      PUT = function(a, now, base, sid)
        return task_answer(res.update_subscription(a, tonumber(sid), now), now, base) end,
      DELETE = function(a, now, base, sid)
        return task_answer(res.delete_subscription(a, tonumber(sid), now), now, base) end } },
  { "^/v1/subscriptions/(%d+)/databases/?$", "/v1/subscriptions/{id}/databases",
    { GET = list_databases, POST = post_database } },
  { "^/v1/subscriptions/(%d+)/databases/(%d+)$", "/v1/subscriptions/{id}/databases/{id}", {
      GET = get_database,
      PUT = function(a, now, base, sid, dbid)
        return task_answer(res.update_database(a, tonumber(sid), tonumber(dbid), now), now, base) end,
      DELETE = function(a, now, base, sid, dbid)
        return task_answer(res.delete_database(a, tonumber(sid), tonumber(dbid), now), now, base) end } },
}

-- Finds the handler for a request: returns route name and a thunk producing the response.
local function route(method, uri, a, now, base)
  for _, r in ipairs(ROUTES) do
    local c1, c2 = uri:match(r[1])
    if c1 then
      local h = r[3][method]
      local name = method .. " " .. r[2]
      if not h then
        return name, function()
          return spring(405, "Method Not Allowed", "Request method '" .. method .. "' not supported")
        end
      end
      return name, function() return h(a, now, base, c1, c2) end
    end
  end
  return method .. " other", function() return not_found("No handler found for " .. method .. " " .. uri) end
end

-- ===== sending =====

-- Sends a response; `page` asks for nginx's own HTML error page for the status.
function M.send(r)
  for k, v in pairs(r.headers or {}) do ngx.header[k] = v end
  if r.page then return ngx.exit(r.status) end
  ngx.status = r.status
  local body = r.body or ""
  if body ~= "" then ngx.header["Content-Type"] = r.content_type or "application/json" end
  ngx.header["Content-Length"] = #body
  if body ~= "" then ngx.print(body) else ngx.send_headers() end
  return ngx.exit(ngx.HTTP_OK)
end

-- Fixed window per account: the window opens at its first request and lasts rate_window seconds.
local function rate_limit(a, now)
  local cfg = a.cfg
  if now - a.rl_start >= cfg.rate_window then a.rl_start, a.rl_count = now, 0 end
  a.rl_count = a.rl_count + 1
  local remaining = math.max(0, cfg.rate_limit - a.rl_count)
  ngx.header["X-Rate-Limit-Remaining"] = remaining
  if a.rl_count <= cfg.rate_limit then return nil end
  a.stats.rate_limited = a.stats.rate_limited + 1
  local r = spring(429, "Too Many Requests", "Rate limit exceeded: " .. cfg.rate_limit .. " requests per "
                   .. cfg.rate_window .. " seconds", { type = "RATE_LIMIT_EXCEEDED" })
  if cfg.retry_after then r.headers = { ["Retry-After"] = tostring(math.ceil(cfg.retry_after)) } end
  return r
end

local function count(a, name)
  local s = a.stats
  s.requests = s.requests + 1
  s.by_route[name] = (s.by_route[name] or 0) + 1
  if ngx.var.connection_requests == "1" then
    s.connections = s.connections + 1
    if ngx.var.https == "on" and ngx.var.ssl_session_reused ~= "r" then s.tls_handshakes = s.tls_handshakes + 1 end
  end
end

local function api(uri)
  local key, secret = ngx.var.http_x_api_key, ngx.var.http_x_api_secret_key
  if not key or key == "" or not secret or secret == "" then return ngx.exit(401) end
  local a = account(key)
  local method = ngx.req.get_method()
  local now, base = ngx.now(), base_url()
  local name, run = route(method, uri, a, now, base)
  count(a, name)
  a.secret = a.secret or secret
  if a.secret ~= secret then return ngx.exit(401) end
  local limited = rate_limit(a, now)
  if limited then return M.send(limited) end
  a.inflight = a.inflight + 1
  if a.inflight > a.stats.max_concurrent then a.stats.max_concurrent = a.inflight end
  if a.cfg.latency > 0 then ngx.sleep(a.cfg.latency) end
  local f = faults.next(a, uri)
  local r
  if f then
    a.stats.faults = a.stats.faults + 1
    local function done() a.inflight = a.inflight - 1 end
    -- nil: the fault wrote (or dropped) the answer itself and has called done()
    r = faults.apply(f, { run = run, uri = uri, base = base, now = now, done = done, send = M.send })
    if not r then return end
  else
    r = run()
  end
  a.inflight = a.inflight - 1
  return M.send(r)
end

-- ===== /sim control endpoints (no auth) =====

local function config(a, cfg)
  for k, v in pairs(cfg) do
    if not CONFIG_KEYS[k] then return spring(400, "Bad Request", "unknown config key " .. k) end
    if type(v) ~= CONFIG_KEYS[k] then
      return spring(400, "Bad Request", "config " .. k .. " must be a " .. CONFIG_KEYS[k])
    end
    if type(v) == "number" and v < 0 then return spring(400, "Bad Request", "config " .. k .. " must be >= 0") end
  end
  local outs = {}
  for i, o in ipairs(cfg.outcomes or {}) do
    local ok, err = tasks.parse_outcome(o)
    if not ok then return spring(400, "Bad Request", err) end
    outs[i] = o
  end
  for k, v in pairs(cfg) do a.cfg[k] = v end
  if cfg.outcomes then a.cfg.outcomes = outs end
  if cfg.secret then a.secret = cfg.secret; a.cfg.secret = nil end
  return json(200, { key = a.key, accountId = a.id })
end

local function stats_view(a)
  local s = {}
  for k, v in pairs(a.stats) do s[k] = v end
  s.by_route = next(a.stats.by_route) and a.stats.by_route or util.array({})
  s.faults_pending = #a.faults
  s.inflight = a.inflight
  return s
end

local function control(method, uri)
  if uri == "/sim/health" then return json(200, { ok = true, accounts = (function()
    local n = 0 for _ in pairs(accounts) do n = n + 1 end return n end)() }) end
  if uri == "/sim/reset" and method == "POST" then
    accounts = {}
    tasks.reset()
    return json(200, { ok = true })
  end
  local key, rest = uri:match("^/sim/accounts/([^/]+)(.*)$")
  if not key then return not_found("no control endpoint " .. uri) end
  local a = account(key)
  if rest == "" and method == "PUT" then
    local cfg, err = body_object()
    return cfg and config(a, cfg) or err
  elseif rest == "" and method == "GET" then
    local c = {}
    for k, v in pairs(a.cfg) do c[k] = v end
    c.outcomes = util.array(c.outcomes)
    return json(200, c)
  elseif rest == "/stats" and method == "GET" then
    return json(200, stats_view(a))
  elseif rest == "/faults" and method == "POST" then
    local body, err = body_object()
    if not body then return err end
    local ok, ferr = faults.add(a, body.faults)
    if not ok then return spring(400, "Bad Request", ferr) end
    return json(200, { pending = #a.faults })
  elseif rest == "/faults" and method == "DELETE" then
    a.faults = {}
    return json(200, { pending = 0 })
  elseif rest == "/tasks" and method == "POST" then
    local body, err = body_object()
    if not body then return err end
    if body.outcome ~= nil and not tasks.parse_outcome(body.outcome) then
      return spring(400, "Bad Request", "unknown outcome " .. tostring(body.outcome))
    end
    local t = tasks.create(a, { commandType = body.commandType or "subscriptionCreateRequest",
                                outcome = body.outcome, resourceId = body.resourceId,
                                additionalResourceId = body.additionalResourceId,
                                queue = body.queue }, ngx.now())
    if body.resourcePath then t.resource_path = body.resourcePath end
    return json(200, { taskId = t.id })
  end
  return not_found("no control endpoint " .. method .. " " .. uri)
end

function M.handle()
  ngx.update_time()
  local uri = ngx.var.uri
  if uri == "/v1" or uri:sub(1, 4) == "/v1/" then return api(uri) end
  if uri:sub(1, 5) == "/sim/" then return M.send(control(ngx.req.get_method(), uri)) end
  return M.send(not_found("No handler found for " .. uri))
end

function M.init_worker()
  math.randomseed(math.floor(ngx.now() * 1000) + ngx.worker.pid())
end

return M
