-- Instructions per request under callgrind: what each client costs per call, repeatably (time on a
-- shared machine is noise, instruction counts are not). Each client runs bench/request.lua (or the C
-- loop) twice, with n1 and n2 calls, against a fixed-body nginx of its own; (I(n2) - I(n1)) / (n2 - n1)
-- cancels start-up, warm-up and exit, leaving the cost of one call.
--   lua5.4 bench/profile.lua [impls=rctasks:lua5.4,c_libcurl,socket_ka:lua5.4] [n1=200] [n2=1200] [tls=1]
--                            [keep=DIR]   (keep=: leave the callgrind files of the n2 runs in DIR)
-- Run from the repository root after `make build`; needs valgrind.
package.path = "bench/?.lua;spec/?.lua;" .. package.path
local socket = require "socket"
local lib = require "lib"
local free_port = require("helpers.sys").free_port

local opts = lib.args(arg)
local N1, N2 = opts.n1 or 200, opts.n2 or 1200
local TLS = opts.tls == 1
local IMPLS = {}
for s in (opts.impls or "rctasks:lua5.4,rctasks:luajit,c_libcurl,socket_ka:lua5.4,socket_ka:luajit"):gmatch("[^,]+") do
  IMPLS[#IMPLS + 1] = s
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  return p:close(), out
end
local function must(cmd)
  local ok, out = sh(cmd)
  if not ok then error("profile: `" .. cmd .. "` failed:\n" .. out, 2) end
  return out
end

local ROOT = must("pwd"):match("[^\n]+")
local DIR = must("mktemp -d /tmp/rctasks-profile.XXXXXX"):match("%S+")
must(ROOT .. "/scripts/stage " .. DIR) -- the fixed nginx's prefix, and the way to the sim's (DIR/certs)
-- The simulator's start makes a CA and a server certificate; only the files are used.
must(ROOT .. "/scripts/sim start " .. DIR .. "/certs --tls")
must(ROOT .. "/scripts/sim stop " .. DIR .. "/certs")

local body, ID = lib.task_body()
local port, tls_port = free_port(), free_port()
local vars = { DIR = DIR, PORT = port, TLS_PORT = tls_port, BODY = body,
  CERT = DIR .. "/certs/server.pem", KEY = DIR .. "/certs/server.key" }
local conf = assert(io.open(ROOT .. "/bench/nginx/fixed.conf.in")):read("*a")
conf = conf:gsub("@([%u_]+)@", function(k) return tostring(assert(vars[k], k)) end)
assert(io.open(DIR .. "/fixed.conf", "w")):write(conf):close()
-- Keys reach the cases through a sourced file, never a command line.
local envf = assert(io.open(DIR .. "/env.sh", "w"))
envf:write("export BENCH_KEY=k", lib.interpreter(), os.time(), " BENCH_SECRET=s", os.time(), "\n")
envf:close()

local results = {}
local ok, err = pcall(function()
  must("nginx -p " .. DIR .. " -c " .. DIR .. "/fixed.conf -e " .. DIR .. "/fixed.err")
  for _ = 1, 200 do
    local c = socket.connect("127.0.0.1", TLS and tls_port or port)
    if c then c:close(); break end
    socket.sleep(0.025)
  end
  must("mkdir -p build/bench && cc -O2 -std=c99 -Wall -Wextra -Werror -o build/bench/curl_loop " ..
    "bench/curl_loop.c $(pkg-config --cflags --libs libcurl)")
  local base = (TLS and "https" or "http") .. "://127.0.0.1:" .. (TLS and tls_port or port) .. "/v1"
  local ca = TLS and (DIR .. "/certs/ca.pem") or nil

  local function instructions(impl, lua, n, out)
    local cmd, env
    env = ""
    if impl == "c_libcurl" then
      cmd = "build/bench/curl_loop " .. base .. "/tasks/" .. ID .. " " .. n .. (ca and (" " .. ca) or "")
    else
      local cpath = lua == "luajit" and "build/jit/?.so;;" or "build/5.4/?.so;;"
      env = "LUA_PATH='bench/?.lua;lua/?.lua;lua/?/init.lua;;' LUA_CPATH='" .. cpath .. "' "
      cmd = lua .. " bench/request.lua impl=" .. impl .. " base=" .. base .. " id=" .. ID .. " n=" .. n ..
        (ca and (" ca=" .. ca) or "")
    end
    local o = must(". " .. DIR .. "/env.sh && " .. env .. "valgrind --tool=callgrind --callgrind-out-file=" .. out ..
      " " .. cmd)
    local ir = o:match("Collected : (%d+)")
    if not ir then error("profile: no instruction count from callgrind:\n" .. o) end
    return tonumber(ir)
  end

  for _, spec in ipairs(IMPLS) do
    local impl, lua = spec:match("^([%w_]+):?([%w%.]*)$")
    local tag = impl .. (lua ~= "" and ("_" .. lua) or "")
    local i1 = instructions(impl, lua, N1, DIR .. "/" .. tag .. ".n1.out")
    local i2 = instructions(impl, lua, N2, DIR .. "/" .. tag .. ".n2.out")
    results[#results + 1] = { name = impl .. (lua ~= "" and (" " .. lua) or ""), per = (i2 - i1) / (N2 - N1) }
    if opts.keep then must("mkdir -p " .. opts.keep .. " && cp " .. DIR .. "/" .. tag .. ".n?.out " .. opts.keep) end
  end
end)
local pid = (io.open(DIR .. "/fixed.pid") or io.open("/dev/null")):read("*a"):match("%d+")
if pid then sh("kill -TERM " .. pid) end
if not ok then
  io.stderr:write(tostring(err), "\nprofile: files kept in ", DIR, "\n")
  os.exit(1)
end
sh("rm -rf " .. DIR)

print(string.format("instructions per call (%s, calls %d..%d):", TLS and "https" or "http", N1, N2))
for _, r in ipairs(results) do print(string.format("  %-18s %9.0f", r.name, r.per)) end
