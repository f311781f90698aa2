-- Scripted TCP servers for specs that need a server misbehaving in one exact way (a connection
-- dropped after reading a POST, a status line the simulator cannot send, headers trickled a
-- byte at a time). The script runs in a child process (spec/helpers/scripted_server.lua):
--   local srv = scripted.start([[ return function(conn, n) ... end ]])
--   srv.url            "http://127.0.0.1:PORT"
--   srv:events()       the log lines: "accept N", "request N METHOD TARGET", "close N", "unlisten"
--   srv:requests(m)    how many requests (of method m, if given) the server read
--   srv:stop()
local socket = require "socket"
local sys = require "helpers.sys"

local M = {}

local Server = {}
Server.__index = Server

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec/helpers"

function M.start(source)
  local dir = assert(io.popen("mktemp -d /tmp/rctasks-scripted.XXXXXX")):read("*l")
  sys.write(dir .. "/script.lua", source)
  local cmd = ("%s %s/scripted_server.lua %s/script.lua %s/port %s/log >%s/out 2>&1 & echo $! >%s/pid")
    :format(sys.LUA, HERE, dir, dir, dir, dir, dir)
  assert(sys.sh(cmd, true), "cannot start the scripted server") -- loud: cmd redirects its own output
  for _ = 1, 200 do
    local p = sys.read(dir .. "/port")
    if p then
      local port = tonumber(p:match("%d+"))
      return setmetatable({ dir = dir, port = port, url = "http://127.0.0.1:" .. port,
                            pid = sys.read(dir .. "/pid"):match("%d+") }, Server)
    end
    socket.sleep(0.02)
  end
  error("scripted server did not start: " .. tostring(sys.read(dir .. "/out")))
end

function Server:events()
  local out = {}
  for line in (sys.read(self.dir .. "/log") or ""):gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

function Server:requests(method)
  local n = 0
  for _, e in ipairs(self:events()) do
    local m = e:match("^request %d+ (%S+)")
    if m and (not method or m == method) then n = n + 1 end
  end
  return n
end

function Server:stop()
  sys.sh("kill " .. self.pid)
  sys.sh("rm -rf " .. self.dir)
end

return M
