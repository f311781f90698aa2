-- rctasks.store.memory: the coordination store of one process (the default), and the reference
-- for the interface every store has (memory, shdict, redis). Keys and values are strings; a ttl is
-- in seconds (nil: no expiry). Every method returns its result, or nil, err when the store itself
-- failed (never for memory): callers then fall back to working alone, and nothing raises.
--   store:get(key)                       -> value | false (absent)
--   store:set(key, value, ttl)           -> true
--   store:add(key, value, ttl)           -> true (added) | false (the key exists)
--   store:delete(key)                    -> true
--   store:keys(prefix)                   -> array of the live keys that start with prefix
--   store:entries(prefix)                -> { [key] = value } of those keys, in one read (optional:
--                                           the journal falls back to keys and get)
--   store:lease(key, owner, ttl)         -> true (owner holds it: taken, or renewed) | false
--   store:release(key, owner)            -> true (released only if owner held it)
--   store:budget(key, limit, window)     -> 0 (go: counted) | seconds to wait: no window of
--                                           `window` seconds holds more than `limit` sends
--   store:budget_used(key, used, limit, window) -> true: the window holds at least `used` sends
--   store:now()                          -> seconds on the store's clock (one clock for all users)
--   store.shared                         -> true when other processes see the same data
local M = {}

local Store = {}
Store.__index = Store
Store.__name = "rctasks.store.memory"

-- memory.new{ now = clock } (the clock is core.now by default).
function M.new(opts)
  opts = opts or {}
  return setmetatable({ data = {}, expires = {}, logs = {}, clock = opts.now or require("rctasks.core").now,
                        shared = false }, Store)
end

function Store:now() return self.clock() end

local function live(self, key)
  local e = self.expires[key]
  if e and e <= self:now() then self.data[key], self.expires[key] = nil, nil end
  return self.data[key]
end

function Store:get(key)
  local v = live(self, key)
  if v == nil then return false end
  return v
end

function Store:set(key, value, ttl)
  self.data[key] = value
  self.expires[key] = ttl and self:now() + ttl or nil
  return true
end

function Store:add(key, value, ttl)
  if live(self, key) ~= nil then return false end
  return self:set(key, value, ttl)
end

function Store:delete(key)
  self.data[key], self.expires[key] = nil, nil
  return true
end

function Store:keys(prefix)
  local out = {}
  for k in pairs(self.data) do
    if k:sub(1, #prefix) == prefix and live(self, k) ~= nil then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

function Store:entries(prefix)
  local out = {}
  for _, k in ipairs(self:keys(prefix)) do out[k] = self.data[k] end
  return out
end

function Store:lease(key, owner, ttl)
  local cur = live(self, key)
  if cur ~= nil and cur ~= owner then return false end
  return self:set(key, owner, ttl)
end

function Store:release(key, owner)
  if live(self, key) == owner then self:delete(key) end
  return true
end

-- The sends of the last window, oldest first, for one key.
local function log_of(self, key, window)
  local log = self.logs[key]
  if not log then log = { first = 1, last = 0 }; self.logs[key] = log end
  local since = self:now() - window
  while log.first <= log.last and log[log.first] <= since do
    log[log.first] = nil
    log.first = log.first + 1
  end
  return log
end

function Store:budget(key, limit, window)
  local log = log_of(self, key, window)
  local now = self:now()
  if log.last - log.first + 1 < limit then
    log.last = log.last + 1
    log[log.last] = now
    return 0
  end
  return log[log.first] + window - now
end

function Store:budget_used(key, used, limit, window)
  local log = log_of(self, key, window)
  local now = self:now()
  for _ = log.last - log.first + 2, math.min(used, limit) do
    log.last = log.last + 1
    log[log.last] = now
  end
  return true
end

return M
