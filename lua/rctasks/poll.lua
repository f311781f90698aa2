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

-- run(exec, policy, o, deadline, watches, batch, hooks): poll every watch until it is done or the
-- deadline comes. o: the wait options (interval, backoff, max_interval, jitter; on_round(), called
-- before each sleep: the subscription guard renews its lease there).
-- batch(exec, deadline, pending) -> seen, covered, fresh | nil (no batch this round) | nil, err:
-- one request (wait_all's GET /tasks) or the board (another caller's poll) may observe many
-- watches: seen[w.id] is a value or an error for that watch, covered[w.id] true when the watch
-- needs no poll of its own this round, fresh true to restart the schedule (new tasks to watch).
-- hooks.refill() -> more watches (a scheduler's new tasks), asked every round; with it, run only
-- ends at the deadline or when hooks.stop() says so. hooks.done(w) is called as each watch ends;
-- a watch with its own w.deadline ends at it (w.expired_by_deadline). hooks.pause(d) -> the sleep
-- to take instead of d (the board's: a leader renews its lease for it, a follower reads sooner).
function M.run(exec, policy, o, deadline, watches, batch, hooks)
  hooks = hooks or {}
  local next_delay = M.schedule(o)
  local pending = {}
  local function add(list)
    for _, w in ipairs(list or {}) do
      w.misses, w.fails = w.misses or 0, w.fails or 0
      pending[#pending + 1] = w
    end
  end
  add(watches)
  local batch_fails, cut = 0, nil
  while #pending > 0 or hooks.refill do
    if hooks.refill then
      local more = hooks.refill()
      if more and #more > 0 then add(more); next_delay = M.schedule(o) end -- new tasks: poll them soon
    end
    local retries, hint, timed_out = {}, nil, false
    local function retrying(n, err)
      retries[#retries + 1] = { n, err }
      if err.retry_after and (not hint or err.retry_after > hint) then hint = err.retry_after end
    end
    local singles = pending
    local seen, covered, fresh -- (on a failed batch: nil, err)
    if batch and #pending > 0 then seen, covered, fresh = batch(exec, deadline, pending) end
    if seen then
      batch_fails, singles = 0, {}
      if fresh then next_delay = M.schedule(o) end
      for _, w in ipairs(pending) do
        local x = seen[w.id]
        if errors.is(x) then
          if failure(w, x, exec.now(), policy) then retrying(w.fails, x) end
        elseif x ~= nil then
          observe(w, x)
        elseif not covered[w.id] then
          singles[#singles + 1] = w
        end
      end
    elseif covered then -- the batch itself failed
      local err = covered
      if err.kind == "timeout" then
        timed_out, singles = true, {}
        if exec.now() < deadline then cut = err end -- cut short: the budget would not wait past it
      elseif err.retryable and policy:server_delay(err) ~= false then
        batch_fails, singles = batch_fails + 1, {} -- every pending watch waits through it, and a timeout names it
        for _, w in ipairs(pending) do w.failed = err end
        retrying(batch_fails, err)
      end -- else the batch failed for good: ask one by one
    end
    for _, w in ipairs(singles) do
      if timed_out then break end
      local v, perr = w:probe(exec, deadline)
      if v ~= nil then
        observe(w, v)
      elseif perr.kind == "timeout" then
        timed_out = true
        if exec.now() < deadline then cut = perr end
      elseif failure(w, perr, exec.now(), policy) then
        retrying(w.fails, perr)
      end
    end
    local still, now = {}, exec.now()
    for _, w in ipairs(pending) do
      if not w.done and w.deadline and now >= w.deadline then
        w.done, w.err, w.expired_by_deadline = true, w:expired(o), true
      end
      if not w.done then still[#still + 1] = w elseif hooks.done then hooks.done(w) end
    end
    pending = still
    if (#pending == 0 and not hooks.refill) or timed_out or now >= deadline or (hooks.stop and hooks.stop()) then
      break
    end
    local d = next_delay(hint)
    for _, r in ipairs(retries) do policy:report(r[1], d, r[2]) end
    if hooks.pause then d = hooks.pause(d) end
    if o.on_round then o.on_round() end
    exec:sleep(d, deadline)
  end
  for _, w in ipairs(pending) do
    w.failed = w.failed or cut -- what ended the wait before its deadline: a budget that would pass it
    w.done, w.err = true, w:expired(o)
    if hooks.done then hooks.done(w) end
  end
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

-- The board's round (rctasks.board): this caller says which tasks it waits on, then either
-- leads (polls every watched task, with one GET /tasks when more than o.list_above, and publishes
-- what it saw) or reads what the leader published. When the store fails, the caller polls its own
-- tasks this round, as it would without a board, and `notify` says so.
function M.shared_batch(board, o, notify, caller)
  local known = 0 -- watched tasks at the last round this caller led
  local leading = false
  -- Between rounds: a leader holds its lease for its next sleep and a margin (if it dies, the
  -- lease runs out that much later); a follower reads the board at least every margin, so it
  -- takes over soon after a lease runs out, and sees what the leader published soon after.
  local function pause(d)
    if leading then
      board:lead(caller, d + board.margin)
      return d
    end
    return math.min(d, board.margin)
  end
  -- (the scheduler of rctasks.background adds its own hooks to these)
  return function(exec, deadline, pending)
    exec:present()
    local ids = {}
    for i, w in ipairs(pending) do ids[i] = w.id end
    local ok, err = board:interest(ids, board.lease_ttl * 3)
    local leads
    if ok then leads, err = board:lead(caller) end
    leading = leads == true
    if leads == nil then
      notify("store", "the coordination store failed (" .. tostring(err) .. "): polling alone")
      return {}, {}
    end
    notify("store", nil)
    local covered = {}
    for _, id in ipairs(ids) do covered[id] = true end
    local seen = {}
    if not leads then
      for _, id in ipairs(ids) do
        board:breathe()
        local e = board:read(caller, id)
        if e then seen[id] = e.task or errors.new(e.error.kind or "http", e.error) end
      end
      return seen, covered
    end
    -- What another leader already published is used, not polled again: an ended task is not
    -- asked about twice, nor one published less than a first interval ago (leaders that end
    -- their own waits hand over one after another, and each would poll at once).
    local all, todo, mine, now = board:watched() or ids, {}, {}, board:now()
    local function settled(e) return e and (e.done or now - e.at < o.interval) end
    for _, id in ipairs(ids) do
      board:breathe()
      mine[id] = true
      local e = board:read(caller, id)
      if e then seen[id] = e.task or errors.new(e.error.kind or "http", e.error) end
      if not settled(e or board:peek(id)) then todo[#todo + 1] = id end
    end
    for _, id in ipairs(all) do
      if not mine[id] then
        board:breathe()
        if not settled(board:peek(id)) then todo[#todo + 1] = id end
      end
    end
    local results = {}
    if #todo > o.list_above then
      local list, lerr = M.list_tasks(exec, ONCE, deadline)
      if not list then return nil, lerr end
      for _, t in ipairs(list) do results[t.taskId] = t end
    end
    for _, id in ipairs(todo) do
      if results[id] == nil then
        local t, gerr = M.get_task(exec, ONCE, id, deadline)
        if gerr and gerr.kind == "timeout" then break end
        results[id] = t or gerr
      end
    end
    for _, id in ipairs(todo) do
      local r = results[id]
      board:breathe()
      if r ~= nil then
        if errors.is(r) then board:publish(id, nil, r, o.timeout) else board:publish(id, r, nil, o.timeout) end
        if mine[id] then board:read(caller, id) end -- (its own publish is no news to this caller)
        if mine[id] then seen[id] = r end
      end
    end
    local fresh = #todo > known
    known = #todo
    return seen, covered, fresh
  end, { pause = pause }
end

-- wait(exec, policy, id, o, deadline, shared) -> final task | nil, err. shared (or o.shared):
-- { board =, notify = } to share the polling with other callers (rctasks.board).
function M.wait(exec, policy, id, o, deadline, shared)
  shared = shared or o.shared
  local w = M.task_watch(id, o)
  local caller = shared and shared.board:caller()
  local batch, hooks
  if shared then batch, hooks = M.shared_batch(shared.board, o, shared.notify, caller) end
  M.run(exec, policy, o, deadline or exec.now() + o.timeout, { w }, batch, hooks)
  if shared then shared.board:resign(caller) end -- the next caller's round leads at once
  return w.value, w.err
end

-- One GET /tasks for every pending task, while more than o.list_above are pending.
local function list_batch(o)
  return function(exec, deadline, pending)
    if #pending <= o.list_above then return nil end
    local list, err = M.list_tasks(exec, ONCE, deadline)
    if not list then return nil, err end
    local by_id = {}
    for _, t in ipairs(list) do by_id[t.taskId] = t end
    return by_id, by_id
  end
end

-- The batch of many watches: the board's round when shared, else one GET /tasks per round.
local function batch_for(shared, o, caller)
  if shared then
    local batch, hooks = M.shared_batch(shared.board, o, shared.notify, caller)
    return batch, hooks
  end
  return list_batch(o), {}
end

-- serve(exec, policy, o, watches, refill, done, stop, shared): rounds without end for a scheduler
-- (rctasks.background): refill() brings new watches each round, done(w) reports each that ends,
-- stop() ends the rounds.
function M.serve(exec, policy, o, refill, done, stop, shared)
  local caller = shared and shared.board:caller()
  local batch, hooks = batch_for(shared, o, caller)
  hooks.refill, hooks.done, hooks.stop = refill, done, stop
  M.run(exec, policy, o, math.huge, {}, batch, hooks)
  if shared then shared.board:resign(caller) end
end

-- wait_all(exec, policy, ids, o, shared) -> { [id] = watch } with watch.value or watch.err for
-- every id. One GET /tasks per round while more than o.list_above tasks are pending (it shows
-- them all), single gets for the rest; through the board when shared.
function M.wait_all(exec, policy, ids, o, shared)
  shared = shared or o.shared
  local by_id, watches = {}, {}
  for _, id in ipairs(ids) do
    if not by_id[id] then
      by_id[id] = M.task_watch(id, o)
      watches[#watches + 1] = by_id[id]
    end
  end
  local caller = shared and shared.board:caller()
  local batch, hooks = batch_for(shared, o, caller)
  M.run(exec, policy, o, exec.now() + o.timeout, watches, batch, hooks)
  if shared then shared.board:resign(caller) end
  return by_id
end

return M
