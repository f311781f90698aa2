-- A scripted TCP server, run as a child process by spec/helpers/scripted.lua:
--   lua scripted_server.lua SCRIPT PORTFILE LOGFILE
-- SCRIPT is a Lua file returning function(conn, n): one call per accepted connection (n counts
-- them from 1), each in its own coroutine, so a kept-alive connection and a fresh one can be
-- open at the same time. conn offers:
--   conn:request()        -> { method=, target=, headers= (lower-cased), body= } | nil (peer closed)
--   conn:command()        -> one RESP command (Redis's request form) as { "NAME", args... } | nil
--   conn:receive(pattern) -> "*l" a line, or a byte count | nil, err
--   conn:send(bytes)      -> true | nil, err
--   conn:sleep(seconds)
--   conn:close()
--   conn:close_listener()  stop listening: every later connect is refused
-- Every request read is logged as "request <n> <method> <target>", every RESP command as
-- "command <n> <NAME>", every close as "close <n>".
local socket = require "socket"

local script_path, port_file, log_file = arg[1], arg[2], arg[3]
local handler = dofile(script_path)

local log = assert(io.open(log_file, "a"))
local function note(...)
  log:write(table.concat({ ... }, " "), "\n")
  log:flush()
end

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()
local pf = assert(io.open(port_file .. ".tmp", "w"))
pf:write(port, "\n")
pf:close()
os.rename(port_file .. ".tmp", port_file)

local Conn = {}
Conn.__index = Conn

-- Read by `pattern` ("*l" or a byte count), yielding while nothing is there.
function Conn:receive(pattern)
  local acc = ""
  while true do
    local data, err, partial = self.sock:receive(pattern, acc)
    if data then return data end
    if err ~= "timeout" then return nil, err end
    acc = partial
    coroutine.yield("read", self.sock)
  end
end

function Conn:request()
  local line = self:receive("*l")
  if not line then return nil end
  local method, target = line:match("^(%S+) (%S+) HTTP/1%.%d$")
  local req = { method = method or "?", target = target or "?", headers = {} }
  while true do
    local h = self:receive("*l")
    if not h then return nil end
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then req.headers[k:lower()] = v end
  end
  local len = tonumber(req.headers["content-length"] or "0") or 0
  req.body = len > 0 and (self:receive(len) or "") or ""
  note("request", self.n, req.method, req.target)
  return req
end

function Conn:command()
  local line = self:receive("*l")
  local n = line and tonumber(line:match("^%*(%d+)\r?$"))
  if not n then return nil end
  local args = {}
  for i = 1, n do
    local len = tonumber((self:receive("*l") or ""):match("^%$(%d+)\r?$"))
    local data = len and self:receive(len + 2)
    if not data then return nil end
    args[i] = data:sub(1, len)
  end
  note("command", self.n, (args[1] or "?"):upper())
  return args
end

function Conn:send(bytes)
  local i = 1
  while i <= #bytes do
    local last, err, partial = self.sock:send(bytes, i)
    if last then return true end
    if err ~= "timeout" then return nil, err end
    i = partial + 1
    coroutine.yield("write", self.sock)
  end
  return true
end

function Conn.sleep(_, s) coroutine.yield("sleep", socket.gettime() + s) end

function Conn:close()
  if not self.closed then
    self.closed = true
    self.sock:close()
    note("close", self.n)
  end
end

-- A script may close the listener itself, so that the drop it makes next meets a refused port.
local listening = true
function Conn.close_listener()
  if listening then
    listening = false
    server:close()
    note("unlisten")
  end
end

local tasks = {} -- { co =, wait = "read"|"write"|"sleep", on = socket or wake time }
local count = 0

local function resume(t)
  local ok, wait, on = coroutine.resume(t.co)
  if not ok then note("error", t.conn.n, tostring(wait)) end
  if not ok or coroutine.status(t.co) == "dead" then
    t.conn:close()
    return false
  end
  t.wait, t.on = wait, on
  return true
end

while true do
  local readers, writers, timeout = { listening and server or nil }, {}, 1
  local now = socket.gettime()
  for _, t in ipairs(tasks) do
    if t.wait == "read" then readers[#readers + 1] = t.on
    elseif t.wait == "write" then writers[#writers + 1] = t.on
    else timeout = math.max(0, math.min(timeout, t.on - now)) end
  end
  local r, w = socket.select(readers, writers, timeout)
  now = socket.gettime()
  if listening and r[server] then
    local sock = server:accept()
    if sock then
      sock:settimeout(0)
      count = count + 1
      local conn = setmetatable({ sock = sock, n = count }, Conn)
      note("accept", count)
      local t = { conn = conn, co = coroutine.create(function() handler(conn, conn.n) end) }
      if resume(t) then tasks[#tasks + 1] = t end
    end
  end
  local still = {}
  for _, t in ipairs(tasks) do
    local ready = (t.wait == "read" and r[t.on]) or (t.wait == "write" and w[t.on])
      or (t.wait == "sleep" and now >= t.on)
    if not ready or resume(t) then still[#still + 1] = t end
  end
  tasks = still
end
