-- rctasks.store.redis: the coordination store in Redis, shared by every process and host that
-- names the same server and db (the interface: rctasks/store/memory.lua). Each decision is one
-- command or one script, so it is atomic on the server; time is Redis's own (TIME inside the
-- scripts, which Redis 7 replicates by effect), so every host counts a budget on one clock.
--   store.new{ url = "redis://...", timeout =, ... (rctasks.redis options) } | store.new{ client = c }
--   get GET; set SET [PX]; add SET NX [PX]; delete DEL; keys SCAN MATCH (prefix escaped) COUNT;
--   lease, release, budget, budget_used: one script each; now: TIME, as an offset to this clock.
-- A failure of the server is nil, err (a string), never a raise; callers then work alone.
local check = require "rctasks.check"
local core = require "rctasks.core"
local redis = require "rctasks.redis"

local M = {}

M.SCAN_COUNT = 1000      -- keys SCAN looks at per round trip
M.MAX_KEYS = 100000      -- keys(prefix) answers nil, err past this many
M.CLOCK_REFRESH = 60     -- seconds an offset to the server's clock is trusted before it is measured again

local Store = {}
Store.__index = Store
Store.__name = "rctasks.store.redis"

function M.new(opts)
  opts = opts or {}
  local client = opts.client
  if client then
    for k in pairs(opts) do
      if k ~= "client" then check.fail("rctasks.store.redis.new: a client or rctasks.redis options, not both") end
    end
  else
    client = redis.new(opts)
  end
  return setmetatable({ redis = client, shared = true }, Store)
end

-- A ttl in seconds -> PX milliseconds; nil for no expiry; 0 when it is already over.
local function px(ttl)
  if ttl == nil or ttl == math.huge then return nil end
  if ttl ~= ttl or ttl <= 0 then return 0 end
  return math.ceil(ttl * 1000)
end

-- A reply of the wrong shape is a store failure too (a server that is not Redis).
local function shape(v, ok)
  if ok then return v end
  return nil, "unexpected reply from the store: " .. type(v)
end

function Store:get(key)
  local v, err = self.redis:call("GET", key)
  if v == nil then return nil, err end
  return shape(v, v == false or type(v) == "string")
end

function Store:set(key, value, ttl)
  local ms = px(ttl)
  local v, err
  if ms == 0 then v, err = self.redis:call("DEL", key)
  elseif ms then v, err = self.redis:call("SET", key, value, "PX", ms)
  else v, err = self.redis:call("SET", key, value) end
  if v == nil then return nil, err end
  return true
end

function Store:add(key, value, ttl)
  local ms = px(ttl)
  local v, err
  if ms == 0 then -- added and gone at once: only whether it was absent matters
    v, err = self.redis:call("EXISTS", key)
    if v == nil then return nil, err end
    return v == 0
  end
  if ms then v, err = self.redis:call("SET", key, value, "NX", "PX", ms)
  else v, err = self.redis:call("SET", key, value, "NX") end
  if v == nil then return nil, err end
  return v == "OK"
end

function Store:delete(key)
  local v, err = self.redis:call("DEL", key)
  if v == nil then return nil, err end
  return true
end

-- A prefix as a SCAN pattern that matches it literally.
local function glob_literal(prefix) return (prefix:gsub("[%*%?%[%]\\]", "\\%0")) .. "*" end

function Store:keys(prefix)
  local pattern, cursor, seen, out = glob_literal(prefix), "0", {}, {}
  repeat
    local r, err = self.redis:call("SCAN", cursor, "MATCH", pattern, "COUNT", M.SCAN_COUNT)
    if r == nil then return nil, err end
    if type(r) ~= "table" or type(r[1]) ~= "string" or type(r[2]) ~= "table" then return shape(r, false) end
    for _, k in ipairs(r[2]) do
      if type(k) == "string" and not seen[k] then -- SCAN may name a key twice
        seen[k] = true
        out[#out + 1] = k
        if #out > M.MAX_KEYS then return nil, "more than " .. M.MAX_KEYS .. " keys under the prefix" end
      end
    end
    cursor = r[1]
  until cursor == "0"
  table.sort(out)
  return out
end

-- KEYS[1] = key, ARGV[1] = owner, ARGV[2] = PX ms ("" no expiry, "0" over at once).
local LEASE = [[
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('SET', KEYS[1], ARGV[1])
elseif ARGV[2] == '0' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 1
]]

local RELEASE = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
]]

function Store:lease(key, owner, ttl)
  local ms = px(ttl)
  local v, err = self.redis:eval(LEASE, { key }, { owner, ms and tostring(ms) or "" })
  if v == nil then return nil, err end
  return v == 1
end

function Store:release(key, owner)
  local v, err = self.redis:eval(RELEASE, { key }, { owner })
  if v == nil then return nil, err end
  return true
end

-- The sliding-window log: a sorted set of sends scored by the server's clock in microseconds.
-- KEYS[1] = key, ARGV[1] = limit, ARGV[2] = window in microseconds, ARGV[3] = "" (budget: count one
-- send if the window has room) or `used` (budget_used: fill the window up to that many sends).
-- Drops the sends that left the window; each send added is a member of its own. Answers 0, or (a
-- send refused) the microseconds until enough sends leave the window for one more.
local BUDGET = [[
local key, limit, window = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function exact(x) return string.format('%.0f', x) end -- a number argument would go as %.14g
redis.call('ZREMRANGEBYSCORE', key, '-inf', exact(now - window))
local n = redis.call('ZCARD', key)
local target = n + 1
if ARGV[3] ~= '' then target = math.min(tonumber(ARGV[3]), limit) end
if target > limit then
  local at = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
  if at[2] == nil then return window end
  return tonumber(at[2]) + window - now
end
local stamp, k = exact(now), n
while n < target do
  if redis.call('ZADD', key, 'NX', stamp, stamp .. '-' .. k) == 1 then n = n + 1 end
  k = k + 1
end
redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
return 0
]]

local function micro(seconds) return math.floor(seconds * 1000000 + 0.5) end

function Store:budget(key, limit, window)
  local v, err = self.redis:eval(BUDGET, { key }, { limit, micro(window), "" })
  if v == nil then return nil, err end
  if type(v) ~= "number" then return shape(v, false) end
  if v <= 0 then return 0 end
  return v / 1000000
end

function Store:budget_used(key, used, limit, window)
  local v, err = self.redis:eval(BUDGET, { key }, { limit, micro(window), used })
  if v == nil then return nil, err end
  return true
end

-- The server's clock (epoch seconds) as an offset to this process's monotonic one, measured at the
-- middle of a TIME round trip and again after CLOCK_REFRESH seconds; a failed refresh keeps the last.
function Store:now()
  local t0 = core.now()
  if self.offset and t0 - self.measured < M.CLOCK_REFRESH then return t0 + self.offset end
  local r, err = self.redis:call("TIME")
  local t1 = core.now()
  local sec, usec = type(r) == "table" and tonumber(r[1]), type(r) == "table" and tonumber(r[2])
  if sec and usec then
    self.offset, self.measured = sec + usec / 1000000 - (t0 + t1) / 2, t1
  elseif not self.offset then
    if r == nil then return nil, err end
    return shape(r, false)
  end
  return t1 + self.offset
end

return M
