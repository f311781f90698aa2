-- rctasks.cli: the `rctasks` command-line tool (bin/rctasks only sets paths and calls main).
--   rctasks list [--status S] [--limit N] [--json]
--   rctasks get ID [--json]
--   rctasks wait ID [--timeout S] [--interval S] [--max-interval S] [--json]
--   rctasks watch [--interval S] [--count N] [--status S] [--limit N]
--   rctasks journal [FILE] [--forget KEY] [--json]
-- Credentials come from the environment only (arguments show in `ps`). Exit codes: 0 success,
-- 1 task failed, 2 usage error, 3 timeout, 4 API or network error.
local rctasks = require "rctasks"
local check = require "rctasks.check"
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local journal_cmd = require "rctasks.cli.journal"
local out = require "rctasks.cli.out"
local taskmod = require "rctasks.task"

local M = {}

M.EXIT = out.EXIT
local EXIT = M.EXIT
local neutral, usage_error, table_text, cell, print_json = out.neutral, out.usage_error, out.table_text, out.cell,
  out.print_json

local USAGE = {
  main = [[
usage: rctasks <command> [options]

Follow the asynchronous tasks of the Redis Cloud API.

commands:
  list     list the account's recent tasks
  get      show one task
  wait     wait for a task to end
  watch    refresh a list of recent tasks every few seconds
  journal  show what a journal file holds: keyed operations, those in flight, locks held
  help     show help for a command

Run `rctasks <command> --help` for its options.

environment (credentials are never taken from arguments):
  REDISCLOUD_ACCESS_KEY   account API key (x-api-key)
  REDISCLOUD_SECRET_KEY   user API key (x-api-secret-key)
  REDISCLOUD_URL          API base URL (default https://api.redislabs.com/v1)
  RCTASKS_JOURNAL         the journal file `rctasks journal` reads when none is named

exit codes: 0 success, 1 task failed, 2 usage error, 3 timeout, 4 API or network error
]],
  list = [[
usage: rctasks list [--status S] [--limit N] [--json]

List the account's tasks of the past 10 days, most recent status update first.

  --status S   only tasks whose status is S (e.g. processing-error)
  --limit N    at most N tasks
  --json       one JSON array of task objects
]],
  get = [[
usage: rctasks get ID [--json]

Show one task.

  --json       the task as one JSON object
]],
  wait = [[
usage: rctasks wait ID [--timeout S] [--interval S] [--max-interval S] [--json]

Wait for a task to end. On a terminal a live status line shows the status, the elapsed time
and the next poll; piped, one line per status change. Exits 0 when the task completed, 1 when
it failed, 3 at the timeout, 4 on an API or network error.

  --timeout S        give up after S seconds (default @timeout@)
  --interval S       first delay between polls (default @interval@; it doubles up to --max-interval)
  --max-interval S   longest delay between polls (default @max_interval@)
  --json             print the final task as one JSON object, no progress
]],
  watch = [[
usage: rctasks watch [--interval S] [--count N] [--status S] [--limit N]

Show the account's recent tasks, refreshed every S seconds (default @interval@) until interrupted, or
N times with --count.

  --interval S   seconds between refreshes (default @interval@)
  --count N      stop after N refreshes
  --status S     only tasks whose status is S
  --limit N      at most N tasks (default @limit@)
]],
}

USAGE.journal = journal_cmd.USAGE

-- The defaults the usage texts name come from rctasks.defaults.
for cmd, d in pairs({ wait = defaults.wait, watch = defaults.watch }) do
  USAGE[cmd] = USAGE[cmd]:gsub("@([%w_]+)@", function(k) return string.format("%g", d[k]) end)
end

-- Per command: option name -> "flag" or "number"/"string" (takes a value).
local SPECS = {
  list = { status = "string", limit = "count", json = "flag" },
  get = { json = "flag" },
  wait = { timeout = "number", interval = "number", ["max-interval"] = "number", json = "flag" },
  watch = { interval = "number", count = "count", status = "string", limit = "count" },
  journal = journal_cmd.SPEC,
}
local POSITIONAL = { list = 0, get = 1, wait = 1, watch = 0, journal = { 0, 1 } }

------------------------------------------------------------------------------------------------
-- Output. Everything a server sent goes through `show` (or `json`) before it is printed: the
-- client's keys are redacted, and control characters and terminal escapes (C0, DEL, and C1 as
-- UTF-8) become "?", so no server text can move the cursor, retitle the terminal or forge lines.

-- parse(cmd, argv, first) -> opts, positional | nil, message
local function parse(cmd, argv, first)
  local spec, opts, pos = SPECS[cmd], {}, {}
  local i = first
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then
      opts.help = true
    elseif a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local kind = spec[name]
      if not kind then return nil, "unknown option --" .. name end
      if kind == "flag" then
        if value then return nil, "--" .. name .. " takes no value" end
        opts[name] = true
      else
        if not value then
          i = i + 1
          value = argv[i]
          if value == nil then return nil, "--" .. name .. " needs a value" end
        end
        if kind == "number" or kind == "count" then
          local n = tonumber(value)
          if not n or n ~= n or n < 0 or n == math.huge or (kind == "count" and (n < 1 or n % 1 ~= 0)) then
            return nil, "--" .. name .. " must be a " .. (kind == "count" and "positive integer" or
              "non-negative number") .. ", got '" .. value .. "'"
          end
          value = n
        end
        opts[name] = value
      end
    elseif a:sub(1, 1) == "-" and #a > 1 then
      return nil, "unknown option " .. a
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  local want = POSITIONAL[cmd]
  if type(want) == "table" then
    if not opts.help and #pos > want[2] then return nil, "too many arguments" end
  elseif not opts.help and #pos ~= want then
    if want == 0 then return nil, "unexpected argument '" .. pos[1] .. "'" end
    return nil, #pos == 0 and "missing task ID" or "too many arguments"
  end
  return opts, pos
end

local function resource_text(t, show)
  local r = t.response
  if type(r) ~= "table" then return "-" end
  local rid, sub = taskmod.resource_id(t), r.additionalResourceId
  if rid and type(sub) == "number" then return show(sub) .. "/" .. show(rid) end
  if rid then return show(rid) end
  local e = r.error
  if type(e) == "table" and type(e.type) == "string" then return show(e.type) end
  return "-"
end

local function task_rows(tasks, show)
  local rows = { { "TASK ID", "STATUS", "COMMAND", "UPDATED", "RESOURCE" } }
  for _, t in ipairs(tasks) do
    rows[#rows + 1] = { cell(show(t.taskId)), cell(show(t.status)), cell(show(t.commandType)),
                        cell(show(t.timestamp)), cell(resource_text(t, show)) }
  end
  return rows
end

local function filter(tasks, opts, default_limit)
  local kept, limit = {}, opts.limit or default_limit
  for _, t in ipairs(tasks) do
    if (not opts.status or t.status == opts.status) and (not limit or #kept < limit) then kept[#kept + 1] = t end
  end
  return kept
end

local function task_text(t, show)
  local rows = {}
  local function add(k, v) if v ~= nil then rows[#rows + 1] = { k, show(v) } end end
  add("taskId", t.taskId)
  add("commandType", t.commandType)
  add("status", t.status)
  add("description", t.description)
  add("timestamp", t.timestamp)
  local r = type(t.response) == "table" and t.response or {}
  add("resourceId", r.resourceId)
  add("additionalResourceId", r.additionalResourceId)
  add("additionalInfo", r.additionalInfo)
  if type(r.error) == "table" then
    add("error", taskmod.error_text(t))
    add("errorStatus", r.error.status)
  end
  local rels = {}
  for rel in pairs(type(t.links) == "table" and t.links or {}) do
    if type(rel) == "string" then rels[#rels + 1] = rel end
  end
  table.sort(rels)
  for _, rel in ipairs(rels) do add("link " .. show(rel), taskmod.link(t, rel)) end
  local w = 0
  for _, row in ipairs(rows) do w = math.max(w, #row[1]) end
  local text = {}
  for _, row in ipairs(rows) do text[#text + 1] = out.pad(row[1], w) .. "  " .. row[2] end
  return table.concat(text, "\n") .. "\n"
end

-- An error value -> exit code; its line goes to stderr (errors come sealed: no key in them).
local function fail(env, err)
  local line = tostring(err) -- one line, "rctasks <kind> error ..."
  local name = err.curl_code or err.code
  if err.kind == "transport" and type(name) == "string" and not line:find(name, 1, true) then
    line = line .. " (" .. name .. ")" -- the curl error name is what people search for
  end
  env.stderr:write(neutral(line), "\n")
  if err.kind == "task" then return EXIT.failed end
  if err.kind == "timeout" then return EXIT.timeout end
  return EXIT.api
end

------------------------------------------------------------------------------------------------
-- Commands: each gets env, the client, its show/json printers, the options and the task id.

local commands = {}

function commands.list(env, client, p, opts)
  local tasks, err = client:list()
  if not tasks then return fail(env, err) end
  tasks = filter(tasks, opts)
  if opts.json then return print_json(env, p.json, tasks) end
  env.stdout:write(#tasks == 0 and "no tasks\n" or table_text(task_rows(tasks, p.show)))
  return EXIT.ok
end

function commands.get(env, client, p, opts, id)
  local t, err = client:get(id)
  if not t then return fail(env, err) end
  if opts.json then return print_json(env, p.json, t) end
  env.stdout:write(task_text(t, p.show))
  return EXIT.ok
end

local function summary(t, show)
  local s = "task " .. show(t.taskId) .. " " .. show(t.status)
  local rid = taskmod.resource_id(t)
  if rid then s = s .. " resource " .. show(rid) end
  return s
end

function commands.wait(env, client, p, opts, id)
  local show = p.show
  local wo = { timeout = opts.timeout, interval = opts.interval, max_interval = opts["max-interval"],
    on_update = function(t)
      p.status = show(t.status)
      if p.live then
        env.stdout:write("\r\27[K", p.line())
        env.stdout:flush()
      elseif not opts.json then
        env.stdout:write(string.format("%7.1fs  %s\n", env.now() - p.t0, p.status))
        env.stdout:flush()
      end
    end }
  local t, err = client:wait(id, wo)
  if p.live then env.stdout:write("\r\27[K") end
  if not t then
    if opts.json and err.task then print_json(env, p.json, err.task) end
    if p.live and err.task then env.stdout:write(summary(err.task, show), "\n") end
    return fail(env, err)
  end
  if opts.json then return print_json(env, p.json, t) end
  env.stdout:write(summary(t, show), "\n")
  return EXIT.ok
end

function commands.watch(env, client, p, opts)
  local tty = env.isatty()
  local interval = opts.interval or defaults.watch.interval
  local n = 0
  while true do
    n = n + 1
    local tasks, err = client:list()
    local stamp = os.date("!%Y-%m-%dT%H:%M:%SZ")
    local text
    if tasks then
      tasks = filter(tasks, opts, defaults.watch.limit)
      text = #tasks == 0 and "no tasks\n" or table_text(task_rows(tasks, p.show))
    elseif err.retryable then
      text = neutral(tostring(err)) .. "\n" -- transient: show it and keep watching
    else
      return fail(env, err)
    end
    if tty then env.stdout:write("\27[H\27[2J") end
    env.stdout:write("# ", stamp, (tty and ("  every " .. interval .. "s") or ""), "\n", text)
    env.stdout:flush()
    if opts.count and n >= opts.count then return EXIT.ok end
    if not tty then env.stdout:write("\n") end
    env.sleep(interval)
  end
end

------------------------------------------------------------------------------------------------

local function isatty()
  local r = os.execute("test -t 1") -- the shell inherits our stdout
  return r == true or r == 0
end

-- The client, from REDISCLOUD_* (rctasks.env_options). On a terminal, `wait` redraws its status
-- line while the polling loop sleeps: the client's sleep is this one.
local function make_client(env, cmd, p)
  local sleep
  if p.live then
    sleep = function(d)
      local wake = env.now() + d
      while true do
        local left = wake - env.now()
        if left <= 0 then break end
        env.stdout:write("\r\27[K", p.line(left))
        env.stdout:flush()
        env.sleep(math.min(left, 0.2))
      end
    end
  end
  local ok, c = pcall(function()
    local o = rctasks.env_options()
    o.sleep = sleep
    return rctasks.new(o)
  end)
  if not ok then
    local msg = tostring(c):gsub("^[^:]*:%d+: ", "")
    if msg:find("is not set", 1, true) then
      msg = "set REDISCLOUD_ACCESS_KEY and REDISCLOUD_SECRET_KEY in the environment (" .. msg .. ")"
    end
    return nil, usage_error(env, cmd, msg)
  end
  return c
end

local function run(argv, env)
  local cmd = argv[1]
  if cmd == nil then env.stderr:write(USAGE.main); return EXIT.usage end
  if cmd == "--help" or cmd == "-h" then env.stdout:write(USAGE.main); return EXIT.ok end
  if cmd == "--version" then env.stdout:write("rctasks ", rctasks.VERSION, "\n"); return EXIT.ok end
  if cmd == "help" then
    local topic = argv[2] or "main"
    if not USAGE[topic] then return usage_error(env, nil, "no help for '" .. topic .. "'") end
    env.stdout:write(USAGE[topic])
    return EXIT.ok
  end
  if not commands[cmd] and cmd ~= "journal" then return usage_error(env, nil, "unknown command '" .. cmd .. "'") end
  local opts, pos = parse(cmd, argv, 2)
  if not opts then return usage_error(env, cmd, pos) end
  if opts.help then env.stdout:write(USAGE[cmd]); return EXIT.ok end
  if cmd == "journal" then return journal_cmd.run(env, opts, pos) end
  local id = pos[1]
  if id and not check.is_task_id(id) then
    return usage_error(env, cmd, "invalid task ID (expected a UUID such as 784299af-17ea-4ed6-b08f-dd643238c8dd)")
  end
  local p = { live = cmd == "wait" and not opts.json and env.isatty(), t0 = env.now(), status = "waiting" }
  function p.line(next_in)
    local s = string.format("%s  %s  %.1fs", id, p.status, env.now() - p.t0)
    if next_in then s = s .. string.format("  next poll in %.1fs", next_in) end
    return s
  end
  local client, code = make_client(env, cmd, p)
  if not client then return code end
  p.show, p.json = out.printers(client)
  local ok, rc = pcall(commands[cmd], env, client, p, opts, id)
  client:close()
  if not ok then error(client:redact(tostring(rc)), 0) end
  return rc
end

-- main(argv, env) -> exit code. env (optional): stdout, stderr, isatty, now, sleep, getenv. Never raises:
-- an internal failure is one line on stderr and exit 4, never a traceback.
function M.main(argv, env)
  env = env or {}
  env.stdout, env.stderr = env.stdout or io.stdout, env.stderr or io.stderr
  env.isatty = env.isatty or isatty
  env.now, env.sleep = env.now or core.now, env.sleep or core.sleep
  env.getenv = env.getenv or require("rctasks.env").getenv
  local ok, rc = pcall(run, argv or {}, env)
  if ok then return rc end
  env.stderr:write("rctasks: internal error: ", neutral(tostring(rc)):sub(1, 500), "\n")
  return EXIT.api
end

return M
