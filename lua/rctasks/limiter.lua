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

-- 0 when a send may go now, else the seconds until one may; counts nothing.
function Local:room(now)
  if now < self.held then return self.held - now end
  local oldest = self.log[self.head]
  if oldest and oldest > now - self.window then return oldest + self.window - now end
  return 0
end

function Local:acquire(now)
  local wait = self:room(now)
  if wait == 0 then self:note(now) end
  return wait
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

-- Count a send another limiter allowed (the shared budget): the oldest slot goes, full or not.
function Local:note(now)
  self.log[self.head] = now
  self.head = self.head % self.limit + 1
end

-- The same log under another limit: the youngest sends carry over, so a client whose share shrinks
-- waits for what it already sent, and one whose share grows does not start from nothing.
function Local:resized(limit, now)
  local r = setmetatable({ limit = limit, window = self.window, log = {}, head = 1, held = self.held }, Local)
  local n = math.min(self:recent(now), limit)
  for i = n, 1, -1 do r:note(self.log[(self.head - 1 - i) % self.limit + 1]) end
  return r
end

-- The server says n requests remain in its window (others share the key): the log is made to
-- hold limit - n recent sends, so at 0 nothing goes until the window has passed.
function Local:remaining(n, now)
  if n ~= n or n < 0 then return end
  local used = self.limit - math.min(n, self.limit)
  for _ = self:recent(now) + 1, used do self:note(now) end -- the oldest slots are outside the window
end

------------------------------------------------------------------------------------------------
-- Kept in a coordination store (rctasks.store.*): one budget for every client of the account on
-- the same store, nginx's workers (shdict) or every host on one Redis. The store makes each
-- decision atomically: no window of `window` (+ margin) seconds holds more than `limit` sends from
-- all of them together. When the store fails, a local limiter of this client's share of the
-- budget (the limit divided by the clients seen sharing it lately; `share` of it, a quarter by
-- default, when it never answered) takes over until it answers again: never unlimited, never
-- blocked for good; `notify` says so once each way.

local Stored = {}
Stored.__index = Stored
Stored.__name = "rctasks.limiter.stored"

local STORED_OPTS = { store = "any", key = "string", limit = "number", window = "number", margin = "number",
                      notify = "function", share = "number" }

-- stored{ store =, key = "account hash", limit = 400, window = 60, margin = min(1, 5% of window),
--         notify = function(kind, message_or_nil), share = 0.25 }
function M.stored(opts)
  opts = check.options(opts, STORED_OPTS, "rctasks.limiter.stored")
  if type(opts.store) ~= "table" or type(opts.store.budget) ~= "function" then
    check.fail("rctasks.limiter.stored: option 'store' must be a coordination store (rctasks.store.*)")
  end
  local o = check.merge(defaults.limiter, opts)
  whole_limit(o.limit, o.window, "rctasks.limiter.stored")
  local margin = opts.margin or math.min(1, o.window * defaults.shared_margin)
  local key = "rl:" .. (opts.key or "default")
  local share = opts.share or defaults.fallback_share
  if share <= 0 or share > 1 then check.fail("rctasks.limiter.stored: share must be in (0, 1]") end
  return setmetatable({ store = opts.store, key = key, limit = o.limit, window = o.window + margin,
    notify = opts.notify or function() end, members = 0, next_beat = -math.huge, me = env.unique(),
    failed = false, settle_until = -math.huge, beat_at = nil,
    fallback = M.new{ limit = math.max(1, math.floor(o.limit * share)), window = o.window + margin } }, Stored)
end

-- The store failed, or answered again. Back from a failure, or found to have lost what it held
-- (restarted, flushed), its log no longer holds the sends of the last window: for one window each
-- client keeps to its local share as well, so that window holds no more than the shares together.
function Stored:failing(err)
  self.failed = true
  self.notify("budget", "the shared request budget is unreachable (" .. tostring(err) .. "): this client "
    .. "keeps to " .. self.fallback.limit .. " requests per " .. self.window .. " s until it answers")
end

function Stored:answered(now)
  if self.failed then self.failed, self.settle_until = false, now + self.window end
  self.notify("budget", nil)
end

-- Every quarter window: say this client shares the budget, and count who else does. A client
-- stays counted for two windows: one that sleeps through a wait longer than a window still has its
-- share kept for it when the store fails. Clients that only read what another polls beat too
-- (executor:present()): they poll alone when the store fails, so they need their share then.
function Stored:beat(now)
  if now < self.next_beat then return end
  self.next_beat = now + self.window / 4
  local st, mine = self.store, self.key .. ":m:" .. self.me
  if self.beat_at and now - self.beat_at < 2 * self.window and not self.failed then
    if st:get(mine) == false then self.settle_until = now + self.window end -- the store lost it
  end
  local ok, err = st:set(mine, "1", 2 * self.window)
  if not ok then return self:failing(err) end
  self:answered(now)
  self.beat_at = now
  local members = st:keys(self.key .. ":m:")
  if members and #members > 0 then self.members = #members end
  -- the share grows only once the store has counted for a whole window: the first clients back
  -- after a failure would see too few others, and take more than their share while settling
  local share = self.members > 0 and math.max(1, math.floor(self.limit / self.members)) or self.fallback.limit
  if share < self.fallback.limit or (share > self.fallback.limit and not self.failed and now >= self.settle_until) then
    self.fallback = self.fallback:resized(share, now)
  end
end

function Stored:acquire(now)
  self:beat(now)
  -- asked again within a quarter window: sharing resumes soon after the store does
  if self.failed or now < self.settle_until then
    local wait = self.fallback:room(now)
    if wait > 0 then return math.min(wait, self.window / 4) end
  end
  local wait, err = self.store:budget(self.key, self.limit, self.window)
  if wait == nil then
    self:failing(err)
    return math.min(self.fallback:acquire(now), self.window / 4)
  end
  self:answered(now)
  -- the local share counts every send the store allowed, so a fallback starts from the truth
  if wait == 0 then self.fallback:note(now) end
  return wait
end

-- X-Rate-Limit-Remaining: n. The shared window then holds at least limit - n sends.
function Stored:remaining(n, now)
  if n ~= n or n < 0 then return end
  self.fallback:remaining(math.floor(n / math.max(1, self.members)), now)
  self.store:budget_used(self.key, self.limit - math.min(n, self.limit), self.limit, self.window)
end

-- shared{ dict = "rctasks", key =, limit =, window =, margin = }: stored in nginx's shared dict.
function M.shared(opts)
  opts = check.options(opts, { dict = "string", key = "string", limit = "number", window = "number",
                               margin = "number", share = "number" }, "rctasks.limiter.shared")
  local store, err = require("rctasks.store.shdict").new{ dict = opts.dict }
  if not store then check.fail("rctasks.limiter.shared: " .. err) end
  local o = {}
  for k, v in pairs(opts) do if k ~= "dict" then o[k] = v end end
  o.store = store
  o.notify = function(_, msg) if msg then env.ngx().log(env.ngx().WARN, "rctasks: ", msg) end end
  return M.stored(o)
end

return M
