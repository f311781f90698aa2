-- rctasks.retry: when to send a request again, and how fast a client may send at all.
--   policy:perform(client, req, deadline) sends req through client.transport, waiting for the
--   client's limiter first and retrying transient failures with full-jitter exponential backoff.
-- It returns what the transport returned (any HTTP answer that is not worth retrying), or
-- nil, err. It never sleeps past `deadline` (seconds on the client's clock).
local errors = require "rctasks.errors"
local RETRYABLE_STATUS = errors.RETRYABLE_STATUS

local M = {}

local Policy = {}
Policy.__index = Policy

local DEFAULTS = {
  attempts = 4,        -- tries in all, the first included
  base = 0.5,          -- first backoff ceiling, seconds
  max_delay = 30,      -- backoff ceiling cap
  factor = 2,
  retry_post = false,  -- POST may have reached the server: resend only if the caller says so
  on_retry = false,    -- function(info) called before each retry's sleep
}

local function check_opts(opts, defaults, what)
  for k, v in pairs(opts) do
    local d = defaults[k]
    if d == nil then error(what .. ": unknown option '" .. tostring(k) .. "'", 3) end
    local want = d == false and (k:match("^on_") and "function" or "boolean") or type(d)
    if type(v) ~= want then
      error(what .. ": option '" .. k .. "' must be a " .. want .. ", got " .. type(v), 3)
    end
  end
end

-- retry.new{attempts=, base=, max_delay=, factor=, retry_post=, on_retry=}
function M.new(opts)
  opts = opts or {}
  check_opts(opts, DEFAULTS, "rctasks.retry")
  local p = {}
  for k, v in pairs(DEFAULTS) do p[k] = v end
  for k, v in pairs(opts) do p[k] = v end
  if p.attempts < 1 then error("rctasks.retry: attempts must be >= 1", 2) end
  return setmetatable(p, Policy)
end

M.NONE = M.new{ attempts = 1 } -- what `retry = false` means

-- Full jitter: uniform in [0, min(cap, base * factor^(n-1))] (spreads a crowd of clients).
function Policy:backoff(n)
  local ceiling = math.min(self.max_delay, self.base * self.factor ^ (n - 1))
  return ceiling * math.random()
end

-- May `req` be sent again after this failure? POST only when it surely never left, when the
-- server refused it unprocessed (429), or when the caller opted in.
function Policy:retryable(req, err)
  if not err.retryable then return false end
  if req.method ~= "POST" or self.retry_post then return true end
  return err.unsent == true or err.status == 429
end

function Policy:perform(client, req, deadline)
  local now, sleep = client.now, client.sleep
  local n = 0
  while true do
    n = n + 1
    local limiter = client.limiter
    if limiter then
      local hold = limiter:acquire(now())
      while hold > 0 do
        if deadline and now() + hold > deadline then
          return nil, errors.new("timeout", { message = "request budget exhausted before the deadline",
            retryable = true, method = req.method, url = req.url })
        end
        sleep(hold)
        hold = limiter:acquire(now())
      end
    end
    if deadline then
      local left = deadline - now()
      if left <= 0 then
        return nil, errors.new("timeout", { message = "deadline reached", method = req.method, url = req.url })
      end
      req.timeout = math.min(req.timeout or left, left)
    end

    local res, err = client.transport:request(req)
    local redact = client.redact -- server text bound for an error (or on_retry) loses any key first
    if res then
      -- The header matters only to a limiter: without one, no lookup and no number parse.
      if limiter and limiter.pause and res.headers and tonumber(res.headers["x-rate-limit-remaining"]) == 0 then
        limiter:pause(now())
      end
      if not RETRYABLE_STATUS[res.status] then return res end
      if redact then res.body = redact(res.body) end
      err = errors.http(req, res, client.decode)
    else
      err = errors.transport(req, err)
      if redact then err.message, err.body = redact(err.message), redact(err.body) end
    end

    if n >= self.attempts or not self:retryable(req, err) then return nil, err end
    local delay = err.retry_after or self:backoff(n)
    if deadline and now() + delay > deadline then return nil, err end
    if self.on_retry then
      self.on_retry({ attempt = n, delay = delay, error = err, method = req.method, url = req.url })
    end
    sleep(delay)
  end
end

------------------------------------------------------------------------------------------------
-- The limiter: a sliding-window log of send times, so one client never earns a 429 by itself.
-- acquire(now) -> 0 (go: the send is recorded) or seconds to wait before asking again.

local Limiter = {}
Limiter.__index = Limiter

-- retry.limiter{limit = 400, window = 60}: the API's budget is 400 requests a minute per key.
function M.limiter(opts)
  opts = opts or {}
  check_opts(opts, { limit = 400, window = 60 }, "rctasks.retry.limiter")
  local l = setmetatable({ limit = opts.limit or 400, window = opts.window or 60,
    log = {}, head = 1, held = 0 }, Limiter)
  if l.limit < 1 or l.limit % 1 ~= 0 or l.window <= 0 then
    error("rctasks.retry.limiter: limit must be a positive integer and window positive", 2)
  end
  return l
end

function Limiter:acquire(now)
  if now < self.held then return self.held - now end
  local oldest = self.log[self.head] -- the ring holds the last `limit` send times
  if oldest and oldest > now - self.window then return oldest + self.window - now end
  self.log[self.head] = now
  self.head = self.head % self.limit + 1
  return 0
end

-- The server says the budget is spent (X-Rate-Limit-Remaining: 0), by other processes maybe:
-- hold sends for one average slot of the window.
function Limiter:pause(now)
  self.held = math.max(self.held, now + self.window / self.limit)
end

return M
