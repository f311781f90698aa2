-- The task service: each task's whole timeline is fixed at creation and read lazily at each GET.
local util = require "rcsim.util"

local M = {}

M.by_id = {} -- every task of every account, by taskId

local TEXT = {
  received = "Task request received and is being queued for processing.",
  progress = "Request processing is in progress.",
  completed = "Request processing completed successfully and its resources are now being provisioned / de-provisioned.",
  error = "Task request failed during processing. See error information for failure details.",
  other = "Task processing status changed.",
}

local seq = 0

-- Outcome words accepted in config `outcomes` and in direct task creation.
function M.parse_outcome(o)
  if o == "completed" or o == "error" or o == "stuck" then return { kind = o } end
  local typ = type(o) == "string" and o:match("^error:([%w_]+)$")
  if typ then return { kind = "error", type = typ } end
  local word = type(o) == "string" and o:match("^status:(%S+)$")
  if word then return { kind = "status", word = word } end
  return nil, "unknown outcome " .. tostring(o)
end

local function default_error(t, typ)
  typ = typ or (t.commandType:find("^subscription") and "SUBSCRIPTION_PROVISION_FAILURE" or "PROVISION_FAILURE")
  return { type = typ, status = "400 BAD_REQUEST",
           description = "The request failed while provisioning resources: " .. typ:lower():gsub("_", " ") }
end

-- spec: commandType, [outcome], [error] (forces processing-error), [queue=false] (skips the
-- one-operation-at-a-time queue), [resourceId], [additionalResourceId].
function M.create(acct, spec, now)
  local cfg = acct.cfg
  local out
  if spec.error then
    out = { kind = "error" }
  else
    out = assert(M.parse_outcome(spec.outcome or table.remove(cfg.outcomes, 1) or "completed"))
  end
  local start = now
  if spec.queue ~= false then start = math.max(now, acct.busy_until) end
  seq = seq + 1
  local t = {
    id = util.uuid(), seq = seq, acct = acct, commandType = spec.commandType, outcome = out,
    created = now, visible = now + cfg.lag, t_progress = start + cfg.step,
    resourceId = spec.resourceId, additionalResourceId = spec.additionalResourceId,
    ts = {},
  }
  t.t_end = out.kind == "stuck" and math.huge or t.t_progress + cfg.step
  if out.kind == "error" then t.error = spec.error or default_error(t, out.type) end
  if spec.queue ~= false then acct.busy_until = t.t_end end
  acct.tasks[#acct.tasks + 1] = t
  M.by_id[t.id] = t
  return t
end

function M.phase(t, now)
  if now >= t.t_end then return "end" end
  if now >= t.t_progress then return "progress" end
  return "received"
end

function M.visible(t, now) return now >= t.visible end

-- Time of the latest status change as of `now`.
function M.changed(t, now)
  local p = M.phase(t, now)
  if p == "end" then return t.t_end end
  if p == "progress" then return t.t_progress end
  return t.created
end

local function stamp(t, phase, at)
  local s = t.ts[phase]
  if not s then s = util.iso(at); t.ts[phase] = s end
  return s
end

-- The task as the API shows it at `now`; `rel` names the link of a fresh task ("task" on POST).
function M.view(t, now, base, rel)
  local p = M.phase(t, now)
  local me = { rel = rel or "self", type = "GET", href = base .. "/tasks/" .. t.id }
  local v = { taskId = t.id, commandType = t.commandType, links = { me } }
  if p == "received" then
    v.status, v.description, v.timestamp = "received", TEXT.received, stamp(t, p, t.created)
    return v
  end
  if p == "progress" then
    v.status, v.description, v.timestamp = "processing-in-progress", TEXT.progress, stamp(t, p, t.t_progress)
    v.response = {}
    return v
  end
  v.timestamp = stamp(t, p, t.t_end)
  local kind = t.outcome.kind
  if kind == "error" then
    v.status, v.description, v.response = "processing-error", TEXT.error, { error = t.error }
  elseif kind == "status" then
    v.status, v.description, v.response = t.outcome.word, TEXT.other, {}
  else
    v.status, v.description = "processing-completed", TEXT.completed
    v.response = { resourceId = t.resourceId, additionalResourceId = t.additionalResourceId }
    if t.resource_path then
      v.links = { { rel = "resource", type = "GET", href = base .. t.resource_path }, me }
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
  for i, t in ipairs(l) do l[i] = M.view(t, now, base) end
  return l
end

function M.reset() M.by_id = {}; seq = 0 end

return M
