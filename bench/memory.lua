-- Case 4, memory: resident set size after `small` and after `n` client:get calls in one process.
-- usage: lua bench/memory.lua base=http://127.0.0.1:P/v1 id=TASKID small=1000 n=100000
-- Keys from BENCH_KEY / BENCH_SECRET. No forced collection: what a long-running poller sees.
local lib = require "lib"
local rctasks = require "rctasks"

local a = lib.args(arg)
local base, id = lib.need(a, "base"), lib.need(a, "id")
local small, n = a.small or 1000, lib.need(a, "n")
local c = rctasks.new{ api_key = assert(os.getenv("BENCH_KEY")), secret_key = assert(os.getenv("BENCH_SECRET")),
  base_url = base, ca_file = a.ca, limiter = false }

local function calls(k)
  for _ = 1, k do
    local t, err = c:get(id)
    if not t then error("get failed: " .. tostring(err)) end
  end
end

calls(small)
local rss_small = lib.rss()
calls(n - small)
local rss_n = lib.rss()
c:close()
lib.emit{ case = "memory", lua = lib.interpreter(), small = small, n = n, rss_small = rss_small, rss_n = rss_n,
  growth = rss_n - rss_small, lua_kb = collectgarbage("count") }
