-- The bench runner (`make bench`): starts the simulator and two nginx of its own on free loopback
-- ports, runs every case as its own process several times (cases interleaved, so a noisy minute
-- hits all peers alike), prints a table of medians and ratios with each target's PASS/MISS, and
-- writes it to bench/RESULTS.md with the machine and the versions.
--   lua5.4 bench/run.lua [reps=5] [out=bench/RESULTS.md] [smoke=1] [only=PATTERN]
-- smoke=1: every case once with tiny sizes (spec/14-bench_smoke_spec.lua), no timing claims.
-- only=PATTERN: just the cases whose name matches the Lua pattern (e.g. only=http), for profiling.
-- Run from the repository root after `make build`.
package.path = "bench/?.lua;lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath
local socket = require "socket"
local lib = require "lib"
local sim = require "helpers.sim"
local sys = require "helpers.sys"
local free_port, readfile = sys.free_port, sys.read

local opts = lib.args(arg)
local SMOKE = opts.smoke == 1
local REPS = opts.reps or (SMOKE and 1 or 5)
local OUT = opts.out or "bench/RESULTS.md"
local ROOT = assert(io.popen("pwd")):read("*l")
assert(io.open(ROOT .. "/bench/run.lua"), "run bench/run.lua from the repository root")

-- Sizes: the real run, or just enough to run every code path once.
local S = SMOKE and {
  list = 200, list_iters = 1, task_iters = 1, batch = 10, n_fast = 20, n_conn = 5, n_cli = 2,
  n_tls_conn = 3, tls_count = 20, wrk = 1, durations = { 5 }, scale = 100, wait_all = { 5 },
  wait_all_duration = 5, mem_small = 10, mem_n = 50, hostile_reps = 1,
} or {
  list = 10000, list_iters = 10, task_iters = 20, batch = 1000, n_fast = 10000, n_conn = 1000, n_cli = 100,
  n_tls_conn = 300, tls_count = 1000, wrk = 3, durations = { 5, 60, 600 }, scale = 50, wait_all = { 50, 500 },
  wait_all_duration = 60, mem_small = 1000, mem_n = 100000, hostile_reps = 5,
}

------------------------------------------------------------------------------------------------
-- Processes, files, servers

local sh, must, wait_port = lib.sh, lib.must, lib.wait_port


local function writefile(path, s, mode)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
  if mode then must("chmod " .. mode .. " " .. path) end
end



local DIR = must("mktemp -d /tmp/rctasks-bench.XXXXXX"):match("%S+")
local started = {} -- pid files of the nginx we started, stopped at the end whatever happens

-- Install what an nginx's workers load into DIR, the prefix of both bench nginx (scripts/stage).
local function stage(parts)
  must(ROOT .. "/scripts/stage " .. DIR .. " " .. table.concat(parts or {}, " "))
end

local function nginx_start(name, template, vars, env, parts)
  stage(parts)
  local conf = readfile(ROOT .. "/bench/nginx/" .. template)
  vars.DIR = DIR
  conf = conf:gsub("@([%u_]+)@", function(k) return assert(vars[k], k) end)
  local path = DIR .. "/" .. name .. ".conf"
  writefile(path, conf)
  must((env or "") .. "nginx -p " .. DIR .. " -c " .. path .. " -e " .. DIR .. "/" .. name .. ".err")
  started[#started + 1] = DIR .. "/" .. name .. ".pid"
  wait_port(vars.PORT)
end

local function stop_all()
  for _, pidfile in ipairs(started) do
    local pid = (readfile(pidfile) or ""):match("%d+")
    if pid then sh("kill -TERM " .. pid) end
  end
  sh(ROOT .. "/scripts/sim stop " .. DIR .. "/sim")
end

-- Keys reach the cases through a sourced file, never a command line (ps shows those).
local function hex(n) return sim.hex(n) end
local KEY, SECRET = "k" .. hex(12), "s" .. hex(12)
writefile(DIR .. "/env.sh", "export BENCH_KEY=" .. KEY .. " BENCH_SECRET=" .. SECRET .. "\n", "600")

local LUAS = {
  ["lua5.4"] = { bin = "lua5.4", cpath = "build/5.4/?.so;;" },
  luajit = { bin = "luajit", cpath = "build/jit/?.so;;" },
}

local runs = 0
-- Start one case (a Lua script under `lua`, or a command when lua == "c"); returns a reader.
local function spawn(lua, script, args, env)
  runs = runs + 1
  local errf = DIR .. "/case" .. runs .. ".err"
  local cmd
  if lua == "c" then
    cmd = script .. " " .. table.concat(args, " ")
  else
    local L = LUAS[lua]
    cmd = "LUA_PATH='bench/?.lua;lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='" .. L.cpath .. "' " ..
      L.bin .. " bench/" .. script .. ".lua " .. table.concat(args, " ")
  end
  local full = "cd " .. ROOT .. " && . " .. DIR .. "/env.sh && " .. (env or "") .. " " .. cmd .. " 2>" .. errf
  local p = assert(io.popen(full, "r"))
  return function()
    local out = p:read("*a")
    local ok = p:close()
    local line = out:match("RESULT ([^\n]*)")
    if not ok or not line then
      error("bench: case failed: " .. cmd .. "\n" .. out .. (readfile(errf) or ""), 0)
    end
    local r = {}
    for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
    return r
  end
end

local function run1(lua, script, args, env) return spawn(lua, script, args, env)() end

------------------------------------------------------------------------------------------------
-- Statistics and the results store

local results = {} -- name -> list of result tables (one per rep)

local function record(name, r)
  results[name] = results[name] or {}
  table.insert(results[name], r)
end

local function median(name, field)
  local l = results[name]
  if not l then return nil end
  local v = {}
  for _, r in ipairs(l) do if type(r[field]) == "number" then v[#v + 1] = r[field] end end
  if #v == 0 then return nil end
  table.sort(v)
  local m = #v // 2
  if #v % 2 == 1 then return v[m + 1] end
  return (v[m] + v[m + 1]) / 2
end

------------------------------------------------------------------------------------------------
-- Servers

print("bench: starting the simulator and the fixed-body nginx in " .. DIR)
local ok_run, run_err = pcall(function()
  stage() -- DIR opened to nginx's workers first: the sim's prefix, DIR/sim, lies inside it
  must(ROOT .. "/scripts/sim start " .. DIR .. "/sim --tls")
  local SIM_URL = readfile(DIR .. "/sim/url"):match("%S+")
  local SIM_TLS = readfile(DIR .. "/sim/tls_url"):match("%S+")
  local CA = DIR .. "/sim/ca.pem"
  sim.url = function() return SIM_URL end
  local SIM_ENV = "RCTASKS_SIM_URL=" .. SIM_URL

  local body, TASK_ID = lib.task_body()
  local fixed_port, fixed_tls = free_port(), free_port()
  nginx_start("fixed", "fixed.conf.in", { PORT = fixed_port, TLS_PORT = fixed_tls, BODY = body,
    CERT = DIR .. "/sim/server.pem", KEY = DIR .. "/sim/server.key" })
  wait_port(fixed_tls)
  local FIXED = "http://127.0.0.1:" .. fixed_port .. "/v1"
  local FIXED_TLS = "https://127.0.0.1:" .. fixed_tls .. "/v1"

  -- The cosocket case runs when the ngx transport exists and nginx can load it.
  local front_port
  if io.open(ROOT .. "/lua/rctasks/transport/ngx.lua") then
    front_port = free_port()
    -- The handlers read their keys and target from the environment nginx starts with (`env`).
    local okf, ferr = pcall(nginx_start, "front", "front.conf.in", { PORT = front_port, UPSTREAM_PORT = fixed_port },
      ". " .. DIR .. "/env.sh && BENCH_BASE=" .. FIXED .. " BENCH_ID=" .. TASK_ID .. " ",
      { "rctasks", "bench/ngx_handler.lua" })
    if not okf then
      print("bench: front nginx did not start, cosocket case skipped: " .. tostring(ferr))
      front_port = nil
    end
  end

  -- The C floor, compiled now (never committed as a binary).
  must("mkdir -p build/bench && cc -O2 -std=c99 -Wall -Wextra -Werror -o build/bench/curl_loop " ..
    "bench/curl_loop.c $(pkg-config --cflags --libs libcurl)")
  local CLOOP = "build/bench/curl_loop"

  -- Each rep runs every case once; the order of the cases rotates between reps.
  local cases = {}
  local function case(name, fn) cases[#cases + 1] = { name = name, fn = fn } end

  for _, lua in ipairs({ "lua5.4", "luajit" }) do
    for _, impl in ipairs({ "rctasks", "cjson", "cjson_lua" }) do
      case("decode list " .. lua .. " " .. impl, function(n)
        record(n, run1(lua, "decode", { "impl=" .. impl, "body=list", "n=" .. S.list, "iters=" .. S.list_iters }))
      end)
      case("decode task " .. lua .. " " .. impl, function(n)
        record(n, run1(lua, "decode", { "impl=" .. impl, "body=task", "iters=" .. S.task_iters, "batch=" .. S.batch }))
      end)
    end
  end

  local function req(lua, impl, base, n, ca)
    local args = { "impl=" .. impl, "base=" .. base, "id=" .. TASK_ID, "n=" .. n }
    if ca then args[#args + 1] = "ca=" .. ca end
    return run1(lua, "request", args)
  end
  local HTTP_PEERS = {
    { "lua5.4", "rctasks", S.n_fast }, { "luajit", "rctasks", S.n_fast },
    { "lua5.4", "rctasks_fresh", S.n_conn }, { "lua5.4", "socket_http", S.n_conn },
    { "lua5.4", "socket_ka", S.n_fast }, { "luajit", "socket_ka", S.n_fast }, { "lua5.4", "curl_cli", S.n_cli },
  }
  for _, p in ipairs(HTTP_PEERS) do
    case("http " .. p[2] .. " " .. p[1], function(n) record(n, req(p[1], p[2], FIXED, p[3])) end)
  end
  case("http c_libcurl", function(n)
    record(n, run1("c", CLOOP, { FIXED .. "/tasks/" .. TASK_ID, S.n_fast }))
  end)
  local TLS_PEERS = {
    { "lua5.4", "rctasks", S.n_fast }, { "luajit", "rctasks", S.n_fast },
    { "lua5.4", "rctasks_fresh", S.n_tls_conn }, { "lua5.4", "socket_http", S.n_tls_conn },
    { "lua5.4", "socket_ka", S.n_fast },
    { "lua5.4", "curl_cli", S.n_cli },
  }
  for _, p in ipairs(TLS_PEERS) do
    case("https " .. p[2] .. " " .. p[1], function(n) record(n, req(p[1], p[2], FIXED_TLS, p[3], CA)) end)
  end
  case("https c_libcurl", function(n)
    record(n, run1("c", CLOOP, { FIXED_TLS .. "/tasks/" .. TASK_ID, S.n_fast, CA }))
  end)

  -- Connections and TLS handshakes as the simulator counts them, for tls_count sequential gets.
  for _, scheme in ipairs({ "http", "https" }) do
    case("sim " .. scheme, function(n)
      local acct = sim.account{ rate_limit = 100000000, lag = 0 }
      local id = sim.task(acct.key, { queue = false })
      writefile(DIR .. "/acct.sh", "export BENCH_KEY=" .. acct.key .. " BENCH_SECRET=" .. acct.secret .. "\n", "600")
      local r = run1("lua5.4", "request", { "impl=rctasks", "base=" .. (scheme == "https" and SIM_TLS or SIM_URL),
        "id=" .. id, "n=" .. S.tls_count, scheme == "https" and ("ca=" .. CA) or "" }, ". " .. DIR .. "/acct.sh &&")
      local st = sim.stats(acct.key)
      r.sim_requests, r.sim_connections, r.sim_tls_handshakes = st.requests, st.connections, st.tls_handshakes
      record(n, r)
    end)
  end

  if front_port then
    local function wrk(path)
      local out = must("wrk -t1 -c8 -d" .. S.wrk .. "s http://127.0.0.1:" .. front_port .. path)
      local rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)"))
      local non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s*(%d+)")) or 0
      if not rps or non2xx > 0 then error("bench: wrk " .. path .. " failed:\n" .. out, 0) end
      return rps
    end
    case("nginx rctasks", function(n) record(n, { rps = wrk("/rctasks") }) end)
    case("nginx capture", function(n) record(n, { rps = wrk("/capture") }) end)
    case("nginx upstream", function(n)
      local out = must("wrk -t1 -c8 -d" .. S.wrk .. "s -H 'x-api-key: x' http://127.0.0.1:" .. fixed_port ..
        "/v1/tasks/" .. TASK_ID)
      record(n, { rps = tonumber(out:match("Requests/sec:%s*([%d%.]+)")) })
    end)
  end

  -- Waiting: the three strategies run side by side (each its own account and task).
  for _, d in ipairs(S.durations) do
    case("wait " .. d, function()
      local readers = {}
      for _, strat in ipairs({ "rctasks", "fixed3", "gosdk" }) do
        readers[strat] = spawn("lua5.4", "wait", { "strategy=" .. strat, "duration=" .. d, "scale=" .. S.scale },
          SIM_ENV)
      end
      for strat, read in pairs(readers) do record("wait " .. d .. " " .. strat, read()) end
    end)
  end
  for _, k in ipairs(S.wait_all) do
    case("wait_all " .. k, function()
      local readers = {}
      for _, mode in ipairs({ "wait_all", "each" }) do
        readers[mode] = spawn("lua5.4", "wait_all", { "mode=" .. mode, "n=" .. k,
          "duration=" .. S.wait_all_duration, "scale=" .. S.scale }, SIM_ENV)
      end
      for mode, read in pairs(readers) do record("wait_all " .. k .. " " .. mode, read()) end
    end)
  end

  for _, lua in ipairs({ "lua5.4", "luajit" }) do
    case("memory " .. lua, function(n)
      record(n, run1(lua, "memory", { "base=" .. FIXED, "id=" .. TASK_ID, "small=" .. S.mem_small, "n=" .. S.mem_n }))
    end)
  end

  for _, lua in ipairs({ "lua5.4", "luajit" }) do
    case("hostile " .. lua, function(n) record(n, run1(lua, "hostile", { "reps=" .. S.hostile_reps })) end)
  end

  if opts.only then
    local keep = {}
    for _, c in ipairs(cases) do if c.name:find(opts.only) then keep[#keep + 1] = c end end
    cases = keep
  end

  local t_start = socket.gettime()
  for rep = 1, REPS do
    io.write(string.format("bench: rep %d/%d ", rep, REPS))
    for i = 1, #cases do
      local c = cases[(i + rep - 2) % #cases + 1]
      c.fn(c.name)
      io.write(".")
      io.flush()
    end
    io.write("\n")
  end
  print(string.format("bench: %d case runs in %.0f s", runs, socket.gettime() - t_start))
end)
stop_all()
if not ok_run then
  io.stderr:write(tostring(run_err), "\n")
  io.stderr:write("bench: logs kept in ", DIR, "\n")
  os.exit(1)
end
sh("rm -rf " .. DIR)

------------------------------------------------------------------------------------------------
-- Report

local out = {}
local function p(fmt, ...) out[#out + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
local targets = {}
local function target(what, ratio, pass, detail)
  targets[#targets + 1] = { what = what, ratio = ratio, pass = pass, detail = detail }
end
local function us(s) return s and string.format("%.1f", s * 1e6) or "-" end
local function ms(s) return s and string.format("%.2f", s * 1e3) or "-" end
local function x(r) return r and string.format("%.2fx", r) or "-" end

local function version(cmd, pat)
  local _, o = sh(cmd)
  return (pat and o:match(pat)) or o:match("[^\n]*")
end
local cpu_model = (readfile("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"
local core = require "rctasks.core"
local commit = version("git rev-parse --short HEAD")

p("# rctasks benchmarks")
p("")
p("Written by `make bench` (bench/run.lua) on %s%s. Medians of %d runs per case, cases interleaved.",
  os.date("!%Y-%m-%d %H:%M UTC"), SMOKE and " (SMOKE RUN: tiny sizes, numbers meaningless)" or "", REPS)
p("")
p("Machine: %s cores, %s, Linux %s. Commit %s.", version("nproc"), cpu_model, version("uname -r"), commit)
p("Versions: %s; %s; libcurl %s (%s); %s; lua-cjson %s; %s; LuaSec %s; %s.",
  version("lua5.4 -v", "(Lua [%d%.]+)"), version("luajit -v", "(LuaJIT [%w%.%-]+)"), core.curl_version,
  version("curl --version", "(OpenSSL/[%w%.]+)"), version("nginx -v", "(nginx/[%d%.]+)"),
  require("cjson")._VERSION, socket._VERSION, (pcall(require, "ssl") and require("ssl")._VERSION) or "-",
  version("openssl version", "(OpenSSL [%w%.]+)"))
p("")

-- 1. Decode
p("## 1. Decode")
p("")
p("Time per decode (median over runs of each run's fastest iteration). `rctasks`: `core.decode_task` /")
p("`core.decode_tasks` (decode, type checks, links and error normalisation, task metatable); `cjson`:")
p("`cjson.decode` alone; `cjson+lua`: `cjson.decode` plus")
p("the same normalisation in Lua (bench/normalize.lua). Ratio: cjson alone's time / this one's (>1: faster).")
p("")
p("| body | Lua | rctasks | cjson | cjson+lua | rctasks vs cjson | rctasks vs cjson+lua |")
p("|---|---|---|---|---|---|---|")
for _, body in ipairs({ "list", "task" }) do
  for _, lua in ipairs({ "lua5.4", "luajit" }) do
    local k = "decode " .. body .. " " .. lua .. " "
    -- Decoding is pure CPU work: the fastest of a run's iterations is the least disturbed one.
    local r, c, cl = median(k .. "rctasks", "best"), median(k .. "cjson", "best"), median(k .. "cjson_lua", "best")
    local label = body == "list" and string.format("%d tasks (%.1f MB)", S.list,
      (median(k .. "rctasks", "bytes") or 0) / 1e6) or "1 task (578 B)"
    local unit = body == "list" and " ms" or " us"
    local function fmt(v) return v and ((body == "list" and ms or us)(v) .. unit) or "-" end
    p("| %s | %s | %s | %s | %s | %s | %s |", label, lua, fmt(r), fmt(c), fmt(cl),
      x(r and c and c / r), x(r and cl and cl / r))
    if body == "list" and r and c then
      target("decode of the list at least as fast as cjson.decode alone (" .. lua .. ")", c / r, r <= c)
    end
  end
end
p("")

-- 2. Request path
local function peer_rows(prefix, peers, base_for)
  p("| client | Lua | us/call | CPU us/call | calls/s | rctasks (same Lua) throughput vs this |")
  p("|---|---|---|---|---|---|")
  for _, pr in ipairs(peers) do
    local name = pr[1] == "c" and (prefix .. " c_libcurl") or (prefix .. " " .. pr[2] .. " " .. pr[1])
    local me = prefix .. " rctasks " .. (pr[1] == "c" and "lua5.4" or pr[1])
    local pc, cpu = median(name, "best_per_call"), median(name, "cpu_per_call")
    local mine = median(me, "best_per_call")
    p("| %s | %s | %s | %s | %s | %s |", pr[2], pr[1], us(pc), pr[2] == "curl_cli" and "(child)" or us(cpu),
      pc and string.format("%.0f", 1 / pc) or "-", (pr[2] == "rctasks") and "-" or x(mine and pc and pc / mine))
  end
  return base_for
end

p("## 2. Request path")
p("")
p("Sequential `GET /v1/tasks/{id}` against an nginx answering a fixed 578-byte task (same body,")
p("same server for every client), keys and `accept` headers sent by all. `rctasks`: `client:get`")
p("(decode + normalise + retry layer; `limiter = false`). `c_libcurl`: bench/curl_loop.c, one reused")
p("handle, no decoding. `rctasks_fresh`: a new client, so a new connection, per `get`.")
p("`socket_http`: `socket.http.request` + `cjson.decode` (over TLS: LuaSec's")
p("`ssl.https.request`), a new connection per call. `socket_ka`: a hand-written HTTP/1.1 keep-alive")
p("loop on one LuaSocket (LuaSec over TLS) + `cjson.decode`. `curl_cli`: one `curl` process per call.")
p("us/call: median over runs of each run's fastest tenth of its calls; CPU: the client process's, all calls.")
p("")
p("### Plain HTTP (loopback)")
p("")
local HTTP_ROWS = { { "lua5.4", "rctasks" }, { "luajit", "rctasks" }, { "c", "c_libcurl" },
  { "lua5.4", "rctasks_fresh" }, { "lua5.4", "socket_http" }, { "lua5.4", "socket_ka" }, { "luajit", "socket_ka" },
  { "lua5.4", "curl_cli" } }
peer_rows("http", HTTP_ROWS)
p("")
p("### HTTPS (same nginx, certificate generated at run time)")
p("")
local TLS_ROWS = { { "lua5.4", "rctasks" }, { "luajit", "rctasks" }, { "c", "c_libcurl" },
  { "lua5.4", "rctasks_fresh" }, { "lua5.4", "socket_http" }, { "lua5.4", "socket_ka" }, { "lua5.4", "curl_cli" } }
peer_rows("https", TLS_ROWS)
p("")
local function get_rps(name) local v = median(name, "best_per_call"); return v and 1 / v end
for _, lua in ipairs({ "lua5.4", "luajit" }) do
  local mine, c = get_rps("http rctasks " .. lua), get_rps("http c_libcurl")
  if mine and c then
    target("get throughput >= 85% of the bare C libcurl loop (" .. lua .. ")", mine / c, mine >= 0.85 * c)
  end
  local sh_ = get_rps("http socket_http lua5.4")
  if mine and sh_ then
    target("get throughput >= 1.5x socket.http.request + cjson (" .. lua .. ")", mine / sh_, mine >= 1.5 * sh_)
  end
  local ka = get_rps("http socket_ka " .. lua)
  if mine and ka then
    target("get throughput level with the hand-written LuaSocket keep-alive loop (" .. lua .. ", within 5%)",
      mine / ka, mine >= 0.95 * ka)
  end
end
local hs, h = median("https rctasks lua5.4", "best_per_call"), median("http rctasks lua5.4", "best_per_call")
if hs and h then target("HTTPS per-call time within 10% of HTTP (rctasks, lua5.4)", hs / h, hs <= 1.10 * h) end
local hsj, hj = median("https rctasks luajit", "best_per_call"), median("http rctasks luajit", "best_per_call")
if hsj and hj then target("HTTPS per-call time within 10% of HTTP (rctasks, luajit)", hsj / hj, hsj <= 1.10 * hj) end

p("### Connections and TLS handshakes, as the simulator counts them")
p("")
p("| scheme | gets | requests seen | connections | TLS handshakes | per 1,000 calls | us/call (sim) |")
p("|---|---|---|---|---|---|---|")
for _, scheme in ipairs({ "http", "https" }) do
  local k = "sim " .. scheme
  local req_, conn, hsk = median(k, "sim_requests"), median(k, "sim_connections"), median(k, "sim_tls_handshakes")
  if req_ then
    p("| %s | %d | %d | %d | %d | %.2f conn, %.2f handshakes | %s |", scheme, S.tls_count + 1, req_, conn, hsk,
      conn * 1000 / req_, hsk * 1000 / req_, us(median(k, "per_call")))
    if scheme == "https" then
      target("one TLS handshake for " .. (S.tls_count + 1) .. " sequential calls", hsk, hsk <= 1,
        string.format("%d handshakes, %d connections", hsk, conn))
    end
  end
end
p("")

if results["nginx rctasks"] then
  p("### Inside nginx (cosockets), `wrk -t1 -c8 -d%ds`, one worker", S.wrk)
  p("")
  p("| handler | requests/s |")
  p("|---|---|")
  p("| `client:get` over the cosocket transport (rctasks.transport.ngx) | %.0f |", median("nginx rctasks", "rps"))
  p("| `ngx.location.capture` of a keep-alive `proxy_pass` + `cjson.decode` | %.0f |", median("nginx capture", "rps"))
  p("| the upstream itself (fixed body, no handler), for scale | %.0f |", median("nginx upstream", "rps"))
  p("")
end

-- 3. Waiting
p("## 3. Waiting")
p("")
p("One task of the given length, on a clock sped up %dx on both sides (the simulator's `step`, the", S.scale)
p("client's `now`/`sleep`). Requests as counted by the simulator; time-to-notice in task seconds, from")
p("the completed task's `timestamp` to the moment the wait returned. All three poll through the same")
p("rctasks client; only the schedule differs. `go sdk`: 1 s doubling to 30 s, +<=100 ms jitter.")
p("")
p("| task | rctasks wait: requests | notice (s) | go sdk: requests | notice (s) | fixed 3 s: requests | notice (s) |")
p("|---|---|---|---|---|---|---|")
for _, d in ipairs(S.durations) do
  local function m(s, f) return median("wait " .. d .. " " .. s, f) end
  if not m("rctasks", "requests") then goto continue end
  p("| %d s | %s | %.2f | %s | %.2f | %s | %.2f |", d, m("rctasks", "requests"), m("rctasks", "notice"),
    m("gosdk", "requests"), m("gosdk", "notice"), m("fixed3", "requests"), m("fixed3", "notice"))
  local rq, gq = m("rctasks", "requests"), m("gosdk", "requests")
  target(string.format("waiting (%d s task): never more requests than the Go SDK schedule", d), rq / gq, rq <= gq,
    string.format("%s vs %s", rq, gq))
  -- Both sides add up to 0.1 s of random jitter per poll: over n polls their sums differ by noise
  -- of about 0.04 * sqrt(n) s (one sd); 0.1 * sqrt(n) is level, a schedule a step behind is not.
  local rn, gn = m("rctasks", "notice"), m("gosdk", "notice")
  local slack = 0.1 * math.sqrt(gq)
  target(string.format("waiting (%d s task): time-to-notice no worse than the Go SDK's (+%.2f s jitter noise)",
    d, slack), rn / gn, rn <= gn + slack, string.format("%.2f s vs %.2f s", rn, gn))
  ::continue::
end
p("")
p("`wait_all` over n tasks of %d s running at once, vs `client:wait` on each in turn:", S.wait_all_duration)
p("")
p("| tasks | wait_all: requests | until all done (s) | one wait each: requests | until all done (s) |")
p("|---|---|---|---|---|")
for _, k in ipairs(S.wait_all) do
  local function m(mode, f) return median("wait_all " .. k .. " " .. mode, f) end
  if m("wait_all", "requests") then
    p("| %d | %s | %.1f | %s | %.1f |", k, m("wait_all", "requests"), m("wait_all", "elapsed"),
      m("each", "requests"), m("each", "elapsed"))
  end
end
p("")

-- 4. Memory
p("## 4. Memory")
p("")
p("Resident set size of one process after %d and after %d `client:get` calls (no forced GC).", S.mem_small, S.mem_n)
p("")
p("| Lua | RSS after %d | RSS after %d | growth |", S.mem_small, S.mem_n)
p("|---|---|---|---|")
for _, lua in ipairs({ "lua5.4", "luajit" }) do
  local k = "memory " .. lua
  local a, b, g = median(k, "rss_small"), median(k, "rss_n"), median(k, "growth")
  if not g then goto next_lua end
  p("| %s | %.2f MiB | %.2f MiB | %+.0f KiB |", lua, a / 1048576, b / 1048576, g / 1024)
  target("memory flat within 1 MiB from " .. S.mem_small .. " to " .. S.mem_n .. " calls (" .. lua .. ")",
    g / 1048576, g <= 1048576, string.format("%+.0f KiB", g / 1024))
  ::next_lua::
end
p("")

-- 5. Hostile input
if results["hostile lua5.4"] then
  p("## 5. Hostile input")
  p("")
  p("The worst header blocks (64 KiB, 8 KiB lines) and error pages (4 KiB and 8 MiB) under the caps, parsed by")
  p("`rctasks.transport.http1` (`head_*`, `content_length`, `chunk_size`) or by `errors.http` with the core's")
  p("decoder (HTML 401 pages of `<title>` and spaces, a page of spaces, Spring JSON padded with spaces):")
  p("milliseconds per parse, and its ratio to one plain `string.find` over the same bytes (bench/hostile.lua).")
  p("")
  p("| input | bytes | lua5.4 ms | vs scan | luajit ms | vs scan |")
  p("|---|---|---|---|---|---|")
  local function fig(v, whole) return v and string.format((whole and v >= 10) and "%.0f" or "%.3f", v) or "-" end
  for input in tostring(results["hostile lua5.4"][1].inputs):gmatch("[^,]+") do
    local function m(lua, f) return median("hostile " .. lua, input .. "_" .. f) end
    p("| %s | %d | %s | %s | %s | %s |", input, m("lua5.4", "bytes"), fig(m("lua5.4", "ms")),
      fig(m("lua5.4", "ratio"), true), fig(m("luajit", "ms")), fig(m("luajit", "ratio"), true))
  end
  p("")
end

p("## Targets")
p("")
p("| target | ratio / figure | result |")
p("|---|---|---|")
local missed = 0
for _, t in ipairs(targets) do
  if not t.pass then missed = missed + 1 end
  p("| %s | %s%s | %s |", t.what, string.format("%.2f", t.ratio), t.detail and (" (" .. t.detail .. ")") or "",
    t.pass and "PASS" or "MISS")
end
p("")

local text = table.concat(out, "\n") .. "\n"
io.write("\n", text)
-- The Fleet section (bench/fleet.lua, `make bench-fleet`) is its runner's: kept as it was.
local fleet = (readfile(OUT) or ""):match("\n(## Fleet\n.*)$")
if fleet then text = text .. "\n" .. fleet:gsub("\n## [^F].*$", "\n") end
writefile(OUT, text)
print(string.format("bench: %d targets, %d missed; written to %s", #targets, missed, OUT))
