-- One member of a fleet sharing an account through Redis, run as its own process by
-- spec/28-fleet_redis_spec.lua (and spec/ngx/10-fleet_spec.lua):  lua spec/helpers/member.lua MODE
-- MODE "gets": sends GET /tasks/MEMBER_TASK as fast as its budget lets it until MEMBER_UNTIL (epoch s);
-- MODE "wait": wait_all on MEMBER_TASKS (ids, comma separated), then one line per task in order;
-- MODE "run":  a keyed client:run("POST", "/acl/redisRules", {name = MEMBER_NAME}) with journal = true.
-- Environment: MEMBER_KEY, MEMBER_SECRET, MEMBER_URL (the account and the sim); MEMBER_REDIS (a URL;
-- unset or empty: no store, the control), MEMBER_REDIS_TIMEOUT (seconds, default 0.5);
-- MEMBER_STORE=memory (a store of this process alone instead of Redis: the journal's control);
-- MEMBER_LIMIT "L/W" (the budget); MEMBER_AT (epoch s: start then, so members start together);
-- MEMBER_INTERVAL (the wait's fixed poll interval, default 0.2); MEMBER_LEASE_MARGIN (the poller's
-- lease margin, default defaults.wait.lease_margin: to break the take-over on purpose).
-- Prints JSON lines, flushed: {pid=} first; {event=KIND, down=true|false, message=} for each
-- on_event; in "wait" {request=true, at=} before each request and {sleep=d, at=} before each sleep;
-- then the outcomes ({id=, status=, rid=, etype=, kind=} in "wait", {ok=, task=, id=, kind=} in
-- "run") and last {sent=N, done=true}. Nothing here prints a key.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = "build/" .. (_VERSION == "Lua 5.4" and "5.4" or "jit") .. "/?.so;" .. package.cpath
local cjson = require "cjson"
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local rctasks = require "rctasks"
local socket = require "socket"
local now = socket.gettime -- (epoch seconds: the spec and the sim read the same clock)

local env, mode = os.getenv, arg[1]
local function say(v)
  io.stdout:write(cjson.encode(v), "\n")
  io.stdout:flush()
end
local function num(name, default) return tonumber(env(name) or "") or default end

local stat = io.open("/proc/self/stat"):read("*l")
say({ pid = tonumber(stat:match("^(%d+)")) })
defaults.guard.max_wait = 0.2 -- (a keyed run waiting on another's lease tries again soon)
defaults.wait.lease_margin = num("MEMBER_LEASE_MARGIN", defaults.wait.lease_margin) -- (a broken variant)

local transport = require("rctasks.transport.curl").new{}
local sent = 0
local counted = { agent = transport.agent, request = function(_, req)
  sent = sent + 1
  if mode == "wait" then say({ request = true, at = now() }) end
  return transport:request(req)
end }

local opts = { api_key = env("MEMBER_KEY"), secret_key = env("MEMBER_SECRET"), base_url = env("MEMBER_URL"),
               transport = counted, retry = { base = 0.05 },
               on_event = function(kind, message) say({ event = kind, down = message ~= nil, message = message }) end,
               sleep = function(d)
                 if mode == "wait" then say({ sleep = d, at = now() }) end
                 core.sleep(d)
               end }
local redis = env("MEMBER_REDIS") or ""
if env("MEMBER_STORE") == "memory" then
  opts.store = require("rctasks.store.memory").new()
elseif redis ~= "" then
  opts.redis = { url = redis, timeout = num("MEMBER_REDIS_TIMEOUT", 0.5) }
end
local l, w = (env("MEMBER_LIMIT") or ""):match("^(%d+)/([%d.]+)$")
if l then opts.limiter = { limit = tonumber(l), window = tonumber(w) } end
if mode == "run" then opts.journal = true end
local client = rctasks.new(opts)

local at = num("MEMBER_AT")
if at and at > now() then core.sleep(at - now()) end

local iv = num("MEMBER_INTERVAL", 0.2)
local W = { interval = iv, max_interval = iv, backoff = 1, jitter = 0, timeout = 60 }
if mode == "gets" then
  local id, stop = env("MEMBER_TASK"), num("MEMBER_UNTIL")
  while now() < stop do client:get(id) end
elseif mode == "wait" then
  local ids = {}
  for id in env("MEMBER_TASKS"):gmatch("[^,]+") do ids[#ids + 1] = id end
  for _, r in ipairs(client:wait_all(ids, W)) do
    local t = r.task or (r.err and r.err.task)
    local e = t and type(t.response) == "table" and type(t.response.error) == "table" and t.response.error
    say({ id = r.id, status = t and t.status, rid = t and t:resource_id(), etype = e and e.type,
          kind = r.err and r.err.kind, why = r.err and tostring(r.err.message), at = now() })
  end
elseif mode == "run" then
  local t, rule = client:run("POST", "/acl/redisRules", { name = env("MEMBER_NAME"), redisRule = "+@read" },
    { key = "fleet/" .. env("MEMBER_NAME"), interval = 0.05, max_interval = 0.2, jitter = 0, timeout = 30 })
  if t then say({ ok = true, task = type(t) == "table" and t.taskId or t, id = rule and rule.id })
  else say({ ok = false, kind = rule.kind, message = tostring(rule.message) }) end
end
say({ sent = sent, done = true })
