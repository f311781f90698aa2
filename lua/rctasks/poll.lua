-- rctasks.poll: the one polling loop, and the two task fetches it is built on. wait, wait_all,
-- wait_ready and run's resource polls all go round `run`: one schedule (the Go SDK's: interval
-- doubling by backoff to max_interval, plus jitter), one deadline that nothing stretches, one
-- rule for the 404s of something not seen yet, one report per retry. The loop lives in Lua,
-- never in C, so that under nginx its sleeps (ngx.sleep) can yield.
--
-- A watch is what run polls: w:probe(exec, deadline) makes one request; w:see(value, previous)
-- judges what came back and sets w.done with w.value or w.err; w:expired(o) is its timeout error.
-- run sets w.last (the last value seen), w.failed (the last failure), and counts w.misses (404s
-- before the first sighting, waited through while below w.max_misses and before w.grace_until).
local core = require "rctasks.core"
local errors = require "rctasks.errors"
local retry = require "rctasks.retry"
local taskmod = require "rctasks.task"

local M = {}

local ONCE = retry.ONCE

local decode_task, decode_tasks = core.decode_task, core.decode_tasks -- (body, task_mt) from the executor

-- GET /tasks/{id} -> task | nil, err (err.task_id set).
function M.get_task(exec, policy, id, deadline)
  local t, err = exec:call("GET", "/tasks/" .. id, nil, decode_task, policy, deadline)
  if not t then err.task_id = id end
  return t, err
end

-- GET /tasks -> array of tasks, most recent status update first | nil, err.
function M.list_tasks(exec, policy, deadline)
  return exec:call("GET", "/tasks", nil, decode_tasks, policy, deadline)
end

-- The delay before each next round: a function of the server's hint (its Retry-After).
function M.schedule(o)
  local delay = o.interval
  return function(hint)
    local d = delay + o.jitter * math.random()
    if hint and hint > d then d = hint end -- the server knows best, but the deadline still holds
    delay = math.min(delay * o.backoff, math.max(o.max_interval, o.interval))
    return d
  end
end

-- A value came back for w.
local function observe(w, v)
  local prev = w.last
  w.last, w.failed, w.fails = v, nil, 0
  w:see(v, prev)
end

-- A poll of w failed with err (not the deadline). Returns err when it is worth polling again.
local function failure(w, err, now, policy)
  if err.status == 404 and w.last == nil and w.misses < w.max_misses and now < w.grace_until then
    w.misses = w.misses + 1 -- not there yet: the service lags its own answers
    return nil
  end
  if not err.retryable or policy:server_delay(err) == false then
    w.done, w.err = true, w:fatal(err)
    return nil
  end
  w.failed, w.fails = err, w.fails + 1
  return err
end

-- run(exec, policy, o, deadline, watches, batch): poll every watch until it is done or the
-- deadline comes. o: the wait options (interval, backoff, max_interval, jitter, list_above).
-- batch(exec, deadline) -> { [w.id] = value } | nil, err may observe many watches in one request
-- (wait_all's GET /tasks); it is used while more than o.list_above watches are pending.
function M.run(exec, policy, o, deadline, watches, batch)
  local next_delay = M.schedule(o)
  local pending = {}
  for _, w in ipairs(watches) do
    w.misses, w.fails = w.misses or 0, w.fails or 0
    pending[#pending + 1] = w
  end
  local batch_fails = 0
  while #pending > 0 do
    local retries, hint, timed_out = {}, nil, false
    local function retrying(n, err)
      retries[#retries + 1] = { n, err }
      if err.retry_after and (not hint or err.retry_after > hint) then hint = err.retry_after end
    end
    local singles = pending
    if batch and #pending > o.list_above then
      local seen, err = batch(exec, deadline)
      singles = {}
      if seen then
        batch_fails = 0
        for _, w in ipairs(pending) do
          if seen[w.id] ~= nil then observe(w, seen[w.id]) else singles[#singles + 1] = w end
        end
      elseif err.kind == "timeout" then
        timed_out = true
      elseif err.retryable and policy:server_delay(err) ~= false then
        batch_fails = batch_fails + 1 -- every pending watch waits through it, and a timeout names it
        for _, w in ipairs(pending) do w.failed = err end
        retrying(batch_fails, err)
      else
        singles = pending -- the batch failed for good: ask one by one
      end
    end
    for _, w in ipairs(singles) do
      if timed_out then break end
      local v, err = w:probe(exec, deadline)
      if v ~= nil then
        observe(w, v)
      elseif err.kind == "timeout" then
        timed_out = true
      elseif failure(w, err, exec.now(), policy) then
        retrying(w.fails, err)
      end
    end
    local still = {}
    for _, w in ipairs(pending) do if not w.done then still[#still + 1] = w end end
    pending = still
    if #pending == 0 or timed_out or exec.now() >= deadline then break end
    local d = next_delay(hint)
    for _, r in ipairs(retries) do policy:report(r[1], d, r[2]) end
    exec:sleep(d, deadline)
  end
  for _, w in ipairs(pending) do w.done, w.err = true, w:expired(o) end
end

------------------------------------------------------------------------------------------------
-- Tasks

local TaskWatch = {}
TaskWatch.__index = TaskWatch

-- A watch of one task until it ends: o.on_update(task, previous) on the first status and on
-- every change; up to o.early_404 404s before it is first seen.
function M.task_watch(id, o)
  return setmetatable({ id = id, max_misses = o.early_404, grace_until = math.huge, on_update = o.on_update },
    TaskWatch)
end

function TaskWatch:probe(exec, deadline) return M.get_task(exec, ONCE, self.id, deadline) end

function TaskWatch:see(t, prev)
  if self.on_update and (prev == nil or t.status ~= prev.status) then self.on_update(t, prev) end
  if taskmod.ok(t) then
    self.done, self.value = true, t
  elseif taskmod.failed(t) or not taskmod.known(t.status) then
    self.done, self.err = true, errors.task(t)
  end
end

function TaskWatch:fatal(err)
  err.task, err.task_id = err.task or self.last, self.id
  return err
end

function TaskWatch:expired(o)
  local last, failed = self.last, self.failed
  return errors.timeout(string.format("task not done after %gs (last status %s%s)", o.timeout,
    last and tostring(last.status) or "never seen", failed and "; last error: " .. tostring(failed.message) or ""),
    { task = last, task_id = self.id, cause = failed })
end

-- wait(exec, policy, id, o, deadline) -> final task | nil, err
function M.wait(exec, policy, id, o, deadline)
  local w = M.task_watch(id, o)
  M.run(exec, policy, o, deadline or exec.now() + o.timeout, { w })
  return w.value, w.err
end

local function list_batch(exec, deadline)
  local list, err = M.list_tasks(exec, ONCE, deadline)
  if not list then return nil, err end
  local by_id = {}
  for _, t in ipairs(list) do by_id[t.taskId] = t end
  return by_id
end

-- wait_all(exec, policy, ids, o) -> { [id] = watch } with watch.value or watch.err for every id.
-- One GET /tasks per round while more than o.list_above tasks are pending (it shows them all),
-- single gets for the rest.
function M.wait_all(exec, policy, ids, o)
  local by_id, watches = {}, {}
  for _, id in ipairs(ids) do
    if not by_id[id] then
      by_id[id] = M.task_watch(id, o)
      watches[#watches + 1] = by_id[id]
    end
  end
  M.run(exec, policy, o, exec.now() + o.timeout, watches, list_batch)
  return by_id
end

return M
