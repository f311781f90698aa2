-- The fleet benchmarks (`make bench-fleet`, issue 12): many processes and nginx workers on one
-- account key, with and without a shared Redis, and with Redis SIGKILLed and restarted mid-run.
-- Starts the simulator, a redis-server and two nginx of its own on free loopback ports (stopped at
-- the end, whatever happens), runs each case once, prints a table of figures with each target's
-- PASS/MISS and writes them into the "Fleet" section of bench/RESULTS.md (the rest is kept).
--   lua5.4 bench/fleet.lua [smoke=1] [out=bench/RESULTS.md] [only=budget|watch|scale]
-- smoke=1: every case once with tiny sizes (spec/14-bench_smoke_spec.lua), no claims.
-- Counts (429s, requests per round, worst windows, outcomes lost) are the claims; times (ping
-- p99, time-to-notice) depend on a machine shared with other work.
package.path = "bench/?.lua;lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath
local socket = require "socket"
local lib = require "lib"
local E = require "fleet_env"
local C = require "fleet_cases"

local opts = lib.args(arg)
local SMOKE = opts.smoke == 1
local OUT = opts.out or "bench/RESULTS.md"
assert(io.open(E.ROOT .. "/bench/fleet.lua"), "run bench/fleet.lua from the repository root")

local S = SMOKE and {
  budget = { procs = 2, limit = 12, window = 2, seconds = 4 },
  watch = { procs = 2, waiters = 8, tasks = 4, first = 1.5, last = 3, interval = 0.5 },
  scale = { n = 200, interval = 0.5, step = 3, wrk = 1 },
} or {
  budget = { procs = 6, limit = 120, window = 10, seconds = 60 },
  watch = { procs = 4, waiters = 100, tasks = 20, first = 11, last = 30, interval = 1 },
  scale = { n = 10000, interval = 1, step = 20, wrk = 5 },
}

local results = {}
local t_start = socket.gettime()
print("bench/fleet: " .. (SMOKE and "smoke run" or "full run") .. ", servers in " .. E.open_dir())
local ok_run, run_err = pcall(function()
  E.start_sim()
  E.start_redis()
  local budget_ngx = E.start_nginx("budget", 2, "8m")
  local scale_ngx = E.start_nginx("scale", 1, SMOKE and "8m" or "128m")
  local function want(name) return not opts.only or name:find(opts.only, 1, true) end
  if want("budget") then
    for _, mode in ipairs({ "redis", "none", "fault" }) do
      io.write("bench/fleet: budget ", mode, " (", S.budget.seconds, " s) ... ")
      io.flush()
      results["budget " .. mode] = C.budget(S.budget, mode, budget_ngx)
      print("done")
    end
  end
  if want("watch") then
    for _, mode in ipairs({ "redis", "none", "fault" }) do
      io.write("bench/fleet: watch ", mode, " ... ")
      io.flush()
      results["watch " .. mode] = C.watch(S.watch, mode)
      print("done")
    end
  end
  if want("scale") then
    io.write("bench/fleet: ", S.scale.n, " background waits in one nginx worker ... ")
    io.flush()
    results.scale = C.scale(S.scale, scale_ngx)
    print("done")
  end
end)
E.stop_all()
if not ok_run then
  io.stderr:write(tostring(run_err), "\n", "bench/fleet: logs kept in ", E.DIR, "\n")
  os.exit(1)
end
E.sh("rm -rf " .. E.DIR)
local elapsed = socket.gettime() - t_start

------------------------------------------------------------------------------------------------
-- Report

local out, targets = {}, {}
local function p(fmt, ...) out[#out + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
local function target(what, figure, pass) targets[#targets + 1] = { what = what, figure = figure, pass = pass } end
local function f1(v) return v and string.format("%.1f", v) or "-" end
local function f2(v) return v and string.format("%.2f", v) or "-" end
local function pct(v) return v and string.format("%.0f%%", v * 100) or "-" end

local function version(cmd, pat)
  local _, o = E.sh(cmd)
  return (pat and o:match(pat)) or o:match("[^\n]*")
end
local cpu = (E.read("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"

p("## Fleet")
p("")
p("Written by `make bench-fleet` (`lua5.4 bench/fleet.lua%s`) on %s%s, in %.0f s.", SMOKE and " smoke=1" or "",
  os.date("!%Y-%m-%d %H:%M UTC"), SMOKE and " (SMOKE RUN: tiny sizes, figures meaningless)" or "", elapsed)
p("Machine: %s cores, %s, Linux %s (shared with other work: counts are the claims, times are not).",
  version("nproc"), cpu, version("uname -r"))
p("Versions: commit %s; %s; %s; %s (LuaJIT in its workers); the simulator on that nginx.",
  version("git rev-parse --short HEAD"), version("lua5.4 -v", "(Lua [%d%.]+)"),
  version("redis-server --version", "(v=[%d%.]+)"):gsub("v=", "redis-server "), version("nginx -v", "(nginx/[%d%.]+)"))
p("")

local B = S.budget
local budget_rows = { { "redis", "Redis (shared budget)" }, { "none", "no Redis (the control)" },
  { "fault", "Redis SIGKILLed, restarted" } }
if results["budget redis"] then
  p("### One budget for %d processes and %d nginx workers", B.procs, 2)
  p("")
  p("%d plain-Lua processes and the %d workers of one nginx run `client:get` in a loop for %d s on one key,", B.procs,
    2, B.seconds)
  p("each with `limiter = { limit = %d, window = %d }` (and `redis = url`); the simulator's account allows", B.limit,
    B.window)
  p("%d requests per %d s (a fixed window from its first request) and logs every arrival. Budget used: the", B.limit,
    B.window)
  p("requests that arrived in the %d s over %d x %d / %d. Worst window: the most arrivals in any %d s.", B.seconds,
    B.limit, B.seconds, B.window, B.window)
  p("The fault run SIGKILLs redis-server at a third of the run and restarts it, empty, at two thirds.")
  p("")
  p("| run | requests in %d s | budget used | worst %d s window | vs limit | 429s | calls that failed |"
    .. " budget events |", B.seconds, B.window)
  p("|---|---|---|---|---|---|---|---|")
  for _, row in ipairs(budget_rows) do
    local r = results["budget " .. row[1]]
    if r then
      p("| %s | %d | %s | %d | %.2fx | %d | %d | %d |", row[2], r.in_run, pct(r.used), r.worst, r.worst / B.limit,
        r.rate_limited, r.lost, r.events)
    end
  end
  local r = results["budget fault"]
  if r then
    p("")
    p("Fault run: Redis down from %.1f s to %.1f s. The worst %d s window across the kill held %d, inside the",
      r.down, r.up, B.window, r.worst_kill)
    p("outage (the local shares alone) %d, across the restart (an empty log) %d.", r.worst_down, r.worst_restart)
  end
  p("")
  local s, n = results["budget redis"], results["budget none"]
  target("budget with Redis: no 429", tostring(s.rate_limited), s.rate_limited == 0)
  target("budget with Redis: at least 90% of the budget used", pct(s.used), s.used >= 0.9)
  target("budget with Redis: no " .. B.window .. " s window over the limit", s.worst .. " / " .. B.limit,
    s.worst <= B.limit)
  if n then target("budget without Redis (control): the 429s show", tostring(n.rate_limited), n.rate_limited > 0) end
  if r then
    target("budget, Redis killed and restarted: no call failed", tostring(r.lost), r.lost == 0)
    target("budget, Redis killed and restarted: no 429", tostring(r.rate_limited), r.rate_limited == 0)
    target("budget, Redis killed and restarted: no window over the limit",
      string.format("%d / %d (%.2fx)", r.worst, B.limit, r.worst / B.limit), r.worst <= B.limit)
  end
end

local W = S.watch
if results["watch redis"] then
  p("### Shared watches")
  p("")
  p("%d waiters (`client:wait`, coroutines of one client per process) across %d processes on %d tasks ending",
    W.waiters, W.procs, W.tasks)
  p("%g to %g s after the start, polling every %g s (no backoff). A round: %g s. Requests: all the", W.first, W.last,
    W.interval, W.interval)
  p("account's, counted by the simulator; worst round: the most in any %g s. Time-to-notice: from the", W.interval)
  p("completed task's timestamp to the wait's return, over all waiters.")
  p("")
  p("| run | requests | per round (mean) | worst round | notice p50 (s) | p95 (s) | max (s) | outcomes lost |")
  p("|---|---|---|---|---|---|---|---|")
  for _, row in ipairs(budget_rows) do
    local r = results["watch " .. row[1]]
    if r then
      p("| %s | %d | %s | %d | %s | %s | %s | %d |", row[2], r.requests, f1(r.per_round), r.worst_round,
        f2(r.notice_p50), f2(r.notice_p95), f2(r.notice_max), r.lost + (r.waiters - r.ok - r.lost))
    end
  end
  local f = results["watch fault"]
  if f then
    p("")
    p("Fault run: Redis down from %.1f s to %.1f s after the start (the waiters poll alone meanwhile).", f.down, f.up)
  end
  p("")
  local s, n = results["watch redis"], results["watch none"]
  target("watches with Redis: at most 3 requests a round", tostring(s.worst_round), s.worst_round <= 3)
  target("watches with Redis: every waiter got its outcome", (s.ok .. " / " .. s.waiters), s.ok == s.waiters)
  if n then
    target("watches without Redis (control): about one request per waiter a round", tostring(n.worst_round),
      n.worst_round >= 0.8 * n.waiters)
  end
  if f then
    target("watches, Redis killed and restarted: no outcome lost", (f.ok .. " / " .. f.waiters), f.ok == f.waiters)
  end
end

local sc = results.scale
if sc then
  p("### Background waits at scale in one nginx worker")
  p("")
  p("%d `background.spawn_wait` in one worker (shared dict store), one scheduler polling every %g s; tasks", sc.n,
    sc.interval)
  p("end %g s after their creation. `/ping` p99 from `wrk -t1 -c4 -d%ds --latency` on the same worker,",
    2 * S.scale.step, S.scale.wrk)
  p("idle and while the waits run; memory: the worker's Lua heap after a full collection and the shared dict's")
  p("bytes in use, while they run minus before.")
  p("")
  p("| waits | requests | per round (mean) | worst round | /ping p99 idle | /ping p99 running | Lua heap per wait |"
    .. " shared dict per wait | completed |")
  p("|---|---|---|---|---|---|---|---|---|")
  p("| %d | %d | %s | %d | %.2f ms | %.2f ms | %.0f B | %.0f B | %d |", sc.n, sc.requests, f1(sc.per_round),
    sc.worst_round, sc.ping_idle.p99, sc.ping_busy.p99, sc.lua_per_task, sc.dict_per_task, sc.completed)
  p("")
  target(sc.n .. " background waits: at most 3 requests a round", tostring(sc.worst_round), sc.worst_round <= 3)
  target(sc.n .. " background waits: every one completed", sc.completed .. " / " .. sc.n, sc.completed == sc.n)
end

p("### Fleet targets")
p("")
p("| target | figure | result |")
p("|---|---|---|")
local missed = 0
for _, t in ipairs(targets) do
  if not t.pass then missed = missed + 1 end
  p("| %s | %s | %s |", t.what, t.figure, t.pass and "PASS" or "MISS")
end
p("")

-- Into RESULTS.md: the Fleet section replaced (up to the next "## " heading), or added at the end.
local section = table.concat(out, "\n") .. "\n"
io.write("\n", section)
local old = E.read(OUT) or ""
local a, b = old:find("\n## Fleet\n", 1, true)
local text
if a then
  local rest = old:find("\n## ", b, true)
  text = old:sub(1, a) .. section .. (rest and old:sub(rest) or "")
else
  text = old .. (old == "" and "" or (old:sub(-1) == "\n" and "\n" or "\n\n")) .. section
end
E.write(OUT, text)
print(string.format("bench/fleet: %d targets, %d missed; written to %s", #targets, missed, OUT))
