-- rctasks.guard: one change at a time to each subscription, across every script and worker that
-- shares the store, and no change sent to a subscription that is not ready for it. The API works
-- on one change per account at a time and refuses a change that meets a pending subscription (a
-- 429 "too many concurrent changes", a task failing SUBSCRIPTION_NOT_ACTIVE). For each change to a
-- subscription or to anything in it, the guard
--   1. takes the subscription's lease in the store, waiting its turn inside the caller's deadline,
--   2. waits until the subscription, and the database the change is about, are active,
--   3. keeps the lease while the change runs (renewed every poll round: o.on_round), and
--   4. lets it go when the change is over, on every path; a holder that dies loses it after ttl.
-- A refusal that means "busy" (M.busy) is sent again by the workflow once the subscription is
-- active again. Without a working store the guard still waits for active, and says so once.
local defaults = require "rctasks.defaults"
local env = require "rctasks.env"
local errors = require "rctasks.errors"
local families = require "rctasks.families"
local resource = require "rctasks.resource"

local M = {}

local Guard = {}
Guard.__index = Guard

-- guard.new(store, account, notify) -> guard. notify(kind, message): rctasks.env.notifier.
function M.new(store, account, notify)
  return setmetatable({ store = store, prefix = "rct:" .. account .. ":g:", notify = notify or function() end,
                        ttl = defaults.guard.ttl }, Guard)
end

-- What a change is about: { key =, sub = the subscription's item path, item = the database's }
-- for a change (not a GET) to a subscription or anything in it; nil otherwise (creating a
-- subscription, ACL, cloud accounts: nothing to serialise on).
function M.subject(method, path)
  if method == "GET" then return nil end
  local p = path:match("^[^?]*")
  local sub = p:match("^/subscriptions/%d+") or p:match("^/fixed/subscriptions/%d+")
  if not sub then return nil end
  local at = families.locate(p)
  local db = at and (at.family.name == "database" or at.family.name == "fixedDatabase") and at.item or nil
  if method == "DELETE" and at and at.exact then db = nil end -- what is being deleted need not be active
  return { key = sub, sub = sub, item = db }
end

-- A refusal that means the subscription was busy or not active: worth sending again once it is.
local BUSY_CODES = { "NOT_ACTIVE$", "IN_PENDING_STATUS", "^TOO_MANY_PENDING", "CONCURRENT" }
function M.busy(err)
  if type(err) ~= "table" then return false end
  if err.kind == "http" and err.status == 429 then return true end -- after the retry policy's minutes of 429s
  if err.kind ~= "task" or err.resource ~= nil or type(err.code) ~= "string" then return false end
  for _, pat in ipairs(BUSY_CODES) do
    if err.code:find(pat) then return true end
  end
  return false
end

-- The wait options of the guard's own waits: the caller's schedule, no callbacks, no grace, and
-- a failed or going status ends the wait as well as a ready one.
local function quiet(o, left, path)
  local at = families.locate(path)
  local st = at and at.family.statuses or {}
  local fail = {}
  for _, list in ipairs({ st.failed or { "error" }, st.gone or {} }) do
    for _, w in ipairs(list) do fail[#fail + 1] = w end
  end
  return { timeout = left, interval = o.interval, max_interval = o.max_interval, backoff = o.backoff,
           jitter = o.jitter, grace = 0, shared = o.shared, fail = fail }
end

-- lock(exec, name, what, deadline, o) -> ticket | nil, err: the lease `name` (in this guard's
-- store), waited for inside the deadline (o.on_guard(what) when it has to wait); kind "timeout"
-- when another holder keeps it past the deadline. A failing store gives an unheld ticket.
function Guard:lock(exec, name, what, deadline, o)
  local ticket = { key = self.prefix .. name, owner = env.unique(), held = false }
  local delay, first = defaults.guard.first_wait, true
  while true do
    local ok, err = self.store:lease(ticket.key, ticket.owner, self.ttl)
    if ok then
      ticket.held = true
      self.notify("guard", nil)
      return ticket
    end
    if ok == nil then -- the store failed: go on unserialised (the waits for active still protect)
      self.notify("guard", "the store of the subscription guard and the journal's locks failed ("
        .. tostring(err) .. "): changes go on without their lease")
      return ticket
    end
    if exec.now() + delay > deadline then
      return nil, errors.timeout(what .. " is held by another script's change until after the deadline", {})
    end
    if first and o.on_guard then o.on_guard(what) end
    first = false
    exec:sleep(delay, deadline)
    delay = math.min(delay * 2, defaults.guard.max_wait)
  end
end

-- guard:enter(exec, policy, subject, o, deadline) -> ticket | nil, err (kind "timeout" when the
-- subscription stays held or not active until the deadline).
function Guard:enter(exec, policy, subject, o, deadline)
  local ticket, err = self:lock(exec, subject.key, subject.sub, deadline, o)
  if not ticket then return nil, err end
  for _, p in ipairs({ subject.sub, subject.item or nil }) do
    local left = deadline - exec.now()
    local r, werr = resource.wait_ready(exec, policy, p, quiet(o, left > 0 and left or 0, p))
    -- only running out of time stops the change: a failed status or a missing resource is the
    -- API's to judge (a DELETE is how an errored database goes)
    if r == nil and werr.kind == "timeout" then
      self:leave(ticket)
      return nil, werr
    end
  end
  return ticket
end

-- Keep the lease (every poll round of the change).
function Guard:renew(ticket)
  if ticket.held then self.store:lease(ticket.key, ticket.owner, self.ttl) end
end

function Guard:leave(ticket)
  if ticket.held then
    ticket.held = false
    self.store:release(ticket.key, ticket.owner)
  end
end

return M
