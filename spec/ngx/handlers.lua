-- Handlers of the test nginx (spec/ngx/harness.lua generates its config). They run inside nginx:
-- each reads its test's account from request headers (never from the URL: nginx logs URLs) and
-- answers JSON that the specs read with LuaSocket.
local cjson = require "cjson.safe"
local rctasks = require "rctasks"
local background = require "rctasks.background"

local M = {}

local clients = {} -- per worker: one client per account and setup, as a real app would keep

local function header(name) return ngx.var["http_" .. name:gsub("-", "_")] end

local function out(v, status)
  ngx.status = status or 200
  local body = cjson.encode(v)
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body -- the specs' LuaSocket client does not de-chunk
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

local function err_view(err)
  if type(err) ~= "table" then return { ok = false, message = tostring(err) } end
  return { ok = false, kind = err.kind, code = err.code, status = err.status, message = err.message,
           line = tostring(err), unsent = err.unsent, retryable = err.retryable }
end

-- The client for this request's account. Headers: x-test-key, x-test-secret, x-test-url and
-- optionally x-test-transport (ngx|curl), x-test-ca, x-test-limit ("N/W": shared limiter),
-- x-test-local-limit ("N/W": the per-worker limiter), x-test-retry ("off").
local function client()
  local key, secret, url = header("x-test-key"), header("x-test-secret"), header("x-test-url")
  local transport, ca = header("x-test-transport"), header("x-test-ca")
  local shared_limit, local_limit = header("x-test-limit"), header("x-test-local-limit")
  local retry_off = header("x-test-retry") == "off"
  local id = table.concat({ key, url, transport or "", ca or "", shared_limit or "", local_limit or "",
                            tostring(retry_off) }, "|")
  local c = clients[id]
  if c then return c end
  local opts = { api_key = key, secret_key = secret, base_url = url, timeout = 10, limiter = false }
  if transport == "curl" then
    opts.transport = "curl"
    opts.ca_file = ca
  elseif ca then
    -- the CA decides the trust store of this location; ca_file keeps the pools apart
    opts.transport = require("rctasks.transport.ngx").new{ ca_file = ca, timeout = 10 }
  end
  if retry_off then opts.retry = false end
  if shared_limit then
    local n, w = shared_limit:match("^(%d+)/([%d.]+)$")
    opts.limiter = rctasks.limiter.shared{ dict = "rctasks", key = key, limit = tonumber(n), window = tonumber(w),
                                  margin = 0.25 }
  elseif local_limit then
    local n, w = local_limit:match("^(%d+)/([%d.]+)$")
    opts.limiter = rctasks.limiter.new{ limit = tonumber(n), window = tonumber(w) }
  end
  c = rctasks.new(opts)
  clients[id] = c
  return c
end

local function task_view(t)
  return { ok = true, id = t.taskId, status = t.status, resource_id = t:resource_id(),
           self = t:link("self"), worker = ngx.worker.id(), at = ngx.now() }
end

function M.get()
  local t, err = client():get(ngx.var.arg_id)
  if not t then return out(err_view(err)) end
  return out(task_view(t))
end

-- n gets in a row, for keep-alive and limiter tests: answers how many worked and the worker
function M.gets()
  local c, n, ok, fails = client(), tonumber(ngx.var.arg_n) or 1, 0, {}
  for _ = 1, n do
    local t, err = c:get(ngx.var.arg_id)
    if t then ok = ok + 1 else fails[#fails + 1] = tostring(err) end
  end
  return out({ ok = ok, failures = fails, worker = ngx.worker.id() })
end

function M.list()
  local l, err = client():list()
  if not l then return out(err_view(err)) end
  local ids = {}
  for i, t in ipairs(l) do ids[i] = t.taskId end
  return out({ ok = true, count = #l, ids = ids })
end

function M.wait()
  local t, err = client():wait(ngx.var.arg_id, { timeout = tonumber(ngx.var.arg_timeout) or 30,
    interval = tonumber(ngx.var.arg_interval) or 0.05, max_interval = tonumber(ngx.var.arg_interval) or 0.2 })
  if not t then return out(err_view(err)) end
  return out(task_view(t))
end

function M.spawn()
  local ok, note = background.spawn_wait(client(), ngx.var.arg_id, { wait = { interval = 0.05, max_interval = 0.2,
    timeout = tonumber(ngx.var.arg_timeout) or 30 } })
  return out({ ok = ok, note = note, worker = ngx.worker.id() }, ok and 202 or 500)
end

function M.result()
  local r = background.result(ngx.var.arg_id)
  return out({ found = r ~= nil, result = r, worker = ngx.worker.id() })
end

-- Transport requests to any URL, ?n= times in a row (?pause= seconds between): ?url=&max_body=&timeout=
function M.raw()
  local t = require("rctasks.transport.ngx").new{ max_body = tonumber(ngx.var.arg_max_body),
    ca_file = ngx.var.arg_ca, connect_timeout = 2 }
  local answers = {}
  for i = 1, tonumber(ngx.var.arg_n) or 1 do
    if i > 1 and ngx.var.arg_pause then ngx.sleep(tonumber(ngx.var.arg_pause)) end
    local res, err = t:request({ method = ngx.var.arg_method or "GET", url = ngx.unescape_uri(ngx.var.arg_url),
      headers = { accept = "application/json" }, body = ngx.var.arg_body,
      timeout = tonumber(ngx.var.arg_timeout) or 5 })
    if not res then return out(err_view(err)) end
    answers[i] = { status = res.status, body = res.body, headers = res.headers }
  end
  local a = answers[1]
  return out({ ok = true, status = a.status, body = a.body, headers = a.headers, answers = answers })
end

-- Client requests in a row on one client (one worker, one keep-alive pool), through its retry
-- policy: ?calls=GET:/a,POST:/b; answers the outcome of each.
function M.calls()
  local c, outcomes = client(), {}
  for method, path in ngx.var.arg_calls:gmatch("(%u+):([^,]+)") do
    local v, err = c:request(method, path, method == "POST" and { name = "x" } or nil)
    outcomes[#outcomes + 1] = v and { ok = true } or err_view(err)
  end
  return out({ ok = true, calls = outcomes })
end

function M.slow()
  ngx.sleep(tonumber(ngx.var.arg_s) or 2)
  ngx.print("late")
end

-- A chunked answer (no Content-Length: nginx chunks it), ?n= pieces of ?size= bytes.
function M.chunked()
  local n, size = tonumber(ngx.var.arg_n) or 3, tonumber(ngx.var.arg_size) or 10
  for i = 1, n do
    ngx.print(string.rep(string.char(96 + i % 26), size))
    ngx.flush(true)
  end
end

-- The answer says which request of its connection it is: 1 means a fresh connection.
function M.conn()
  local n = ngx.var.connection_requests
  ngx.header["Content-Length"] = #n
  ngx.print(n)
end

------------------------------------------------------------------------------------------------
-- Phase probes: what rctasks does where nginx has no cosockets. Outcomes go to the `probe` dict.

local function env_client()
  return rctasks.new{ api_key = os.getenv("RCTASKS_NGX_KEY"), secret_key = os.getenv("RCTASKS_NGX_SECRET"),
                      base_url = os.getenv("RCTASKS_NGX_URL"), limiter = false }
end

local function note(where, t, err)
  local v = t and { ok = true, status = t.status, phase = where } or err_view(err)
  v.where = where
  ngx.shared.probe:set(where, cjson.encode(v))
end

M.init_client = nil -- made in init_by_lua: creating a client there must work

function M.init()
  M.init_client = env_client()
end

function M.init_worker()
  if ngx.worker.id() ~= 0 then return end
  local id = os.getenv("RCTASKS_NGX_TASK")
  local ok, t, err = pcall(M.init_client.get, M.init_client, id)
  if not ok then note("init_worker", nil, "raised: " .. tostring(t)) else note("init_worker", t, err) end
  -- the documented way out: a timer has cosockets
  ngx.timer.at(0, function()
    note("timer", M.init_client:get(id))
  end)
end

function M.log_probe()
  local ok, t, err = pcall(M.init_client.wait, M.init_client, os.getenv("RCTASKS_NGX_TASK"), { timeout = 5 })
  if not ok then note("log", nil, "raised: " .. tostring(t)) else note("log", t, err) end
end

function M.probe()
  return out({ init_worker = cjson.decode(ngx.shared.probe:get("init_worker") or "null"),
               timer = cjson.decode(ngx.shared.probe:get("timer") or "null"),
               log = cjson.decode(ngx.shared.probe:get("log") or "null") })
end

-- Background waits of the account in RCTASKS_NGX_KEY, on the worker's shared-dict store (one
-- board and one budget for all workers): serve in init_worker, spawn and read by ?id=.
local bg_client
local function bg()
  if not bg_client then
    bg_client = rctasks.new{ api_key = os.getenv("RCTASKS_NGX_KEY"), secret_key = os.getenv("RCTASKS_NGX_SECRET"),
      base_url = os.getenv("RCTASKS_NGX_URL"), limiter = false, store = require("rctasks.store.shdict").new() }
  end
  return bg_client
end

local BG_WAIT = { interval = 0.2, max_interval = 0.5, jitter = 0, timeout = 60 }

function M.bg_serve() assert(background.serve(bg(), { wait = BG_WAIT })) end

function M.bg_spawn()
  local ids = {}
  for id in (ngx.var.arg_ids or ngx.var.arg_id):gmatch("[^,]+") do ids[#ids + 1] = id end
  for _, id in ipairs(ids) do assert(background.spawn_wait(bg(), id, { wait = BG_WAIT })) end
  return out({ ok = true, n = #ids, worker = ngx.worker.id() }, 202)
end

function M.bg_result()
  local out_r = {}
  for id in (ngx.var.arg_ids or ngx.var.arg_id):gmatch("[^,]+") do
    local r = background.result(id, { client = bg() })
    out_r[#out_r + 1] = r and r.state or "none"
  end
  return out({ states = out_r })
end

function M.init_get()
  local t, err = M.init_client:get(ngx.var.arg_id)
  if not t then return out(err_view(err)) end
  return out(task_view(t))
end

-- A keyed run with the journal in the workers' shared dict (journal = true on a shdict store):
-- POST /acl/redisRules named ?name=, keyed ?key=. Answers what it returned, and its worker.
local journal_client
function M.journal_run()
  if not journal_client then
    journal_client = rctasks.new{ api_key = os.getenv("RCTASKS_NGX_KEY"), secret_key = os.getenv("RCTASKS_NGX_SECRET"),
      base_url = os.getenv("RCTASKS_NGX_URL"), store = require("rctasks.store.shdict").new(), journal = true }
  end
  local method, path = ngx.var.arg_method or "POST", ngx.var.arg_path or "/acl/redisRules"
  local t, r = journal_client:run(method, path, { name = ngx.var.arg_name, redisRule = "+@read" },
    { key = ngx.var.arg_key, interval = 0.05, max_interval = 0.2, jitter = 0,
      timeout = tonumber(ngx.var.arg_timeout) or 20 })
  if not t then return out({ err = err_view(r), worker = ngx.worker.id() }) end
  return out({ task = type(t) == "table" and t.taskId or t, id = type(r) == "table" and r.id or nil,
               worker = ngx.worker.id() })
end

function M.ping()
  ngx.header["Content-Length"] = 4
  ngx.print("pong")
end

return M
