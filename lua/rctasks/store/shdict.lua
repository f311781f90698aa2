-- rctasks.store.shdict: the coordination store of one nginx (every worker), in a lua_shared_dict.
-- The interface is the one store/memory.lua documents. Every operation is one atomic dict call
-- or a short sequence that stays correct when two workers race (add before set, ttl from the
-- dict itself); times come from the dict's TTLs and ngx.now, one clock for all workers.
local env = require "rctasks.env"

local M = {}

local Store = {}
Store.__index = Store
Store.__name = "rctasks.store.shdict"

-- shdict.new{ dict = "rctasks" }
function M.new(opts)
  local ngx = env.ngx()
  local name = opts and opts.dict or require("rctasks.defaults").shared_dict
  local dict = ngx and ngx.shared and ngx.shared[name]
  if not dict then return nil, "no `lua_shared_dict " .. tostring(name) .. "` in nginx.conf" end
  return setmetatable({ ngx = ngx, dict = dict, shared = true }, Store)
end

function Store:now()
  self.ngx.update_time()
  return self.ngx.now()
end

local function ok_or(err, v) if err then return nil, err end return v end

function Store:get(key)
  local v, flags_or_err = self.dict:get(key)
  if v == nil then
    if flags_or_err and type(flags_or_err) == "string" then return nil, flags_or_err end
    return false
  end
  return v
end

function Store:set(key, value, ttl)
  local ok, err = self.dict:safe_set(key, value, ttl or 0)
  if not ok then return nil, err end
  return true
end

function Store:add(key, value, ttl)
  local ok, err = self.dict:safe_add(key, value, ttl or 0)
  if ok then return true end
  if err == "exists" then return false end
  return nil, err
end

function Store:delete(key)
  self.dict:delete(key)
  return true
end

-- All keys of the dict are scanned (get_keys(0) locks it for the scan): keep prefixes few.
function Store:keys(prefix)
  local out = {}
  for _, k in ipairs(self.dict:get_keys(0)) do
    if k:sub(1, #prefix) == prefix then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

-- Taken with add (atomic); renewed by its owner with set. Between the owner's get and set the
-- lease cannot change hands: only an expired lease is taken, and the owner renews well before.
function Store:lease(key, owner, ttl)
  local ok, err = self.dict:safe_add(key, owner, ttl)
  if ok then return true end
  if err ~= "exists" then return nil, err end
  local cur = self.dict:get(key)
  if cur == nil then return ok_or(nil, self:add(key, owner, ttl)) end -- it just expired
  if cur ~= owner then return false end
  return ok_or(select(2, self.dict:safe_set(key, owner, ttl)), true)
end

function Store:release(key, owner)
  if self.dict:get(key) == owner then self.dict:delete(key) end
  return true
end

-- The budget is `limit` slots; a send claims a free slot with an atomic safe_add that expires
-- after the window, so at most `limit` claims are alive at once and no window holds more than
-- `limit` sends, whichever worker sent them.
function Store:budget(key, limit, window)
  local d = self.dict
  self.ngx.update_time() -- the dict stamps TTLs with the worker's cached clock: make it current
  local soonest
  for _ = 1, limit do -- at most one lap of the ring
    local n, err = d:incr(key .. ":n", 1, 0)
    if not n then return nil, "cannot count: " .. tostring(err) end
    local slot = key .. ":s" .. (n % limit)
    local ok
    ok, err = d:safe_add(slot, true, window)
    if ok then return 0 end
    if err ~= "exists" then return nil, "dict full: " .. tostring(err) end -- fail closed
    local t = d:ttl(slot) or 0 -- nil: it expired a moment ago
    if not soonest or t < soonest then soonest = t end
  end
  return math.max(soonest or 0, 0.001)
end

-- Claim free slots until `used` are alive (each costs a slot's add).
function Store:budget_used(key, used, limit, window)
  local d = self.dict
  local alive = 0
  for i = 0, limit - 1 do
    if d:get(key .. ":s" .. i) then alive = alive + 1 end
  end
  for i = 0, limit - 1 do
    if alive >= used then break end
    if d:safe_add(key .. ":s" .. i, true, window) then alive = alive + 1 end
  end
  return true
end

return M
