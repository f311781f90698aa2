-- Drives the local API simulator (sim/) from specs: accounts, config, faults, stats, raw requests.
-- Plain LuaSocket + cjson, no rctasks code, so it also serves the specs that test rctasks itself.
local socket = require "socket"
local cjson = require "cjson"

local M = {}

-- Fast defaults for spec accounts: the whole task lifecycle takes a few tens of milliseconds.
M.defaults = { step = 0.02, lag = 0, provision = 0.02 }

function M.url()
  local u = os.getenv("RCTASKS_SIM_URL")
  if not u or u == "" then error("RCTASKS_SIM_URL is not set: start one with scripts/sim start DIR", 2) end
  return u
end

function M.tls_url()
  local u = os.getenv("RCTASKS_SIM_TLS_URL")
  if not u or u == "" then error("RCTASKS_SIM_TLS_URL is not set: start the sim with --tls", 2) end
  return u
end

function M.ca()
  local c = os.getenv("RCTASKS_SIM_CA")
  if not c or c == "" then error("RCTASKS_SIM_CA is not set: start the sim with --tls", 2) end
  return c
end

function M.origin() return (M.url():match("^(https?://[^/]+)")) end

local function hex(n)
  local f = assert(io.open("/dev/urandom", "rb"))
  local b = f:read(n)
  f:close()
  return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
M.hex = hex

-- cjson on 5.3+ decodes every number as a float: give integral ones back as integers.
local function ints(v)
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = ints(x) end
  elseif type(v) == "number" and math.tointeger then
    return math.tointeger(v) or v
  end
  return v
end

-- The keys of a table, sorted: a JSON object's field names.
function M.keys(t)
  local l = {}
  for k in pairs(t) do l[#l + 1] = k end
  table.sort(l)
  return l
end

function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, v end
  return ints(v)
end

-- One raw HTTP/1.1 exchange on a fresh connection. Returns status, body, headers (lower-cased
-- names) or nil, err, partial_body. `url` is absolute; `timeout` bounds each socket operation.
function M.http(method, url, headers, body, timeout)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(.*)$")
  assert(host, "sim.http wants an http://host:port/... URL")
  local c = socket.tcp()
  c:settimeout(timeout or 5)
  local ok, err = c:connect(host, tonumber(port))
  if not ok then c:close(); return nil, err end
  local lines = { method .. " " .. (path ~= "" and path or "/") .. " HTTP/1.1",
                  "Host: " .. host .. ":" .. port, "Connection: close" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then
    lines[#lines + 1] = "Content-Type: application/json"
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  ok, err = c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""))
  if not ok then c:close(); return nil, err end
  local line
  line, err = c:receive("*l")
  if not line then c:close(); return nil, err, "" end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local h = {}
  while true do
    line, err = c:receive("*l")
    if not line then c:close(); return nil, err, "" end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then h[k:lower()] = v end
  end
  local len = tonumber(h["content-length"])
  local data, partial
  if len == 0 then
    data = ""
  elseif len then
    data, err, partial = c:receive(len)
  else
    data, err, partial = c:receive("*a")
  end
  c:close()
  if not data then return nil, err, partial end
  return status, data, h
end

local function target(path)
  if path:find("^/v1") or path:find("^/sim/") then return M.origin() .. path end
  return M.url() .. path
end

-- A request to the sim: `path` is "/sim/..." or "/v1/...", or relative to sim.url() ("/tasks").
-- Returns status, body, headers (or nil, err, partial).
function M.request(method, path, key, secret, body, timeout)
  local h = {}
  if key then h["x-api-key"] = key end
  if secret then h["x-api-secret-key"] = secret end
  return M.http(method, target(path), h, body, timeout)
end

local function control(method, path, value)
  local status, body = M.request(method, path, nil, nil, value ~= nil and cjson.encode(value) or nil)
  if status ~= 200 then
    error(("sim control %s %s failed: %s %s"):format(method, path, tostring(status), tostring(body)), 3)
  end
  return M.decode(body)
end

local function account_path(key) return "/sim/accounts/" .. key end

function M.config(key, cfg) return control("PUT", account_path(key), cfg) end

-- A fresh account with random keys and `cfg` over the fast defaults; the secret is bound at once.
function M.account(cfg)
  local a = { key = "k" .. hex(12), secret = "s" .. hex(12) }
  -- The runner greps everything the suite printed for these: no key may ever show up.
  local log = os.getenv("RCTASKS_TEST_LOG")
  local f = log and log ~= "" and io.open(log, "a")
  if f then f:write(a.key, "\n", a.secret, "\n"); f:close() end
  local c = { secret = a.secret }
  for k, v in pairs(M.defaults) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  M.config(a.key, c)
  return a
end

function M.faults(key, list) return control("POST", account_path(key) .. "/faults", { faults = list }) end

-- The account's stats; q.window (seconds): also `busiest`, the most requests any window of that
-- length held; q.since (epoch seconds): also `times`, the request times from then on.
function M.stats(key, q)
  local args = {}
  for _, k in ipairs({ "window", "since" }) do
    if q and q[k] then args[#args + 1] = k .. "=" .. string.format("%.6f", q[k]) end
  end
  return control("GET", account_path(key) .. "/stats" .. (#args > 0 and "?" .. table.concat(args, "&") or ""))
end

-- A task created directly (no resource): opts.commandType, outcome, resourceId, queue. Returns its id.
function M.task(key, opts) return control("POST", account_path(key) .. "/tasks", opts or {}).taskId end

return M
