-- rctasks.retry: the retry policy of single requests, a plain value. It decides whether a failed
-- request is sent again and after how long; it never sends, sleeps or sees a client. The
-- executor asks it after each failure, the polling loop asks it for the Retry-After cap, and
-- both report retries through `report`, the one place `on_retry` is called.
local check = require "rctasks.check"
local defaults = require "rctasks.defaults"

local M = {}

local Policy = {}
Policy.__index = Policy
Policy.__name = "rctasks.retry"

local SCHEMA = { attempts = "count", base = "number", max_delay = "number", factor = "factor",
                 retry_post = "boolean", max_retry_after = "number", on_retry = "function",
                 busy_attempts = "count", busy_base = "number", busy_max_delay = "number" }

-- retry.new{attempts=, base=, max_delay=, factor=, retry_post=, max_retry_after=, on_retry=,
--           busy_attempts=, busy_base=, busy_max_delay=} (the busy_ ones for a 429)
function M.new(opts)
  local p = check.merge(defaults.retry, check.options(opts, SCHEMA, "rctasks.retry"))
  return setmetatable(p, Policy)
end

-- Polls make one attempt each: the polling loop is their retry loop, so nothing is retried twice over.
M.ONCE = M.new{ attempts = 1, busy_attempts = 1 }

function M.is(v) return getmetatable(v) == Policy end

-- Full jitter: uniform in [0, min(cap, base * factor^(n-1))] (spreads a crowd of clients); a 429
-- backs off on its own, longer schedule.
function Policy:backoff(n, busy)
  local base, cap = self.base, self.max_delay
  if busy then base, cap = self.busy_base, self.busy_max_delay end
  return math.min(cap, base * self.factor ^ (n - 1)) * math.random()
end

-- Methods that may change something each time they arrive.
local NON_IDEMPOTENT = { POST = true, PATCH = true }

-- Answers that say the request was not processed: refused (429), or never received whole (408).
local UNPROCESSED = { [429] = true, [408] = true }

-- May a request that failed with `err` be sent again? A POST (or PATCH) only when it surely never
-- left, when the server says it did not process it, or when the caller opted in.
function Policy:resendable(method, err)
  if not err.retryable then return false end
  if not NON_IDEMPOTENT[method] or self.retry_post then return true end
  return err.unsent == true or UNPROCESSED[err.status] == true
end

-- The server's Retry-After for `err` when the policy honours it; false when it asks for longer
-- than max_retry_after (the error then ends the call); nil when it said nothing.
function Policy:server_delay(err)
  local ra = err.retry_after
  if type(ra) ~= "number" or ra ~= ra then return nil end
  if ra > self.max_retry_after then return false end
  return ra
end

-- After attempt n failed with err: seconds to wait before the next attempt, or nil to give up.
function Policy:delay(n, method, err)
  local busy = err.status == 429
  if n >= (busy and self.busy_attempts or self.attempts) or not self:resendable(method, err) then return nil end
  local ra = self:server_delay(err)
  if ra == false then return nil end
  return ra or self:backoff(n, busy)
end

-- The one call of on_retry: attempt n failed with err, the next try comes after `delay` seconds.
function Policy:report(n, delay, err)
  if self.on_retry then
    self.on_retry({ attempt = n, delay = delay, error = err, method = err.method, url = err.url })
  end
end

return M
