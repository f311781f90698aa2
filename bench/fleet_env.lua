-- The fleet runner's servers and processes (bench/fleet.lua): a directory of its own, the simulator,
-- a redis-server it can SIGKILL and restart on the same port, nginx from bench/nginx/fleet.conf.in,
-- child processes started at once and read at the end. Everything started is stopped by stop_all.
local socket = require "socket"
local cjson = require "cjson"
local sim = require "helpers.sim"
local sys = require "helpers.sys"
local lib = require "lib"

local M = {}

M.sh, M.must = lib.sh, lib.must

M.read = sys.read

function M.write(path, s, mode)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
  if mode then M.must("chmod " .. mode .. " " .. path) end
end

M.ROOT = assert(io.popen("pwd")):read("*l")
local started = {} -- what stop_all stops: { kind = "nginx" | "sim" | "redis", path = }

function M.open_dir()
  M.DIR = M.must("mktemp -d /tmp/rctasks-fleet.XXXXXX"):match("%S+")
  M.must(M.ROOT .. "/scripts/stage " .. M.DIR .. " rctasks bench/fleet_ngx.lua")
  return M.DIR
end

function M.start_sim()
  M.must(M.ROOT .. "/scripts/sim start " .. M.DIR .. "/sim")
  started[#started + 1] = { kind = "sim", path = M.DIR .. "/sim" }
  M.SIM_URL = M.read(M.DIR .. "/sim/url"):match("%S+")
  sim.url = function() return M.SIM_URL end
  return M.SIM_URL
end

-- Redis: started by scripts/redis, SIGKILLed by its pid, restarted on the same port (empty).
function M.start_redis()
  M.REDIS_DIR = M.DIR .. "/redis"
  M.must(M.ROOT .. "/scripts/redis start " .. M.REDIS_DIR)
  started[#started + 1] = { kind = "redis", path = M.REDIS_DIR }
  M.REDIS_URL = M.read(M.REDIS_DIR .. "/url"):match("%S+")
  M.REDIS_PORT = M.read(M.REDIS_DIR .. "/port"):match("%d+")
  return M.REDIS_URL
end

function M.kill_redis()
  local pid = (M.read(M.REDIS_DIR .. "/redis.pid") or ""):match("%d+")
  if pid then M.sh("kill -KILL " .. pid) end
  for _ = 1, 100 do
    if not (pid and M.sh("kill -0 " .. pid .. " 2>/dev/null")) then break end
    socket.sleep(0.02)
  end
  os.remove(M.REDIS_DIR .. "/redis.pid")
end

function M.restart_redis()
  M.must(M.ROOT .. "/scripts/redis start " .. M.REDIS_DIR .. " --port " .. M.REDIS_PORT)
end

local wait_port = lib.wait_port

-- An nginx of bench/nginx/fleet.conf.in: returns its base URL.
function M.start_nginx(name, workers, dict)
  local port = sys.free_port()
  local conf = M.read(M.ROOT .. "/bench/nginx/fleet.conf.in")
  local vars = { DIR = M.DIR, NAME = name, WORKERS = workers, PORT = port, DICT = dict }
  conf = conf:gsub("@([%u_]+)@", function(k) return tostring(assert(vars[k], k)) end)
  local path = M.DIR .. "/" .. name .. ".conf"
  M.write(path, conf)
  M.must("nginx -p " .. M.DIR .. " -c " .. path .. " -e " .. M.DIR .. "/" .. name .. ".err")
  started[#started + 1] = { kind = "nginx", path = M.DIR .. "/" .. name .. ".pid" }
  wait_port(port)
  return "http://127.0.0.1:" .. port
end

function M.stop_all()
  for i = #started, 1, -1 do
    local s = started[i]
    if s.kind == "nginx" then
      local pid = (M.read(s.path) or ""):match("%d+")
      if pid then M.sh("kill -TERM " .. pid) end
    elseif s.kind == "sim" then
      M.sh(M.ROOT .. "/scripts/sim stop " .. s.path)
    else
      M.sh(M.ROOT .. "/scripts/redis stop " .. s.path)
    end
  end
  started = {}
end

-- HTTP/1.0 to our nginx: status, decoded JSON body.
function M.http(method, url, value, timeout)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(.*)$")
  local body = value and cjson.encode(value) or ""
  local c = socket.tcp()
  c:settimeout(timeout or 30)
  local ok, err = c:connect(host, tonumber(port))
  if ok then
    ok, err = c:send(method .. " " .. path .. " HTTP/1.0\r\nHost: " .. host .. "\r\nContent-Length: " .. #body ..
      "\r\n\r\n" .. body)
  end
  local data, rerr, partial
  if ok then data, rerr, partial = c:receive("*a") end
  c:close()
  data = data or partial
  if not ok or not data or data == "" then
    error("bench/fleet: " .. method .. " " .. url .. ": " .. tostring(err or rerr), 2)
  end
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  local answer = data:match("\r\n\r\n(.*)$") or ""
  return status, sim.decode(answer) or answer
end

-- An account's keys and the sim's URL for its child processes: a sourced file, not a command line.
function M.account_env(acct, name)
  local path = M.DIR .. "/" .. name .. ".sh"
  M.write(path, "export BENCH_KEY=" .. acct.key .. " BENCH_SECRET=" .. acct.secret .. " BENCH_URL=" .. M.SIM_URL
    .. "\n", "600")
  return path
end

local children = 0
-- Start bench/fleet_client.lua with `args` (key=value list); returns a reader of its RESULT line.
function M.spawn(envfile, args)
  children = children + 1
  local errf = M.DIR .. "/child" .. children .. ".err"
  local cmd = "cd " .. M.ROOT .. " && . " .. envfile .. " && LUA_PATH='bench/?.lua;lua/?.lua;lua/?/init.lua;" ..
    "spec/?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/fleet_client.lua " .. table.concat(args, " ") ..
    " 2>" .. errf
  local p = assert(io.popen(cmd, "r"))
  return function()
    local out = p:read("*a")
    local ok = p:close()
    local line = out:match("RESULT ([^\n]*)")
    if not ok or not line then
      error("bench/fleet: a client process failed: " .. table.concat(args, " ") .. "\n" .. out ..
        (M.read(errf) or ""), 0)
    end
    local r = {}
    for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
    return r
  end
end

-- Sleep until the epoch time t.
function M.sleep_until(t)
  local d = t - socket.gettime()
  if d > 0 then socket.sleep(d) end
end

return M
