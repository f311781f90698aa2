-- rctasks.journal: what became of each keyed operation (run with `key`, the steps of a keyed
-- pipeline), in a coordination store that every rerun and every script side by side reads: a
-- file for the scripts of one host (store/file.lua), nginx's shared dict, Redis for many hosts
-- (the interface: store/memory.lua). One record per key, a JSON object:
--   state     "submitting" (written before the request goes out), "submitted" (the API answered
--             with task `task`), "completed", "failed" (the task failed: a rerun submits again)
--   method, path   the request (paths hold ids, never secrets)
--   command   the commandType the task of a create will carry (the crash window looks for it)
--   name      the new resource's name, where its family has names
--   at        wall-clock seconds of the record; by: the host and process that wrote it
--   task      the task id; final: the finished task's taskId, commandType, status, timestamp and
--             response ids (never its response.resource or anything else the server wrote)
--   resource  the resource's item path; id its id; error: why it failed, one line
-- A record never holds a request body or an API key: bodies carry passwords, keys name accounts
-- (the store keys hold the account's hash, as every coordination key does).
local cjson = require("cjson").new() -- private: its settings stay ours
local core = require "rctasks.core"
local errors = require "rctasks.errors"
local taskmod = require "rctasks.task"

cjson.encode_number_precision(14) -- ids and epoch seconds survive (the most lua-cjson 2.1 writes)

local M = {}

local Journal = {}
Journal.__index = Journal

M.STATES = { submitting = true, submitted = true, completed = true, failed = true }
M.MAX_KEY = 256 -- bytes of an operation key

-- Store keys: rct:<account hash>:j:<operation key>.
local function prefix(account) return "rct:" .. account .. ":j:" end

local function host_and_pid()
  local f = io.open("/proc/self/stat")
  local pid = f and f:read("*l"):match("^(%d+)")
  if f then f:close() end
  local h = io.open("/etc/hostname")
  local host = h and h:read("*l")
  if h then h:close() end
  return (host or "?") .. ":" .. (pid or "?")
end

-- journal.new(store, account, scrub) -> journal. scrub(string) -> string takes out what must
-- not be stored (the client's redactor).
function M.new(store, account, scrub)
  return setmetatable({ store = store, prefix = prefix(account), scrub = scrub or function(s) return s end,
                        by = host_and_pid() }, Journal)
end

local TEXT = { state = true, method = true, path = true, command = true, name = true, by = true, task = true,
               resource = true, error = true }

-- A stored record -> a record table, or nil when it is not one (a foreign or damaged value).
local function decode(s)
  local r = core.decode(s)
  if type(r) ~= "table" or not M.STATES[r.state] then return nil end
  for k in pairs(TEXT) do if r[k] ~= nil and type(r[k]) ~= "string" then return nil end end
  if type(r.at) ~= "number" then return nil end
  if r.final ~= nil and type(r.final) ~= "table" then return nil end
  if r.id ~= nil and type(r.id) ~= "number" and type(r.id) ~= "string" then return nil end
  return r
end

local function failure(message, cause)
  return nil, errors.new("journal", { message = message .. (cause and ": " .. tostring(cause) or "") })
end

-- journal:get(key) -> record | false (none) | nil, err (the store failed, or holds something
-- under the key that is not a record: nothing can be decided then).
function Journal:get(key)
  local s, err = self.store:get(self.prefix .. key)
  if s == nil then return failure("the journal could not be read", err) end
  if not s then return false end
  local r = decode(s)
  if not r then return failure("the journal's record of '" .. key .. "' is damaged (not a record)") end
  return r
end

-- Only what a record may hold, every string scrubbed.
local function clean(self, rec)
  local r = {}
  for k in pairs(TEXT) do
    if type(rec[k]) == "string" then r[k] = self.scrub(rec[k]) end
  end
  if type(rec.id) == "number" or type(rec.id) == "string" then r.id = rec.id end
  if type(rec.final) == "table" then
    local f, resp = rec.final, {}
    local src = type(f.response) == "table" and f.response or {}
    for _, k in ipairs({ "resourceId", "additionalResourceId" }) do
      if type(src[k]) == "number" or type(src[k]) == "string" then resp[k] = src[k] end
    end
    r.final = { response = resp }
    for _, k in ipairs({ "taskId", "commandType", "status", "timestamp" }) do
      if type(f[k]) == "string" then r.final[k] = self.scrub(f[k]) end
    end
  end
  r.at = core.time()
  r.by = self.by
  return r
end

-- journal:put(key, rec) -> the record as stored | nil, err.
function Journal:put(key, rec)
  local r = clean(self, rec)
  local ok, json = pcall(cjson.encode, r)
  if not ok then return failure("the journal could not encode a record", json) end
  local done, err = self.store:set(self.prefix .. key, json)
  if not done then return failure("the journal could not be written", err) end
  return r
end

-- journal:forget(key) -> true | nil, err.
function Journal:forget(key)
  local ok, err = self.store:delete(self.prefix .. key)
  if not ok then return failure("the journal could not be written", err) end
  return true
end

-- Every key that starts with `under` with its value: in one read where the store can (a file is read whole
-- at each operation), else key by key.
local function entries(store, under)
  if store.entries then return store:entries(under) end
  local keys, err = store:keys(under)
  if not keys then return nil, err end
  local out = {}
  for _, k in ipairs(keys) do
    local v = store:get(k)
    if v then out[k] = v end
  end
  return out
end

-- journal:claimed() -> set of the task ids some record of this account holds | nil, err. The
-- crash window takes a task of the API's list only when no record claims it.
function Journal:claimed()
  local all, err = entries(self.store, self.prefix)
  if not all then return failure("the journal could not be read", err) end
  local ids = {}
  for _, s in pairs(all) do
    local r = decode(s)
    if r and r.task then ids[r.task] = true end
  end
  return ids
end

-- The finished task a record keeps, as a task value again (nil when it keeps none).
function M.final_task(rec)
  if type(rec.final) ~= "table" or type(rec.final.taskId) ~= "string" then return nil end
  local ok, json = pcall(cjson.encode, rec.final)
  return ok and core.decode_task(json, taskmod.mt) or nil
end

-- Every record of every account in `store`: array of { account = hash, key =, record = } sorted
-- by key, and the number of values under journal keys that are not records (the command line).
function M.all(store)
  local all, err = entries(store, "rct:")
  if not all then return nil, err end
  local out, damaged = {}, 0
  for k, s in pairs(all) do
    local account, key = k:match("^rct:(%x+):j:(.+)$")
    if account then
      local r = decode(s)
      if r then out[#out + 1] = { account = account, key = key, record = r } else damaged = damaged + 1 end
    end
  end
  table.sort(out, function(a, b) return a.key < b.key end)
  return out, damaged
end

return M
