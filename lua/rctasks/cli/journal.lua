-- rctasks.cli.journal: `rctasks journal [FILE]`, what a journal file holds, read from the file
-- alone (no credentials, no API request): each operation key's state, request, task, resource
-- and writer, what is in flight, and the locks scripts hold.
local core = require "rctasks.core"
local journal = require "rctasks.journal"
local out = require "rctasks.cli.out"

local M = {}

local EXIT, neutral, cell, table_text = out.EXIT, out.neutral, out.cell, out.table_text

M.USAGE = [[
usage: rctasks journal [FILE] [--forget KEY] [--json]

Show what a journal file (rctasks.new{ journal = FILE }) holds: each operation key, its state
(submitting: sent or about to be, answer not recorded; submitted: its task is in flight;
completed; failed: a rerun sends it again), its request, task and resource, and the locks
scripts hold on subscriptions and keys. Reads the file only: no credentials, no API request.
FILE defaults to $RCTASKS_JOURNAL.

  --forget KEY   drop KEY's record, so that the next run sends its request afresh
  --json         one JSON array of records
]]
M.SPEC = { forget = "string", json = "flag" }

local function age(at, now)
  if type(at) ~= "number" then return "-" end
  local d = math.floor(math.max(0, now - at))
  if d < 120 then return string.format("%ds ago", d) end
  if d < 7200 then return string.format("%dm ago", math.floor(d / 60)) end
  if d < 172800 then return string.format("%dh ago", math.floor(d / 3600)) end
  return string.format("%dd ago", math.floor(d / 86400))
end

local IN_FLIGHT = { submitting = true, submitted = true }

-- run(env, opts, positional) -> exit code.
function M.run(env, opts, pos)
  local path = pos[1] or env.getenv("RCTASKS_JOURNAL")
  if not path then return out.usage_error(env, "journal", "name a journal FILE (or set RCTASKS_JOURNAL)") end
  local f = io.open(path, "rb")
  if not f then return out.usage_error(env, "journal", "cannot open journal '" .. path .. "'") end
  f:close()
  local store = assert(require("rctasks.store.file").new{ path = path,
    warn = function(msg) env.stderr:write("rctasks: ", neutral(msg), "\n") end })
  local records, damaged = journal.all(store)
  if not records then
    return out.usage_error(env, "journal", "cannot read journal '" .. path .. "': " .. tostring(damaged))
  end
  if opts.forget then
    local n = 0
    for _, r in ipairs(records) do
      if r.key == opts.forget then
        local ok, err = journal.new(store, r.account):forget(r.key)
        if not ok then env.stderr:write("rctasks: ", neutral(tostring(err)), "\n"); return EXIT.api end
        n = n + 1
      end
    end
    if n == 0 then return out.usage_error(env, "journal", "no record of key '" .. opts.forget .. "'") end
    env.stdout:write("forgot ", neutral(opts.forget), "\n")
    return EXIT.ok
  end
  local locks = {}
  for _, k in ipairs(store:keys("rct:") or {}) do
    local what = k:match("^rct:%x+:g:(.+)$")
    if what then locks[#locks + 1] = what:gsub("^k:", "key ") end
  end
  if opts.json then
    local list = {}
    for i, r in ipairs(records) do
      local rec = r.record
      list[i] = { account = r.account:sub(1, 12), key = r.key, state = rec.state, method = rec.method,
                  path = rec.path, task = rec.task, resource = rec.resource, id = rec.id, at = rec.at,
                  by = rec.by, error = rec.error }
    end
    local _, json = out.printers({ redact = function(_, x) return x end })
    return out.print_json(env, json, { records = list, locks = locks })
  end
  local now, counts = core.time(), { submitting = 0, submitted = 0, completed = 0, failed = 0 }
  local rows = { { "KEY", "STATE", "REQUEST", "TASK", "RESOURCE", "WRITTEN", "BY" } }
  for _, r in ipairs(records) do
    local rec = r.record
    counts[rec.state] = counts[rec.state] + 1
    local function c(v) return cell(v == nil and "-" or neutral(tostring(v))) end
    rows[#rows + 1] = { c(r.key), c(rec.state .. (IN_FLIGHT[rec.state] and " *" or "")),
                        c(rec.method .. " " .. rec.path), c(rec.task), c(rec.resource), age(rec.at, now),
                        c(rec.by) }
  end
  local text = { #records == 0 and "no records\n" or table_text(rows) }
  for _, r in ipairs(records) do
    local e = r.record.error
    if e then text[#text + 1] = "  " .. cell(neutral(r.key)) .. ": " .. cell(neutral(e)) .. "\n" end
  end
  text[#text + 1] = string.format(
    "%d records: %d in flight (*: %d submitting, %d submitted), %d completed, %d failed\n", #records,
    counts.submitting + counts.submitted, counts.submitting, counts.submitted, counts.completed, counts.failed)
  if damaged > 0 then text[#text + 1] = damaged .. " damaged records skipped\n" end
  for _, l in ipairs(locks) do text[#text + 1] = "lock held: " .. cell(neutral(l)) .. "\n" end
  env.stdout:write(table.concat(text))
  return EXIT.ok
end


return M
