-- rctasks.wait: poll tasks until they end (one for client:wait, many for client:wait_all).
-- The loop lives in Lua, never in C, so that under nginx the sleeps (ngx.sleep) can yield
-- (DESIGN: no C frame below a yield).
-- Schedule: `interval` doubling (`backoff`) to `max_interval`, plus up to `jitter` seconds: the
-- Go SDK's schedule, so never more requests than it spends; a server's Retry-After overrides the
-- cap, and nothing overrides the deadline.
local core = require "rctasks.core"
local errors = require "rctasks.errors"
local taskmod = require "rctasks.task"

local M = {}

local DEFAULTS = { timeout = 1800, interval = 1, max_interval = 30, backoff = 2, jitter = 0.1 }
M.DEFAULTS = DEFAULTS
M.EARLY_404 = 5 -- 404s tolerated before the task is first seen: the task service lags the API

-- Check wait options; returns a full copy. Misuse raises at the caller's call site.
function M.options(opts, level)
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  if opts == nil then return o end
  if type(opts) ~= "table" then error("rctasks.wait: options must be a table", level) end
  for k, v in pairs(opts) do
    if k == "on_update" then
      if type(v) ~= "function" then error("rctasks.wait: on_update must be a function", level) end
    elseif DEFAULTS[k] == nil then
      error("rctasks.wait: unknown option '" .. tostring(k) .. "'", level)
    elseif type(v) ~= "number" or v ~= v or v < 0 then
      error("rctasks.wait: option '" .. k .. "' must be a non-negative number", level)
    end
    o[k] = v
  end
  if o.backoff < 1 then error("rctasks.wait: backoff must be >= 1", level) end
  return o
end

local function failure(t)
  local what = taskmod.error_text(t)
  local msg
  if t.status == taskmod.ERROR then
    msg = "task failed: " .. (what or t.description or "processing-error")
  else
    msg = "task ended in unknown status '" .. tostring(t.status) .. "'"
  end
  return errors.new("task", { message = msg, task = t, code = t.response and
    type(t.response.error) == "table" and t.response.error.type or nil })
end

-- The poll schedule as a function: the next sleep, given a server's Retry-After hint.
function M.schedule(o)
  local delay = o.interval
  return function(hint)
    local d = delay + o.jitter * math.random()
    if hint and hint > d then d = hint end -- the server knows best, but not past the deadline
    delay = math.min(delay * o.backoff, math.max(o.max_interval, o.interval))
    return d
  end
end

-- Sleep the next scheduled delay, never past the deadline; false once the deadline has come.
function M.pause(client, next_delay, deadline, hint)
  local left = deadline - client.now()
  if left <= 0 then return false end
  client.sleep(math.min(next_delay(hint), left))
  return true
end

-- Feed one poll's outcome into a task's state `s`; sets s.done with s.task or s.err when the task
-- has ended. Returns the server's Retry-After for a failure worth waiting through.
local function observe(client, s, o, t, err)
  if t then
    if not s.last or t.status ~= s.last.status then
      if o.on_update then o.on_update(t, s.last) end
    end
    s.last, s.failed, s.fails = t, nil, 0
    if t.status == taskmod.COMPLETED then s.done, s.task = true, t
    elseif t.status == taskmod.ERROR or not taskmod.known(t.status) then s.done, s.err = true, failure(t) end
    return nil
  end
  s.failed = err
  if err.status == 404 and not s.last and s.misses < M.EARLY_404 then
    s.misses = s.misses + 1
  elseif not err.retryable then
    err.task, err.task_id = err.task or s.last, s.id
    s.done, s.err = true, err
  else
    -- Polling on is this wait's retry: on_retry sees it, counting failures in a row.
    s.fails = (s.fails or 0) + 1
    local on_retry = client.retry and client.retry.on_retry
    if on_retry then on_retry({ attempt = s.fails, error = err, method = err.method, url = err.url }) end
    return err.retry_after
  end
end

local function timeout_error(s, o)
  local failed = s.failed
  return errors.new("timeout", {
    message = string.format("task not done after %gs (last status %s%s)", o.timeout,
      s.last and s.last.status or "never seen", failed and "; last error: " .. tostring(failed.message) or ""),
    task = s.last, task_id = s.id, retryable = true, cause = failed,
  })
end

-- run(client, ids, o, list_above) -> { [id] = state } with state.task or state.err for every id.
-- One GET /tasks per round while more than `list_above` tasks are pending (it shows them all),
-- single gets for the rest. Each poll is a single attempt (ctl.once): this loop is the retry
-- loop, so failures are never retried twice over.
function M.run(client, ids, o, list_above)
  local deadline = client.now() + o.timeout
  local next_delay = M.schedule(o)
  local ctl = { once = true, deadline = deadline }
  local state, pending = {}, {}
  for _, id in ipairs(ids) do
    if not state[id] then
      state[id] = { id = id, misses = 0 }
      pending[#pending + 1] = id
    end
  end
  local timed_out, list_fails = false, 0
  while #pending > 0 do
    local hint, singles = nil, pending
    if #pending > list_above then
      singles = {}
      local list, err = client:call("GET", "/tasks", nil, ctl, core.decode_tasks)
      if list then list_fails = 0 end
      local by_id = {}
      for _, t in ipairs(list or {}) do by_id[t.taskId] = t end
      for _, id in ipairs(pending) do
        if by_id[id] then
          observe(client, state[id], o, by_id[id])
        elseif list or err.retryable == false then
          singles[#singles + 1] = id -- not listed (any more), or the list failed for good: ask singly
        end
      end
      if not list then
        if err.kind == "timeout" then
          timed_out = true
        elseif err.retryable then -- every pending task waits through it, and a timeout names it
          for _, id in ipairs(pending) do state[id].failed = err end
          local on_retry = client.retry and client.retry.on_retry
          list_fails = list_fails + 1
          if on_retry then on_retry({ attempt = list_fails, error = err, method = err.method, url = err.url }) end
          hint = err.retry_after
        end
      end
    end
    for _, id in ipairs(singles) do
      if timed_out then break end
      local t, err = client:get(id, ctl)
      if err and err.kind == "timeout" then
        timed_out = true
      else
        local h = observe(client, state[id], o, t, err)
        if h and (not hint or h > hint) then hint = h end
      end
    end
    local still = {}
    for _, id in ipairs(pending) do if not state[id].done then still[#still + 1] = id end end
    pending = still
    if #pending == 0 or timed_out or not M.pause(client, next_delay, deadline, hint) then break end
  end
  for _, id in ipairs(pending) do
    local s = state[id]
    s.done, s.err = true, timeout_error(s, o)
  end
  return state
end

-- wait(client, id, o) -> final task | nil, err: run() over one task.
function M.wait(client, id, o)
  local s = M.run(client, { id }, o, math.huge)[id]
  return s.task, s.err
end

return M
