-- Small system chores shared by specs and scripts: files, quiet shell commands, free ports.
local socket = require "socket"

local M = {}

-- Run a shell command, output discarded unless `loud`; true when it exited 0 (5.1 and 5.4 alike).
function M.sh(cmd, loud)
  local ok = os.execute(loud and cmd or cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A loopback port free right now (bound, read, released: fine for tests, racy in general).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- The command of the interpreter running this code, for child processes on the same Lua.
M.LUA = rawget(_G, "jit") and "luajit" or (_VERSION:gsub("Lua ", "lua"))

return M
