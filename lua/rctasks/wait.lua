-- rctasks.wait: poll one task until it ends. The loop lives in Lua, never in C, so that under
-- nginx the sleeps (ngx.sleep) can yield (DESIGN: no C frame below a yield).
-- Schedule: `interval` doubling (`backoff`) to `max_interval`, plus up to `jitter` seconds: the
-- Go SDK's schedule, so never more requests than it spends; a server's Retry-After overrides the
-- cap, and nothing overrides the deadline.
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
M.failure = failure -- wait_all (workflow.lua) reports failed tasks the same way

-- wait(client, id, opts): client:get(id, {once = true, deadline = d}) is one poll, no retries
-- of its own: this loop is the retry loop, so failures are not retried twice over.
function M.wait(client, id, o)
  local now, sleep = client.now, client.sleep
  local deadline = now() + o.timeout
  local delay = o.interval
  local last, seen, misses = nil, false, 0
  local failed -- the latest failure waited through: a timeout must say why, not just "never seen"
  while true do
    local t, err = client:get(id, { once = true, deadline = deadline })
    local hint -- a server's Retry-After
    if t then
      if not last or t.status ~= last.status then
        if o.on_update then o.on_update(t, last) end
      end
      last, seen = t, true
      failed = nil
      if t.status == taskmod.COMPLETED then return t end
      if t.status == taskmod.ERROR or not taskmod.known(t.status) then return nil, failure(t) end
    else
      local early404 = err.status == 404 and not seen and misses < M.EARLY_404
      if err.kind == "timeout" then
        break
      elseif early404 then
        misses = misses + 1
      elseif not err.retryable then
        err.task, err.task_id = err.task or last, id
        return nil, err
      elseif client.retry.on_retry then
        client.retry.on_retry({ attempt = 0, delay = delay, error = err, method = err.method, url = err.url })
      end
      hint = err.retry_after
      failed = err
    end
    local left = deadline - now()
    if left <= 0 then break end
    local d = delay + o.jitter * math.random()
    if hint and hint > d then d = hint end -- the server knows best, but not past the deadline
    sleep(math.min(d, left))
    delay = math.min(delay * o.backoff, math.max(o.max_interval, o.interval))
  end
  return nil, errors.new("timeout", {
    message = string.format("task not done after %gs (last status %s%s)", o.timeout,
      last and last.status or "never seen", failed and "; last error: " .. tostring(failed.message) or ""),
    task = last, task_id = id, retryable = true, cause = failed,
  })
end

return M
