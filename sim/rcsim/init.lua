-- rcsim: a local Redis Cloud API (the provisioning surface and its tasks) with fault injection.
-- One nginx worker holds all state in these module tables; `handle` is the only entry point.
-- luacheck: globals ngx
local util = require "rcsim.util"
local tasks = require "rcsim.tasks"
local engine = require "rcsim.engine"
local faults = require "rcsim.faults"
local store = require "rcsim.store"

local M = {}

local DEFAULTS = { step = 0.5, lag = 0.1, rate_limit = 400, rate_window = 60, latency = 0, initialized = 0,
                   refuse_busy = true, max_pending = 10, time_log = 0 }
-- "number|false": a number, or false to turn the rule off.
local CONFIG_KEYS = { step = "number", provision = "number", lag = "number", rate_limit = "number",
                      rate_window = "number", retry_after = "number", latency = "number", initialized = "number",
                      outcomes = "table", ends = "table", secret = "string", refuse_busy = "boolean",
                      max_pending = "number|false", time_log = "number" }
local TIME_LOG_MAX = 100000 -- the most request times an account keeps (config time_log)

local accounts = {}
local next_account_id = 1000001

local function account(key)
  local a = accounts[key]
  if a then return a end
  a = { key = key, id = next_account_id, cfg = { outcomes = {}, ends = {} }, tasks = {}, queue = {}, records = {},
        busy_until = 0, faults = {}, inflight = 0, rl_start = -math.huge, rl_count = 0,
        stats = { requests = 0, connections = 0, tls_handshakes = 0, by_route = {}, max_concurrent = 0,
                  rate_limited = 0, busy_refused = 0, faults = 0 } }
  for k, v in pairs(DEFAULTS) do a.cfg[k] = v end
  next_account_id = next_account_id + 1
  accounts[key] = a
  engine.seed(a)
  return a
end

local function base_url()
  return ngx.var.scheme .. "://" .. (ngx.var.http_host or (ngx.var.server_addr .. ":" .. ngx.var.server_port)) .. "/v1"
end

local json, spring = engine.json, engine.spring

-- ===== the task service =====

local function get_task(a, now, base, caps)
  local id = caps[1]
  local t = util.is_uuid(id) and tasks.by_id[id]
  if not t or t.acct ~= a or not tasks.visible(t, now) then return { status = 404, body = "" } end
  return { status = 200, body = tasks.body(t, now, base) }
end

local function list_tasks(a, now, base)
  return json(200, { tasks = util.array(tasks.list(a, now, base)) })
end

local TASK_ROUTES = {
  engine.compile({ "GET", "/tasks", id = "getAllTasks", run = list_tasks }, {}),
  engine.compile({ "GET", "/tasks/{taskId}", id = "getTaskById", run = get_task }, {}),
}

-- ===== sending =====

-- nginx's own error page, for a status it has none for.
local function page(status)
  local line = status .. " " .. util.reason(status)
  return "<html>\r\n<head><title>" .. line .. "</title></head>\r\n<body>\r\n<center><h1>" .. line ..
    "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
end

-- A status nginx writes no reason phrase for goes out whole on the raw socket, then the
-- connection closes.
local function send_raw(r)
  local body = r.body or ""
  local ctype = r.content_type or "application/json"
  if r.page then body, ctype = page(r.status), "text/html" end
  local h = { ("HTTP/1.1 %d %s"):format(r.status, util.reason(r.status)), "Server: nginx",
              "Date: " .. ngx.http_time(ngx.time()), "Connection: close", "Content-Length: " .. #body }
  if body ~= "" then h[#h + 1] = "Content-Type: " .. ctype end
  local rl = ngx.header["X-Rate-Limit-Remaining"]
  if rl then h[#h + 1] = "X-Rate-Limit-Remaining: " .. tostring(rl) end
  for k, v in pairs(r.headers or {}) do h[#h + 1] = k .. ": " .. tostring(v) end
  ngx.req.read_body() -- the raw socket needs the request body consumed first
  local sock = assert(ngx.req.socket(true))
  sock:send(table.concat(h, "\r\n") .. "\r\n\r\n" .. body)
  return ngx.exit(444)
end

-- Sends a response; `page` asks for nginx's own HTML error page for the status.
function M.send(r)
  if not util.nginx_phrase(r.status) then return send_raw(r) end
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
  local r = spring(429, "Rate limit exceeded: " .. cfg.rate_limit .. " requests per " .. cfg.rate_window .. " seconds")
  if cfg.retry_after then r.headers = { ["Retry-After"] = tostring(math.ceil(cfg.retry_after)) } end
  return r
end

-- The arrival times of the last cfg.time_log requests (a ring), for the benchmarks' worst windows.
local function log_time(a, now)
  local n = math.min(a.cfg.time_log, TIME_LOG_MAX)
  if n < 1 then return end
  local log = a.times
  if not log or log.size ~= n then log = { size = n, head = 0, count = 0 }; a.times = log end
  log.head = log.head % n + 1
  log[log.head] = now
  log.count = math.min(log.count + 1, n)
end

local function times_view(a)
  local log, out = a.times, {}
  if not log then return util.array(out) end
  for i = 1, log.count do out[i] = log[(log.head - log.count + i - 1) % log.size + 1] end
  return util.array(out)
end

local function count(a, name, now)
  local s = a.stats
  log_time(a, now)
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
  local name, run = engine.route(method, uri, a, now, base, TASK_ROUTES)
  count(a, name, now)
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

-- Config `ends`: {kind = {word, ...}}, each word one the kind has; returns a copy or nil, error.
local function parse_ends(v)
  local out = {}
  for kind, words in pairs(v) do
    local w = engine.words(kind)
    if not w then return nil, "config ends: " .. tostring(kind) .. " is not a kind the API creates" end
    if type(words) ~= "table" then return nil, "config ends." .. kind .. " must be a list of status words" end
    local known = {}
    for _, x in ipairs(w.all) do known[x] = true end
    out[kind] = {}
    for i, word in ipairs(words) do
      if not known[word] then
        return nil, "config ends." .. kind .. ": " .. tostring(word) .. " is not one of " .. table.concat(w.all, ", ")
      end
      out[kind][i] = word
    end
  end
  return out
end

local function config(a, cfg)
  for k, v in pairs(cfg) do
    local want = CONFIG_KEYS[k]
    if not want then return spring(400, "unknown config key " .. k) end
    local ok = type(v) == want or (want == "number|false" and (type(v) == "number" or v == false))
    if not ok then return spring(400, "config " .. k .. " must be a " .. want) end
    if type(v) == "number" and v < 0 then return spring(400, "config " .. k .. " must be >= 0") end
  end
  local outs = {}
  for i, o in ipairs(cfg.outcomes or {}) do
    local ok, err = tasks.parse_outcome(o)
    if not ok then return spring(400, err) end
    outs[i] = o
  end
  local ends, err = parse_ends(cfg.ends or {})
  if not ends then return spring(400, err) end
  for k, v in pairs(cfg) do a.cfg[k] = v end
  if cfg.outcomes then a.cfg.outcomes = outs end
  if cfg.ends then
    for kind, words in pairs(ends) do a.cfg.ends[kind] = words end
  end
  if cfg.secret then a.secret = cfg.secret; a.cfg.secret = nil end
  return json(200, { key = a.key, accountId = a.id })
end

-- Per kind: the records that exist at `now` (visible and not gone, seeded ones included) and
-- those a create operation made whose task has completed by `now`.
local function census(a, now)
  local resources, created = {}, {}
  for kname, set in pairs(a.records) do
    for _, r in ipairs(set.list) do
      if store.status(r, now) and not (r.gone and now >= r.gone) then resources[kname] = (resources[kname] or 0) + 1 end
      if r.born and now >= r.appear then created[kname] = (created[kname] or 0) + 1 end
    end
  end
  return resources, created
end

-- Changes (queued tasks) that have ended in SUBSCRIPTION_NOT_ACTIVE by `now`.
local function not_active(a, now)
  local n = 0
  for _, t in ipairs(a.queue) do
    if t.error and t.error.type == "SUBSCRIPTION_NOT_ACTIVE" and tasks.phase(t, now) == "end" then n = n + 1 end
  end
  return n
end

local function stats_view(a)
  local s, now = {}, ngx.now()
  for k, v in pairs(a.stats) do s[k] = v end
  s.by_route = next(a.stats.by_route) and a.stats.by_route or util.array({})
  s.faults_pending = #a.faults
  s.inflight = a.inflight
  if a.cfg.time_log >= 1 then s.times = times_view(a) end
  s.waiting = tasks.waiting(a, now, math.huge)
  s.not_active = not_active(a, now)
  s.resources, s.created = census(a, now)
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
  if uri == "/sim/operations" then return json(200, engine.operations()) end
  local key, rest = uri:match("^/sim/accounts/([^/]+)(.*)$")
  if not key then return spring(404, "no control endpoint " .. uri) end
  local a = account(key)
  if rest == "" and method == "PUT" then
    local cfg, err = engine.body_object()
    return cfg and config(a, cfg) or err
  elseif rest == "" and method == "GET" then
    local c = util.copy(a.cfg)
    c.outcomes = util.array(c.outcomes)
    c.ends = {}
    for kind, words in pairs(a.cfg.ends) do c.ends[kind] = util.array(words) end
    return json(200, c)
  elseif rest == "/stats" and method == "GET" then
    return json(200, stats_view(a))
  elseif rest == "/faults" and method == "POST" then
    local body, err = engine.body_object()
    if not body then return err end
    local ok, ferr = faults.add(a, body.faults)
    if not ok then return spring(400, ferr) end
    return json(200, { pending = #a.faults })
  elseif rest == "/faults" and method == "DELETE" then
    a.faults = {}
    return json(200, { pending = 0 })
  elseif rest == "/tasks" and method == "POST" then
    local body, err = engine.body_object()
    if not body then return err end
    if body.outcome ~= nil and not tasks.parse_outcome(body.outcome) then
      return spring(400, "unknown outcome " .. tostring(body.outcome))
    end
    local t = tasks.create(a, { commandType = body.commandType or "subscriptionCreateRequest", outcome = body.outcome,
      response = { resourceId = body.resourceId, additionalResourceId = body.additionalResourceId },
      link = body.resourcePath and { path = body.resourcePath } or nil, queue = body.queue }, ngx.now())
    return json(200, { taskId = t.id })
  end
  return spring(404, "no control endpoint " .. method .. " " .. uri)
end

function M.handle()
  ngx.update_time()
  local uri = ngx.var.uri
  if uri == "/v1" or uri:sub(1, 4) == "/v1/" then return api(uri) end
  if uri:sub(1, 5) == "/sim/" then return M.send(control(ngx.req.get_method(), uri)) end
  return M.send(spring(404))
end

function M.init_worker()
  math.randomseed(math.floor(ngx.now() * 1000) + ngx.worker.pid())
end

return M
