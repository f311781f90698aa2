-- A provisioning script for the multi-process specs (spec/25, spec/26), run as its own process:
--   lua spec/helpers/worker.lua MODE
-- MODE "databases": create WORKER_DBS databases (named WORKER_NAME-1..n) in subscription
--   WORKER_SUB, one run each, keyed WORKER_NAME/<i> when a journal is set;
-- MODE "stack": the demo's stack (a subscription, two databases, an ACL rule, a role, a user) as
--   one pipeline named and keyed WORKER_STACK (default "stack"; keyed only with a journal).
-- Environment: WORKER_KEY, WORKER_SECRET, WORKER_URL, WORKER_JOURNAL (a file; unset: none),
-- WORKER_GUARD_WAIT, WORKER_GUARD_TTL (the guard's longest wait between tries, its leases' ttl),
-- WORKER_LAG (the journal's lag), WORKER_KILL_AT "N:before" or "N:after" (SIGKILL this process
-- just before its Nth request is sent, or just after its answer arrived, before rctasks sees it:
-- the crash window itself). Prints one JSON line per outcome
-- ({ok=true,id=} or {ok=false,kind=,code=,message=}) and a last line {requests=N}.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/" .. (_VERSION == "Lua 5.4" and "5.4" or "jit") .. "/?.so;" .. package.cpath
local cjson = require "cjson"
local defaults = require "rctasks.defaults"
local rctasks = require "rctasks"

local mode = arg[1]
local env = os.getenv
defaults.guard.max_wait = tonumber(env("WORKER_GUARD_WAIT")) or defaults.guard.max_wait
defaults.journal.lag = tonumber(env("WORKER_LAG")) or defaults.journal.lag
defaults.guard.ttl = tonumber(env("WORKER_GUARD_TTL")) or defaults.guard.ttl

-- The libcurl transport, with a kill point.
local transport = require("rctasks.transport.curl").new{}
local kill_n, kill_when = (env("WORKER_KILL_AT") or ""):match("^(%d+):(%a+)$")
if kill_n then
  local inner, n = transport, 0
  local function die() os.execute("kill -9 $PPID") end -- the shell's parent: this process
  transport = { agent = inner.agent, stats = function() return inner:stats() end, request = function(_, req)
    n = n + 1
    if n == tonumber(kill_n) and kill_when == "before" then die() end
    local res, err = inner:request(req)
    if n == tonumber(kill_n) then die() end
    return res, err
  end }
end
local journal = env("WORKER_JOURNAL")
if journal == "" then journal = nil end
local client = rctasks.new{ api_key = env("WORKER_KEY"), secret_key = env("WORKER_SECRET"),
                            base_url = env("WORKER_URL"), journal = journal,
                            retry = { base = 0.05 }, transport = transport }
local W = { interval = 0.05, max_interval = 0.2, jitter = 0.02, timeout = 120 }

local function say(v)
  io.stdout:write(cjson.encode(v), "\n")
  io.stdout:flush()
end

local function outcome(ok, err, id)
  if ok then say({ ok = true, id = id }) else
    say({ ok = false, kind = err.kind, code = err.code, message = tostring(err.message) })
  end
end

if mode == "databases" then
  local name, sub = env("WORKER_NAME"), env("WORKER_SUB")
  for i = 1, tonumber(env("WORKER_DBS")) do
    local o = {}
    for k, v in pairs(W) do o[k] = v end
    o.ready = true
    if journal then o.key = name .. "/" .. i end
    local t, db = client:run("POST", "/subscriptions/" .. sub .. "/databases",
                             { name = name .. "-" .. i, memoryLimitInGb = 1 }, o)
    outcome(t, db, t and db and db.databaseId)
  end
elseif mode == "stack" then
  local stack = env("WORKER_STACK") or "stack" -- names and the key: several stacks in one account
  local function database(n)
    return { name = n, path = function(r) return "/subscriptions/" .. r.subscription.id .. "/databases" end,
             body = { name = n, memoryLimitInGb = 1 } }
  end
  local o = {}
  for k, v in pairs(W) do o[k] = v end
  if journal then o.key = stack end
  local r, err = client:pipeline({
    { name = "subscription", path = "/subscriptions", body = { name = stack } },
    database("cache"),
    database("sessions"),
    { name = "rule", path = "/acl/redisRules", body = { name = stack .. "-ro", redisRule = "+@read ~*" } },
    { name = "role", path = "/acl/roles", body = function(done)
        return { name = stack .. "-readers", redisRules = { { ruleName = stack .. "-ro", databases = {
          { subscriptionId = done.subscription.id, databaseId = done.cache.id },
          { subscriptionId = done.subscription.id, databaseId = done.sessions.id } } } } }
      end },
    { name = "user", path = "/acl/users",
      body = { name = stack .. "-app", role = stack .. "-readers", password = "Stack-App-26!" } },
  }, o)
  outcome(r, err, r and r.user.id)
end
say({ requests = client:stats().requests })
