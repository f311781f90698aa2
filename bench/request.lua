-- Case 2, request path: n sequential GETs of one task, answer decoded, by
--   impl=rctasks        client:get(id) (libcurl keep-alive, decode + normalise, retry layer, limiter off)
--   impl=rctasks_fresh  a new client (so a new connection) per call: what keep-alive saves
--   impl=socket_http    socket.http.request (ssl.https.request over TLS) + cjson.decode: what most scripts do
--   impl=socket_ka      a hand-written HTTP/1.1 keep-alive loop on one LuaSocket (LuaSec over TLS) + cjson
--   impl=curl_cli       one `curl` process per call (io.popen) + cjson.decode
-- usage: lua bench/request.lua impl=rctasks base=http://127.0.0.1:P/v1 id=TASKID n=2000 [ca=FILE]
-- The keys come from the environment (BENCH_KEY, BENCH_SECRET), never from the command line.
local lib = require "lib"
local cjson = require("cjson").new()

local a = lib.args(arg)
local impl, base, id, n = lib.need(a, "impl"), lib.need(a, "base"), lib.need(a, "id"), lib.need(a, "n")
local ca = a.ca
local key, secret = assert(os.getenv("BENCH_KEY")), assert(os.getenv("BENCH_SECRET"))
local url = base .. "/tasks/" .. id
local UA = "bench/1"

local function headers()
  return { ["x-api-key"] = key, ["x-api-secret-key"] = secret, ["accept"] = "application/json",
           ["user-agent"] = UA }
end

local one, stats, finish -- one(): a call, decoded; stats(): extra figures; finish(): clean-up

if impl == "rctasks" then
  local rctasks = require "rctasks"
  local c = rctasks.new{ api_key = key, secret_key = secret, base_url = base, ca_file = ca, limiter = false }
  one = function()
    local t, err = c:get(id)
    if not t then error("rctasks get failed: " .. tostring(err)) end
    return t
  end
  stats = function() return { connects = c:stats().connects } end
  finish = function() c:close() end

elseif impl == "rctasks_fresh" then
  local rctasks = require "rctasks"
  local opts = { api_key = key, secret_key = secret, base_url = base, ca_file = ca, limiter = false }
  one = function()
    local c = rctasks.new(opts)
    local t, err = c:get(id)
    c:close()
    if not t then error("rctasks get failed: " .. tostring(err)) end
    return t
  end

elseif impl == "socket_http" then
  local ltn12 = require "ltn12"
  local request
  if url:find("^https:") then
    local https = require "ssl.https"
    request = function(t) t.cafile, t.verify, t.protocol = ca, "peer", "any"; return https.request(t) end
  else
    request = require("socket.http").request
  end
  local h = headers()
  one = function()
    local chunks = {}
    local ok, code = request{ url = url, headers = h, sink = ltn12.sink.table(chunks) }
    if not ok or code ~= 200 then error("socket.http failed: " .. tostring(code)) end
    return cjson.decode(table.concat(chunks))
  end

elseif impl == "socket_ka" then
  local socket = require "socket"
  local scheme, host, port, path = url:match("^(https?)://([^:/]+):(%d+)(/.*)$")
  assert(scheme, "socket_ka wants scheme://host:port/path")
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port }
  for k, v in pairs(headers()) do lines[#lines + 1] = k .. ": " .. v end
  local req = table.concat(lines, "\r\n") .. "\r\n\r\n"
  local sock, connects = nil, 0
  local function connect()
    local s = socket.tcp()
    s:settimeout(10)
    assert(s:connect(host, tonumber(port)))
    s:setoption("tcp-nodelay", true)
    if scheme == "https" then
      local ssl = require "ssl"
      s = assert(ssl.wrap(s, { mode = "client", protocol = "any", verify = "peer", cafile = ca }))
      s:settimeout(10)
      assert(s:dohandshake())
    end
    connects = connects + 1
    return s
  end
  one = function()
    sock = sock or connect()
    assert(sock:send(req))
    local line = assert(sock:receive("*l"))
    local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
    local len, close
    while true do
      line = assert(sock:receive("*l"))
      if line == "" then break end
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      k = k and k:lower()
      if k == "content-length" then len = tonumber(v)
      elseif k == "connection" and v:lower() == "close" then close = true end
    end
    if not len then error("socket_ka: no content-length") end
    local body = assert(sock:receive(len)) -- one argument: a second one would be a prefix
    if close then sock:close(); sock = nil end
    if status ~= 200 then error("socket_ka: status " .. tostring(status)) end
    return cjson.decode(body)
  end
  stats = function() return { connects = connects } end
  finish = function() if sock then sock:close() end end

elseif impl == "curl_cli" then
  -- Headers through a file (curl -H @file), so the keys stay out of the process list.
  local hfile = os.tmpname()
  local f = assert(io.open(hfile, "w"))
  for k, v in pairs(headers()) do f:write(k, ": ", v, "\n") end
  f:close()
  local cmd = "curl -sS --max-time 10 -H @" .. hfile .. (ca and (" --cacert " .. ca) or "") .. " '" .. url .. "'"
  one = function()
    local p = assert(io.popen(cmd, "r"))
    local body = p:read("*a")
    p:close()
    return cjson.decode(body)
  end
  finish = function() os.remove(hfile) end

else
  error("bench/request: unknown impl " .. tostring(impl))
end

-- Warm-up call (connection, TLS handshake, JIT), then n timed calls.
local first = one()
assert(first.taskId == id, "the answer is the task asked for")
-- Timed in 10 chunks: on a shared machine the fastest chunk is the least disturbed one.
local now, cpu = lib.now, lib.cpu
local chunks = math.min(10, n)
local c0, t0 = cpu(), now()
local best, done = math.huge, 0
for k = 1, chunks do
  local upto = math.floor(n * k / chunks)
  local tc = now()
  for _ = done + 1, upto do one() end
  local per = (now() - tc) / (upto - done)
  if per < best then best = per end
  done = upto
end
local wall, used = now() - t0, cpu() - c0
local r = { case = "request", impl = impl, n = n, lua = lib.interpreter(), tls = url:find("^https:") and 1 or 0,
  per_call = wall / n, best_per_call = best, cpu_per_call = used / n, rps = n / wall }
for k, v in pairs(stats and stats() or {}) do r[k] = v end
if finish then finish() end
lib.emit(r)
