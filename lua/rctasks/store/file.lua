-- rctasks.store.file: a coordination store in one file, for the scripts of one host (the
-- interface: store/memory.lua). The file is a log of JSON lines, one per change, read whole at
-- each operation; every operation runs under an exclusive lock (flock on FILE.lock) held by one
-- process at a time, and every line is appended with one write and fsynced before the lock is
-- let go, so a crash loses at most the line being written. A line cut short, or one that is not a
-- record, is skipped with a warning (once per store), never a raise; the next append starts on a
-- line of its own. When dead lines outnumber the live ones, the log is rewritten by rename.
-- Times are the wall clock (core.time): expiries are on disk, and reboots must agree with them.
local cjson = require("cjson").new() -- private: its settings stay ours
local core = require "rctasks.core"
local env = require "rctasks.env"

local M = {}

local Store = {}
Store.__index = Store
Store.__name = "rctasks.store.file"

M.MAX_FILE = 64 * 1024 * 1024 -- a bigger log is refused (nil, err), not read
M.LOCK_WAIT = 10              -- seconds an operation waits for the lock

-- file.new{ path = "journal", warn = function(msg) } -> store | nil, err
function M.new(opts)
  if type(opts) == "string" then opts = { path = opts } end
  local path = opts and opts.path
  if type(path) ~= "string" or path == "" or path:find("%z") then return nil, "a file path is needed" end
  return setmetatable({ path = path, lock_path = path .. ".lock", shared = true,
                        warn = opts.warn or env.log, warned = false }, Store)
end

function Store.now() return core.time() end

-- Replay the log: the live value and expiry of every key, and the log's line counts.
local function load(self)
  local text, err = core.read_file(self.path, M.MAX_FILE)
  if not text then return nil, err end
  local data, expires, lines, bad, budgets = {}, {}, 0, 0, {}
  local pos = 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    if not nl then bad = bad + 1; break end -- a record cut short: the crash of a writer
    local line = text:sub(pos, nl - 1)
    pos = nl + 1
    if line ~= "" then
      local ok, r = pcall(cjson.decode, line)
      if ok and type(r) == "table" and type(r.k) == "string" then
        lines = lines + 1
        if r.b then -- a budget send: k is the budget, at its time
          local log = budgets[r.k] or {}
          log[#log + 1] = tonumber(r.at) or 0
          budgets[r.k] = log
        elseif type(r.v) == "string" then
          data[r.k], expires[r.k] = r.v, tonumber(r.x)
        else
          data[r.k], expires[r.k] = nil, nil
        end
      else
        bad = bad + 1
      end
    end
  end
  if bad > 0 and not self.warned then
    self.warned = true
    self.warn("the store file " .. self.path .. " has " .. bad .. " unreadable line(s), skipped (a record cut "
      .. "short by a crash, or not a record): read up to the last whole record")
  end
  local now = core.time()
  for k, x in pairs(expires) do
    if x <= now then data[k], expires[k] = nil, nil end
  end
  return { data = data, expires = expires, budgets = budgets, lines = lines, ends_whole = text == "" or
    text:sub(-1) == "\n" }
end

local function encode(r)
  local ok, s = pcall(cjson.encode, r)
  if not ok then return nil, s end
  return s .. "\n"
end

-- Run fn(state) under the lock: fn returns the lines to append (a list of records), and the
-- result. The log is rewritten when it has grown to many times its live size.
local function txn(self, fn)
  local lock, err = core.lock(self.lock_path, M.LOCK_WAIT)
  if not lock then return nil, err end
  local st, lerr = load(self)
  if not st then lock:unlock(); return nil, lerr end
  local ok, records, result, rerr = pcall(fn, st)
  if not ok then lock:unlock(); return nil, tostring(records) end
  if records and #records > 0 then
    local parts = { st.ends_whole and "" or "\n" } -- never glue a record to a cut one
    for i, r in ipairs(records) do
      local line, eerr = encode(r)
      if not line then lock:unlock(); return nil, eerr end
      parts[i + 1] = line
    end
    local wok, werr = core.append_file(self.path, table.concat(parts))
    if not wok then lock:unlock(); return nil, werr end
    local live = 0
    for _ in pairs(st.data) do live = live + 1 end
    if st.lines > 1000 and st.lines > 4 * (live + 1) then self:compact(st) end
  end
  lock:unlock()
  return result, rerr
end

-- Rewrite the log with its live records only (called under the lock).
function Store:compact(st)
  local parts = {}
  for k, v in pairs(st.data) do parts[#parts + 1] = encode({ k = k, v = v, x = st.expires[k] }) end
  local since = core.time() - 3600
  for k, log in pairs(st.budgets) do
    for _, at in ipairs(log) do
      if at > since then parts[#parts + 1] = encode({ k = k, b = true, at = at }) end
    end
  end
  table.sort(parts)
  core.replace_file(self.path, table.concat(parts))
end

local function expiry(ttl) return ttl and core.time() + ttl or nil end

function Store:get(key)
  return txn(self, function(st) return nil, st.data[key] or false end)
end

function Store:set(key, value, ttl)
  return txn(self, function() return { { k = key, v = value, x = expiry(ttl) } }, true end)
end

function Store:add(key, value, ttl)
  return txn(self, function(st)
    if st.data[key] ~= nil then return nil, false end
    return { { k = key, v = value, x = expiry(ttl) } }, true
  end)
end

function Store:delete(key)
  return txn(self, function() return { { k = key } }, true end)
end

function Store:keys(prefix)
  return txn(self, function(st)
    local out = {}
    for k in pairs(st.data) do if k:sub(1, #prefix) == prefix then out[#out + 1] = k end end
    table.sort(out)
    return nil, out
  end)
end

function Store:lease(key, owner, ttl)
  return txn(self, function(st)
    local cur = st.data[key]
    if cur ~= nil and cur ~= owner then return nil, false end
    return { { k = key, v = owner, x = expiry(ttl) } }, true
  end)
end

function Store:release(key, owner)
  return txn(self, function(st)
    if st.data[key] == owner then return { { k = key } }, true end
    return nil, true
  end)
end

local function recent(log, since)
  local n, oldest = 0, nil
  for _, at in ipairs(log or {}) do
    if at > since then
      n = n + 1
      if not oldest or at < oldest then oldest = at end
    end
  end
  return n, oldest
end

function Store:budget(key, limit, window)
  return txn(self, function(st)
    local now = core.time()
    local n, oldest = recent(st.budgets[key], now - window)
    if n < limit then return { { k = key, b = true, at = now } }, 0 end
    return nil, oldest + window - now
  end)
end

function Store:budget_used(key, used, limit, window)
  return txn(self, function(st)
    local now = core.time()
    local n = recent(st.budgets[key], now - window)
    local add = {}
    for _ = n + 1, math.min(used, limit) do add[#add + 1] = { k = key, b = true, at = now } end
    return add, true
  end)
end

-- Every live key under prefix with its value, from one read of the log: { [key] = value }.
function Store:entries(prefix)
  return txn(self, function(st)
    local out = {}
    for k, v in pairs(st.data) do if k:sub(1, #prefix) == prefix then out[k] = v end end
    return nil, out
  end)
end

return M
