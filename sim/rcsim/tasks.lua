-- The task service: each task's whole timeline is fixed at creation and read lazily at each GET.
local util = require "rcsim.util"
local errors = require "rcsim.errors"

local M = {}

M.by_id = {} -- every task of every account, by taskId

local TEXT = {
  received = "Task request received and is being queued for processing.",
  completed = "Request processing completed successfully and its resources are now being provisioned / de-provisioned.",
  error = "Task request failed during processing. See error information for failure details.",
  other = "Task processing status changed.",
}

local seq = 0

-- Outcome words accepted in config `outcomes` and in direct task creation:
-- completed, error, error:TYPE, error:TYPE:additionalInfo, status:WORD, stuck.
function M.parse_outcome(o)
  if o == "completed" or o == "error" or o == "stuck" then return { kind = o } end
  if type(o) ~= "string" then return nil, "unknown outcome " .. tostring(o) end
  local typ, info = o:match("^error:([%w_]+):([%w_.%-]+)$")
  if not typ then typ = o:match("^error:([%w_]+)$") end
  if typ then return { kind = "error", type = typ, info = info } end
  local word = o:match("^status:(%S+)$")
  if word then return { kind = "status", word = word } end
  return nil, "unknown outcome " .. o
end

local function default_error(t, out)
  local typ = out.type or (t.commandType:find("^subscription") and "SUBSCRIPTION_PROVISION_FAILURE"
    or "PROVISION_FAILURE")
  return errors.new(typ, out.info)
end

-- Ends `t` in processing-error with `err` (and `info`, the response's additionalInfo) instead of
-- its planned outcome: the refusals the API decides while processing.
function M.fail(t, err, info)
  if t.outcome.kind ~= "completed" then return t end
  t.outcome = { kind = "error" }
  t.error, t.info = err, info
  return t
end

-- spec: commandType, [outcome] (else the next config outcome), [queue=false] (skips the
-- one-operation-at-a-time queue), [response] (table: what a completed task carries; nil: no
-- response at all), [link] ({path=, title=}: the resource link), [resolve] (function(at) ->
-- {response=, link=, error=, info=}, run once when the task ends: status GETs read state then),
-- [title] (the POST answer's task link title).
function M.create(acct, spec, now)
  local cfg = acct.cfg
  local out = assert(M.parse_outcome(spec.outcome or table.remove(cfg.outcomes, 1) or "completed"))
  local start = now
  if spec.queue ~= false then start = math.max(now, acct.busy_until) end
  seq = seq + 1
  local t = {
    id = util.uuid(), seq = seq, acct = acct, commandType = spec.commandType, outcome = out,
    created = now, visible = now + cfg.lag, t_init = start + cfg.step,
    response = spec.response, link = spec.link, resolve = spec.resolve, title = spec.title, ts = {},
  }
  t.t_progress = t.t_init + (cfg.initialized or 0)
  t.t_end = out.kind == "stuck" and math.huge or t.t_progress + cfg.step
  if out.kind == "error" then t.error, t.info = default_error(t, out) end
  if spec.queue ~= false then
    acct.busy_until = t.t_end
    acct.queue[#acct.queue + 1] = t
  end
  acct.tasks[#acct.tasks + 1] = t
  M.by_id[t.id] = t
  return t
end

-- How many queued changes of the account are still in received at `now`, counting up to `limit`:
-- their turns start in creation order, so they are the newest ones.
function M.waiting(acct, now, limit)
  local q, n = acct.queue, 0
  for i = #q, 1, -1 do
    if n >= limit or q[i].t_init <= now then break end
    n = n + 1
  end
  return n
end

function M.phase(t, now)
  if now >= t.t_end then return "end" end
  if now >= t.t_progress then return "progress" end
  if now >= t.t_init then return "initialized" end
  return "received"
end

function M.visible(t, now) return now >= t.visible end

local STARTS = { ["end"] = "t_end", progress = "t_progress", initialized = "t_init", received = "created" }

-- Time of the latest status change as of `now`.
function M.changed(t, now) return t[STARTS[M.phase(t, now)]] end

local function stamp(t, phase)
  local s = t.ts[phase]
  if not s then s = util.iso(t[STARTS[phase]]); t.ts[phase] = s end
  return s
end

-- A status GET's answer is read from the state at the moment its task ends, once.
local function settle(t)
  if t.settled or not t.resolve or t.outcome.kind ~= "completed" then return end
  t.settled = true
  local r = t.resolve(t.t_end)
  if r.error then
    M.fail(t, r.error, r.info)
  else
    t.response, t.link = r.response, r.link
  end
end

-- The task as the API shows it at `now`. `rel`: "task" (the answer to the request that made
-- it), "list" (an item of GET /tasks), else the task service's own "self".
function M.view(t, now, base, rel)
  local p = M.phase(t, now)
  local href = base .. "/tasks/" .. t.id
  local me
  if rel == "task" then
    me = { rel = "task", type = "GET", href = href, title = t.title }
  elseif rel == "list" then
    me = { rel = "task", type = "GET", href = href, title = "getTaskStatusById" }
  else
    me = { rel = "self", type = "GET", href = href }
  end
  local v = { taskId = t.id, commandType = t.commandType, status = p, timestamp = stamp(t, p), links = { me } }
  if p == "received" then
    v.description = TEXT.received
    return v
  end
  if p ~= "end" then
    v.status = p == "initialized" and "initialized" or "processing-in-progress"
    v.response = {}
    return v
  end
  settle(t)
  local kind = t.outcome.kind
  if kind == "error" then
    v.status, v.description, v.response = "processing-error", TEXT.error, { error = t.error, additionalInfo = t.info }
  elseif kind == "status" then
    v.status, v.description, v.response = t.outcome.word, TEXT.other, {}
  else
    v.status, v.description, v.response = "processing-completed", TEXT.completed, t.response
    if t.link then
      v.links = { { rel = "resource", type = "GET", href = base .. t.link.path, title = t.link.title }, me }
    end
  end
  return v
end

-- The view encoded as JSON, cached until the task's phase changes (a GET is mostly this).
function M.body(t, now, base, rel)
  local p, c = M.phase(t, now), t.cache
  if c and c.phase == p and c.base == base and c.rel == rel then return c.body end
  c = { phase = p, base = base, rel = rel, body = util.encode(M.view(t, now, base, rel)) }
  t.cache = c
  return c.body
end

-- Tasks of one account visible at `now`, most recent status change first.
function M.list(acct, now, base)
  local l = {}
  for _, t in ipairs(acct.tasks) do
    if M.visible(t, now) then l[#l + 1] = t end
  end
  table.sort(l, function(a, b)
    local ca, cb = M.changed(a, now), M.changed(b, now)
    if ca ~= cb then return ca > cb end
    return a.seq > b.seq
  end)
  for i, t in ipairs(l) do l[i] = M.view(t, now, base, "list") end
  return l
end

function M.reset() M.by_id = {}; seq = 0 end

return M
