-- rctasks.limiter: request budgets, plain values the executor asks before each send.
--   limiter:acquire(now) -> 0 (go: the send is counted) | seconds to wait before asking again
--   limiter:remaining(n, now)  the server said n requests remain (X-Rate-Limit-Remaining)
-- new{limit=, window=}: this process only, a sliding window. shared{dict=, key=, ...}: every
-- worker of one nginx, in a lua_shared_dict.
local check = require "rctasks.check"
local defaults = require "rctasks.defaults"
local env = require "rctasks.env"

local M = {}

local function whole_limit(limit, window, what)
  if limit < 1 or limit % 1 ~= 0 then check.fail(what .. ": limit must be a positive integer") end
  if window <= 0 then check.fail(what .. ": window must be positive") end
end

------------------------------------------------------------------------------------------------
-- In-process: a ring of the last `limit` send times, so one client never earns a 429 by itself.

local Local = {}
Local.__index = Local
Local.__name = "rctasks.limiter"

function M.new(opts)
  local o = check.merge(defaults.limiter,
    check.options(opts, { limit = "number", window = "number" }, "rctasks.limiter"))
  whole_limit(o.limit, o.window, "rctasks.limiter")
  return setmetatable({ limit = o.limit, window = o.window, log = {}, head = 1, held = 0 }, Local)
end

function Local:acquire(now)
  if now < self.held then return self.held - now end
  local oldest = self.log[self.head]
  if oldest and oldest > now - self.window then return oldest + self.window - now end
  self.log[self.head] = now
  self.head = self.head % self.limit + 1
  return 0
end

-- How many logged sends are younger than the window. The ring read from `head` is oldest first
-- (unused slots first of all), so a binary search finds the first young one.
function Local:recent(now)
  local limit, head, log, since = self.limit, self.head, self.log, now - self.window
  local lo, hi = 0, limit -- the first young entry is at an offset in [lo, hi]
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local t = log[(head - 1 + mid) % limit + 1]
    if t and t > since then hi = mid else lo = mid + 1 end
  end
  return limit - lo
end

-- The server says n requests remain in its window (others share the key): the log is made to
-- hold limit - n recent sends, so at 0 nothing goes until the window has passed.
function Local:remaining(n, now)
  if n ~= n or n < 0 then return end
  local used = self.limit - math.min(n, self.limit)
  for _ = self:recent(now) + 1, used do -- overwrite the oldest slots: they are outside the window
    self.log[self.head] = now
    self.head = self.head % self.limit + 1
  end
end

------------------------------------------------------------------------------------------------
-- Shared by the workers of one nginx. The budget is `limit` slots in the dict; a send claims a
-- free slot with an atomic safe_add that expires after the window (plus `margin`), so at most
-- `limit` claims are alive at once and no window ever holds more than `limit` sends, whichever
-- worker sent them. Times come from the dict's own TTLs: one clock for all workers.

local Shared = {}
Shared.__index = Shared
Shared.__name = "rctasks.limiter.shared"

local SHARED_OPTS = { dict = "string", key = "string", limit = "number", window = "number", margin = "number" }

-- shared{dict = "rctasks", key = "account", limit = 400, window = 60, margin = min(1, 5% of window)}
function M.shared(opts)
  opts = check.options(opts, SHARED_OPTS, "rctasks.limiter.shared")
  local ngx = env.ngx()
  local name = opts.dict or defaults.shared_dict
  local dict = ngx and ngx.shared and ngx.shared[name]
  if not dict then check.fail("rctasks.limiter.shared: no `lua_shared_dict " .. name .. "` in nginx.conf") end
  local o = check.merge(defaults.limiter, opts)
  whole_limit(o.limit, o.window, "rctasks.limiter.shared")
  local margin = opts.margin or math.min(1, o.window * defaults.shared_margin)
  local key = "rl:" .. (opts.key or "default")
  return setmetatable({ ngx = ngx, dict = dict, limit = o.limit, window = o.window, margin = margin,
    seq_key = key .. ":n", held_key = key .. ":held", slot_prefix = key .. ":s", warned = false }, Shared)
end

function Shared:warn(msg)
  if not self.warned then
    self.warned = true
    self.ngx.log(self.ngx.ERR, "rctasks: ", msg)
  end
end

function Shared:acquire()
  local d = self.dict
  local held = d:ttl(self.held_key)
  if held and held > 0 then return held end
  self.ngx.update_time() -- the dict stamps TTLs with the worker's cached clock: make it current
  local soonest
  for _ = 1, self.limit do -- at most one lap of the ring
    local n, err = d:incr(self.seq_key, 1, 0)
    if not n then
      self:warn("shared limiter cannot count (" .. tostring(err) .. "): holding requests")
      return self.window / self.limit
    end
    local slot = self.slot_prefix .. (n % self.limit)
    local ok
    ok, err = d:safe_add(slot, true, self.window + self.margin)
    if ok then return 0 end
    if err ~= "exists" then -- "no memory": fail closed rather than overspend the budget
      self:warn("shared limiter dict is full (" .. tostring(err) .. "): holding requests; enlarge it")
      return self.window / self.limit
    end
    local t = d:ttl(slot) or 0 -- nil: it expired a moment ago
    if not soonest or t < soonest then soonest = t end
  end
  return math.max(soonest or 0, 0.001)
end

-- X-Rate-Limit-Remaining: 0: every worker holds until the window has passed. (A count above 0 is
-- not mirrored here: counting the live claims is a scan of the ring.)
function Shared:remaining(n)
  if n ~= 0 then return end
  local d, hold = self.dict, self.window
  local t = d:ttl(self.held_key)
  if not t or t < hold then d:set(self.held_key, true, hold) end
end

-- Claims alive now (for monitoring and tests): a full scan, so not on a hot path.
function Shared:in_use()
  local n = 0
  for i = 0, self.limit - 1 do
    if self.dict:get(self.slot_prefix .. i) then n = n + 1 end
  end
  return n
end

return M
