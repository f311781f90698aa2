-- Member processes (spec/helpers/member.lua) started in the background, their JSON lines read as
-- they come, killed or ended by their own pids (spec/28, spec/ngx/10):
--   local f = require("helpers.members").new()   f:spawn(MODE, env) -> m; f:lines(m); f:done(m);
--   f:wait(secs) (every member not killed printed its last line); f:kill(m) (SIGKILL); f:close()
local cjson = require "cjson"
local socket = require "socket"
local sys = require "helpers.sys"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local Fleet = {}
Fleet.__index = Fleet

local M = {}

function M.new()
  local dir = assert(io.popen("mktemp -d /tmp/rctasks-fleet.XXXXXX")):read("*l")
  return setmetatable({ dir = dir, members = {} }, Fleet)
end

-- Start a member process in the background; vars: its environment (member.lua's header).
function Fleet:spawn(mode, vars)
  local i = #self.members + 1
  local env = {}
  for k, v in pairs(vars) do env[#env + 1] = k .. "=" .. quote(v) end
  local m = { out = self.dir .. "/out" .. i, err = self.dir .. "/err" .. i }
  assert(sys.sh("env " .. table.concat(env, " ") .. " " .. sys.LUA .. " spec/helpers/member.lua " .. mode ..
    " >" .. m.out .. " 2>" .. m.err .. " &", true))
  self.members[i] = m
  return m
end

-- A member's JSON lines so far.
function Fleet.lines(_, m)
  local out = {}
  for l in (sys.read(m.out) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, l)
    if ok and type(v) == "table" then out[#out + 1] = v end
  end
  return out
end

function Fleet:done(m)
  local l = self:lines(m)
  return l[#l] ~= nil and l[#l].done == true
end

-- Wait until every member not killed has printed its last line (at most `secs`).
function Fleet:wait(secs)
  local deadline = socket.gettime() + secs
  while socket.gettime() < deadline do
    local all = true
    for _, m in ipairs(self.members) do if not m.killed and not self:done(m) then all = false end end
    if all then return true end
    socket.sleep(0.05)
  end
  return false
end

function Fleet:kill(m)
  local pid = self:lines(m)[1].pid
  m.killed = socket.gettime()
  sys.sh(string.format("kill -9 %d", pid))
end

-- Ends every member still running (by its own pid) and removes the files.
function Fleet:close()
  for _, m in ipairs(self.members) do
    local first = self:lines(m)[1]
    if first and first.pid and not self:done(m) then sys.sh(string.format("kill -9 %d", first.pid)) end
  end
  sys.sh("rm -rf " .. self.dir)
end

return M
