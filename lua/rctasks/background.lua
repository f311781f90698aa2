-- rctasks.background: waits that outlive the nginx request that started them, any number of them.
--   serve(client, {dict=, wait=})           this worker's scheduler for the client's account (call
--                                            it in init_worker_by_lua; spawn_wait starts it too)
--   spawn_wait(client, id, {dict=, ttl=, wait=, on_done=})  record the task as waited on
--   result(id, {dict=, client=})            what was recorded for the task (any worker, any host)
-- One scheduler per worker and account, one ngx.timer: each round it picks up newly recorded
-- tasks and polls through the client's board (one poller for all workers and hosts sharing the
-- store, one GET /tasks per round), so 10,000 waits cost one request a round, not 10,000 timers.
-- Records live in the client's shared store (nginx's shared dict, or Redis), so they survive a
-- reload (and, in Redis, a restart): the next worker's scheduler resumes them, none is left
-- behind. A record: "state\ttask status\tresource id\tupdated\tmessage\tdeadline"; states waiting,
-- completed, failed (processing-error or an unknown status), timeout, error (http, transport,
-- decode). Every field passes through the client's redactor.
local check = require "rctasks.check"
local client = require "rctasks.client"
local defaults = require "rctasks.defaults"
local env = require "rctasks.env"
local errors = require "rctasks.errors"
local taskmod = require "rctasks.task"

local M = {}

local FIELDS = { "state", "task_status", "resource_id", "updated", "message", "deadline" }
local OUTCOME = { task = "failed", timeout = "timeout" }

local function encode(r, redact)
  local out = {}
  for i, f in ipairs(FIELDS) do
    local v = r[f]
    out[i] = v == nil and "" or redact(tostring(v)):gsub("%c", " ")
  end
  return table.concat(out, "\t")
end

local function decode(s)
  local r, i = {}, 0
  for v in (s .. "\t"):gmatch("([^\t]*)\t") do
    i = i + 1
    if FIELDS[i] and v ~= "" then r[FIELDS[i]] = v end
  end
  r.resource_id, r.updated, r.deadline = tonumber(r.resource_id), tonumber(r.updated), tonumber(r.deadline)
  return r
end

-- The store records go to: the client's shared one, else nginx's shared dict `dict`.
local function store_of(c, dict, who)
  local st = c and client.store_of(c)
  if st and st.shared then return st end
  local s, err = require("rctasks.store.shdict").new{ dict = dict or defaults.shared_dict }
  if not s then check.fail(who .. ": " .. err) end
  return s
end

local function key(account, id) return "bg:" .. account .. ":" .. id end

------------------------------------------------------------------------------------------------
-- The scheduler: poll.run over every recorded task of the account, refilled each round.

local schedulers = {} -- this worker's, by store and account
local callbacks = {}  -- task id -> on_done, for the tasks this worker spawned

local function record(c, st, k, r, ttl)
  r.updated = env.ngx().now()
  local ok, err = st:set(k, encode(r, function(s) return c:redact(s) end), ttl)
  if not ok then env.log("cannot record a background wait (" .. tostring(err) .. ")") end
end

local function final(err_or_task)
  if not errors.is(err_or_task) then
    local t = err_or_task
    return { state = "completed", task_status = t.status, resource_id = taskmod.resource_id(t) }
  end
  local err, last = err_or_task, err_or_task.task
  return { state = OUTCOME[err.kind] or "error", message = tostring(err),
           task_status = last and last.status, resource_id = last and taskmod.resource_id(last) }
end

local function run_scheduler(premature, sch)
  if premature then return end
  local c, st, prefix = sch.client, sch.store, "bg:" .. sch.account .. ":"
  local known = {}
  local function refill()
    local out = {}
    local keys = st:keys(prefix)
    local now = env.ngx().now()
    for _, k in ipairs(keys or {}) do
      local id = k:sub(#prefix + 1)
      if not known[id] then
        local s = st:get(k)
        local r = s and decode(s)
        if r and r.state == "waiting" then
          if r.deadline and r.deadline <= now then
            record(c, st, k, { state = "timeout", message = "task not done before its background wait's timeout",
                               task_status = r.task_status, deadline = r.deadline }, sch.ttl)
          else
            known[id] = true
            local w = client.task_watch(c, id, function(t)
              record(c, st, k, { state = "waiting", task_status = t.status, resource_id = taskmod.resource_id(t),
                                 deadline = r.deadline }, sch.ttl)
            end)
            w.deadline = r.deadline
            out[#out + 1] = w
          end
        end
      end
    end
    return out
  end
  local function done(w)
    known[w.id] = nil
    if w.err and w.err.kind == "timeout" and not w.expired_by_deadline then return end -- worker exiting
    local r = final(w.value or w.err)
    record(c, st, key(sch.account, w.id), r, sch.ttl)
    local cb = callbacks[w.id]
    if cb then
      callbacks[w.id] = nil
      local okd, e = pcall(cb, w.value, w.err, w.id)
      if not okd then env.log("spawn_wait on_done raised: " .. c:redact(tostring(e))) end
    end
  end
  local ok, err = pcall(client.serve_rounds, c, sch.wait, refill, done, function()
    return env.ngx().worker.exiting()
  end)
  if not ok then env.log("background scheduler stopped: " .. c:redact(tostring(err))) end
  schedulers[sch.id] = nil
  -- a raise is not the end: a new scheduler starts with the next spawn_wait or serve()
end

local SERVE_OPTS = { dict = "string", wait = "table", ttl = "number" }

-- serve(client, opts) -> true: this worker's scheduler for the client's account runs (started
-- once; later calls do nothing). opts.wait: the schedule (interval, max_interval, backoff,
-- jitter); opts.ttl: how long a finished record stays (default one day).
function M.serve(c, opts)
  opts = check.options(opts, SERVE_OPTS, "rctasks.background.serve")
  if getmetatable(c) ~= client.Client then check.fail("rctasks.background.serve: first argument must be a client") end
  local st = store_of(c, opts.dict, "rctasks.background.serve")
  local account = client.account_of(c)
  local id = tostring(st) .. account
  if schedulers[id] then return true end
  local sch = { id = id, client = c, store = st, account = account, ttl = opts.ttl or defaults.record_keep,
                wait = client.wait_options(opts.wait) }
  local ok, err = env.ngx().timer.at(0, run_scheduler, sch)
  if not ok then return nil, "rctasks.background.serve: cannot start a timer: " .. tostring(err) end
  schedulers[id] = sch
  return true
end

local SPAWN_OPTS = { dict = "string", ttl = "number", wait = "table", on_done = "function" }

-- spawn_wait(client, id, opts) -> true | true, "exists" | nil, msg. Returns at once: the task is
-- recorded as waited on, and this worker's scheduler (started if it is not, with opts.wait as its
-- schedule) picks it up. A task already recorded and not finished starts nothing new.
-- opts.wait.timeout: how long to wait (default 1800 s); opts.ttl: how long the finished record
-- stays (default one day); on_done(task, err, id) runs in this worker when the wait ends here
-- (not after a reload).
function M.spawn_wait(c, id, opts)
  opts = check.options(opts, SPAWN_OPTS, "rctasks.background.spawn_wait")
  if getmetatable(c) ~= client.Client then
    check.fail("rctasks.background.spawn_wait: first argument must be an rctasks client")
  end
  check.task_id(id)
  local wo = client.wait_options(opts.wait) -- misuse raises here, not later in the timer
  local st = store_of(c, opts.dict, "rctasks.background.spawn_wait")
  local account = client.account_of(c)
  local ngx = env.ngx()
  local k = key(account, id)
  local ttl = wo.timeout + (opts.ttl or defaults.record_keep)
  local fresh = encode({ state = "waiting", updated = ngx.now(), deadline = ngx.now() + wo.timeout }, tostring)
  local added, err = st:add(k, fresh, ttl)
  if added == nil then return nil, "rctasks.background.spawn_wait: store: " .. tostring(err) end
  if not added then
    local cur = st:get(k)
    if cur and decode(cur).state == "waiting" then return true, "exists" end
    st:set(k, fresh, ttl) -- finished before: wait again
  end
  st:set("bgid:" .. id, account, ttl)
  if opts.on_done then callbacks[id] = opts.on_done end
  local ok, serr = M.serve(c, { dict = opts.dict, wait = opts.wait })
  if not ok then return nil, serr end
  return true
end

-- result(id, {dict=, client=}) -> {state=, task_status=, resource_id=, updated=, message=} | nil
function M.result(id, opts)
  opts = check.options(opts, { dict = "string", client = "any" }, "rctasks.background.result")
  local st = store_of(opts.client, opts.dict, "rctasks.background.result")
  local account = st:get("bgid:" .. tostring(id))
  if not account then return nil end
  local s = st:get(key(account, id))
  return s and decode(s) or nil
end

return M
