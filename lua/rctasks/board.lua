-- rctasks.board: one poll per task, however many callers wait on it, in any worker, process or
-- host that shares the store. Each caller says which tasks it waits on (an interest that expires
-- unless renewed); one caller, the leader, holds the account's lease and polls every watched task
-- each round, publishing what it saw; the others read the published states instead of the API.
-- If the leader dies its lease runs out and the next caller's round takes it over. Store keys
-- name the account by a hash of its key, never by the key.
local cjson = require("cjson").new() -- private: its settings stay ours
local core = require "rctasks.core"
local env = require "rctasks.env"
local taskmod = require "rctasks.task"

cjson.encode_number_precision(14) -- the most lua-cjson 2.1 writes: ids and epoch seconds (to 0.1 ms) survive

local M = {}

local Board = {}
Board.__index = Board

-- board.new(store, account, { lease = seconds (a new leader's first hold), margin = seconds,
--                             scrub = function(string) -> string, pause = function() })
-- pause: lets others run in the middle of a long round (inside nginx a 1 ms sleep, so a worker
-- watching 10,000 tasks still answers its requests); called every 256 tasks a round goes through.
function M.new(store, account, opts)
  return setmetatable({ store = store, prefix = "rct:" .. account .. ":", me = env.unique(), lease_ttl = opts.lease,
                        margin = opts.margin or 5, pause = opts.pause or function() end, paced = 0,
                        scrub = opts.scrub or function(s) return s end, callers = 0 }, Board)
end

-- One more task gone through in a round: every 256th, let others run.
function Board:breathe()
  self.paced = self.paced + 1
  if self.paced % 256 == 0 then self.pause() end
end

-- A caller of the board: each wait is one (waits of one client run side by side inside nginx), with
-- its own lease identity and its own memory of what it has read.
function Board:caller()
  self.callers = self.callers + 1
  return { owner = self.me .. ":" .. self.callers, seen_at = {} }
end

-- Say that this caller waits on `ids`, for `ttl` more seconds.
function Board:interest(ids, ttl)
  for _, id in ipairs(ids) do
    local ok, err = self.store:set(self.prefix .. "w:" .. id, "1", ttl)
    if not ok then return nil, err end
    self:breathe()
  end
  return true
end

-- Take or keep the account's lease: true when this caller leads this round.
function Board:lead(caller, ttl)
  return self.store:lease(self.prefix .. "lead", caller.owner, ttl or self.lease_ttl)
end

function Board:resign(caller) return self.store:release(self.prefix .. "lead", caller.owner) end

-- Every task some caller waits on.
function Board:watched()
  local keys, err = self.store:keys(self.prefix .. "w:")
  if not keys then return nil, err end
  local ids, n = {}, #self.prefix + 3
  for i, k in ipairs(keys) do ids[i] = k:sub(n) end
  return ids
end

-- Deep copy with every string scrubbed: published states never hold what the redactor removes.
local function scrubbed(v, scrub)
  if type(v) == "string" then return scrub(v) end
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[scrubbed(k, scrub)] = scrubbed(x, scrub) end
  return out
end

-- Publish what a poll of `id` gave: the task, or the failure (its kind, status, code, message,
-- retryable, retry_after). `done`: the task ended, so the leader need not poll it again.
function Board:publish(id, task, err, ttl)
  local entry = { at = self.store:now() }
  if task then
    entry.task, entry.done = scrubbed(task, self.scrub), taskmod.done(task) or not taskmod.known(task.status)
  else
    entry.error = { kind = err.kind, status = err.status, code = err.code, retryable = err.retryable,
                    retry_after = err.retry_after, message = self.scrub(tostring(err.message)), url = err.url,
                    method = err.method }
  end
  local ok, json = pcall(cjson.encode, entry)
  if not ok then return nil, json end
  return self.store:set(self.prefix .. "s:" .. id, json, ttl)
end

-- What was published for `id` since this caller last read it: { task = } or { error = }, or false.
function Board:read(caller, id)
  local s, err = self.store:get(self.prefix .. "s:" .. id)
  if s == nil then return nil, err end
  if not s then return false end
  local entry = core.decode(s)
  if type(entry) ~= "table" or type(entry.at) ~= "number" then return false end
  if caller.seen_at[id] and entry.at <= caller.seen_at[id] then return false end
  caller.seen_at[id] = entry.at
  if type(entry.task) == "table" then setmetatable(entry.task, taskmod.mt) end
  return entry
end

-- The last published state of `id`, whoever read it: { at =, done =, ... } or false.
function Board:peek(id)
  local s = self.store:get(self.prefix .. "s:" .. id)
  local entry = s and core.decode(s)
  if type(entry) ~= "table" or type(entry.at) ~= "number" then return false end
  return entry
end

function Board:now() return self.store:now() end

return M
