-- rctasks.client: a configured connection to one Redis Cloud account, and every public method.
-- Each method checks its arguments (misuse raises at the caller's line), hands them down to
-- the layer that does the work (poll: tasks; workflow: provisioning steps), and seals any error
-- on the way out, so no error a method returns holds an API key, at any depth.
-- The keys live in the client's executor only; printing or dumping a client never shows them.
local board = require "rctasks.board"
local check = require "rctasks.check"
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local env = require "rctasks.env"
local executor = require "rctasks.executor"
local guard = require "rctasks.guard"
local journal = require "rctasks.journal"
local limiter = require "rctasks.limiter"
local poll = require "rctasks.poll"
local resource = require "rctasks.resource"
local retry = require "rctasks.retry"
local url = require "rctasks.url"
local workflow = require "rctasks.workflow"

local M = {}

local Client = {}
Client.__index = Client
Client.__name = "rctasks.client"

local state = setmetatable({}, { __mode = "k" }) -- client -> { exec =, policy = }

------------------------------------------------------------------------------------------------
-- Options of each public entry point (kinds: rctasks.check.KINDS).

local NEW = { api_key = "string", secret_key = "string", base_url = "string", timeout = "positive",
              connect_timeout = "positive", ca_file = "string", max_body = "count", transport = "any",
              sleep = "function", now = "function", retry = "any", limiter = "any", redis = "any",
              store = "any", on_event = "function", journal = "any", guard = "boolean" }
local WAIT = { timeout = "number", interval = "number", max_interval = "number", backoff = "factor",
               jitter = "number", on_update = "function" }

local function with_wait(own)
  local s = {}
  for k, v in pairs(WAIT) do s[k] = v end
  for k, v in pairs(own) do s[k] = v end
  return s
end
local WAIT_ALL = with_wait({ list_above = "number" })
local WAIT_READY = with_wait({ statuses = "statuses", fail = "statuses", grace = "number", settle = "count" })
local WAIT_GONE = with_wait({ fail = "statuses" })
local WAIT_STATUS = with_wait({ statuses = "statuses", fail = "statuses" })
local RUN = with_wait({ resource = "path", ready = "ready", grace = "number", fail = "statuses",
                        settle = "count", gone = "boolean", key = "key", adopt = "boolean",
                        on_guard = "function" })
local PIPELINE = with_wait({ on_progress = "function", grace = "number", key = "key", adopt = "boolean",
                             on_guard = "function" })
local STEP = { name = "string", method = "string", path = "any", body = "any", timeout = "number",
               ready = "ready", fail = "statuses", resource = "path", grace = "number", gone = "boolean",
               adopt = "boolean" }

-- Checked options over the wait defaults.
local function wait_options(opts, schema, what)
  return check.merge(defaults.wait, check.options(opts, schema or WAIT, what))
end
M.wait_options = function(opts) return wait_options(opts, WAIT, "rctasks.wait") end

------------------------------------------------------------------------------------------------
-- Construction

local function make_policy(spec)
  if spec == nil then return retry.new() end
  if spec == false then return retry.ONCE end
  if retry.is(spec) then return spec end
  if type(spec) == "table" then return retry.new(spec) end
  check.fail("rctasks.new: option 'retry' must be a table of retry options, a policy or false")
end

-- The coordination store: opts.store, or a Redis one from opts.redis (a redis:// URL or a table
-- of host, port, db, password, timeout), else none (this process alone).
local function make_store(opts)
  if opts.store ~= nil and opts.redis ~= nil then check.fail("rctasks.new: give `store` or `redis`, not both") end
  local st = opts.store
  if opts.redis ~= nil then
    local spec = opts.redis
    if type(spec) == "string" then spec = { url = spec } end
    if type(spec) ~= "table" then check.fail("rctasks.new: option 'redis' must be a redis:// URL or a table") end
    local err
    st, err = require("rctasks.store.redis").new(spec)
    if not st then check.fail("rctasks.new: option 'redis': " .. tostring(err)) end
  end
  if st ~= nil and (type(st) ~= "table" or type(st.budget) ~= "function") then
    check.fail("rctasks.new: option 'store' must be a coordination store (rctasks.store.*)")
  end
  return st
end

-- The journal's store: a file path (store/file.lua), true (the coordination store: Redis, or the
-- shared dict inside nginx), or a store value; nil: no journal.
local function make_journal_store(spec, store)
  if spec == nil or spec == false then return nil end
  if spec == true then
    if not store then check.fail("rctasks.new: journal = true needs a coordination store (`store` or `redis`)") end
    return store
  end
  if type(spec) == "string" then
    local st, err = require("rctasks.store.file").new(spec)
    if not st then check.fail("rctasks.new: option 'journal': " .. tostring(err)) end
    return st
  end
  if type(spec) ~= "table" or type(spec.lease) ~= "function" or type(spec.keys) ~= "function" then
    check.fail("rctasks.new: option 'journal' must be a file path, true or a store (rctasks.store.*)")
  end
  return spec
end

-- nil: this process's own budget, or the store's when it is shared. A table: limiter options (limit,
-- window), shared the same way; with `dict`, one budget for every worker of this nginx. false:
-- none. Else the user's value. Shared budgets are keyed by a hash of the account key.
local function make_limiter(spec, account, store, notify)
  if spec == false then return nil end
  if spec == nil and store and store.shared then
    return limiter.stored{ store = store, key = account, notify = notify }
  end
  if spec == nil then return limiter.new() end
  if type(spec) == "table" and getmetatable(spec) == nil then
    if spec.dict == nil and store and store.shared then -- the user's numbers, shared all the same
      return limiter.stored(check.merge(spec, { store = store, key = account, notify = notify }))
    end
    if spec.dict == nil then return limiter.new(spec) end
    return limiter.shared(check.merge({ key = account }, spec))
  end
  if type(spec) ~= "table" and type(spec) ~= "userdata" then
    check.fail("rctasks.new: option 'limiter' must be a table of limiter options, a limiter or false")
  end
  return spec
end

-- Cosockets inside nginx (never block a worker), libcurl elsewhere; a name picks one, a table is
-- the user's own.
local function make_transport(spec, cfg)
  if spec == nil then spec = env.ngx() and "ngx" or "curl" end
  if spec == "curl" then return require("rctasks.transport.curl").new(cfg) end
  if spec == "ngx" then return require("rctasks.transport.ngx").new(cfg) end
  if type(spec) == "string" then
    check.fail("rctasks.new: unknown transport '" .. spec .. "' (curl, ngx or a table)")
  end
  if type(spec) ~= "table" and type(spec) ~= "userdata" then
    check.fail("rctasks.new: transport must be 'curl', 'ngx' or a value with :request(req)")
  end
  return spec
end

-- rctasks.new{api_key=, secret_key=, base_url=, timeout=, connect_timeout=, ca_file=, max_body=,
-- transport=, retry=, limiter=, sleep=, now=} -> client. Misuse raises here, at the caller.
function M.new(opts)
  if type(opts) ~= "table" then check.fail("rctasks.new: options must be a table") end
  check.options(opts, NEW, "rctasks.new")
  for _, k in ipairs({ "api_key", "secret_key" }) do
    if opts[k] == nil or opts[k] == "" then check.fail("rctasks.new: " .. k .. " is missing") end
    if opts[k]:find("%c") then check.fail("rctasks.new: keys must not contain control characters") end
  end
  if opts.ca_file and opts.ca_file:find("%c") then check.fail("rctasks.new: ca_file has control characters") end
  local base, why = url.base(opts.base_url or defaults.base_url)
  if not base then check.fail("rctasks.new: base_url " .. why) end
  local transport = make_transport(opts.transport, { timeout = opts.timeout,
    connect_timeout = opts.connect_timeout, ca_file = opts.ca_file, max_body = opts.max_body })
  local ngx = env.ngx()
  local account = core.sha256(opts.api_key) -- what stores name the account by: never the key
  local notify = env.notifier(opts.on_event or function(kind, msg)
    env.log(msg or (kind == "budget" and "the shared request budget" or "the coordination store") .. " works again")
  end)
  local store = make_store(opts)
  local exec = executor.new{
    base_url = base, api_key = opts.api_key, secret_key = opts.secret_key, transport = transport,
    limiter = make_limiter(opts.limiter, account, store, notify), now = opts.now or core.now,
    sleep = opts.sleep or (ngx and ngx.sleep or core.sleep), timeout = opts.timeout or defaults.request.timeout,
    agent = "rctasks/" .. core.version .. " " .. (transport.agent or (_VERSION:gsub(" ", "/"))),
  }
  local self = setmetatable({ base_url = base }, Client)
  local shared = store and store.shared and { notify = notify, board = board.new(store, account,
    { lease = defaults.wait.max_interval + defaults.wait.lease_margin, margin = defaults.wait.lease_margin,
      scrub = exec.redact, pause = ngx and function() ngx.sleep(0.001) end }) } or nil
  local jstore = make_journal_store(opts.journal, store)
  -- the journal's store also holds the locks: one run per key, one change per subscription
  local locks = jstore and guard.new(jstore, account, notify)
  local on = opts.guard
  if on == nil then on = jstore ~= nil end
  state[self] = { exec = exec, policy = make_policy(opts.retry), shared = shared, store = store, account = account,
                  journal = jstore and journal.new(jstore, account, exec.redact), locks = locks,
                  guard = on and (locks or guard.new(store or require("rctasks.store.memory").new(), account, notify)) }
  return self
end

-- The executor and the retry policy of an open client; o (checked options), when given, gets the
-- client's shared polling (o.shared: rctasks.board), which poll.wait and poll.wait_all read.
local function open(self, o)
  local s = state[self]
  if not s or s.exec:closed() then check.fail("rctasks: client is closed") end
  if o then o.shared = s.shared end
  return s.exec, s.policy
end

-- A run's or a pipeline's options get the client's journal, locks and guard; a key needs a journal.
local function workflow_options(self, o, what)
  local s = state[self]
  if o.key and not s.journal then
    check.fail(what .. ": option 'key' needs a journal (rctasks.new{ journal = \"path/to/file\" })")
  end
  o.journal, o.locks, o.guard = s.journal, s.locks, s.guard
  return o
end

-- An error on its way out loses every key, at any depth, and its long strings are cut.
local function out(exec, v, b)
  if v == nil and b ~= nil then return nil, exec:seal(b) end
  return v, b
end

------------------------------------------------------------------------------------------------
-- Tasks

-- client:get(id) -> task | nil, err
function Client:get(id)
  check.task_id(id)
  local exec, policy = open(self)
  return out(exec, poll.get_task(exec, policy, id))
end

-- client:list() -> array of tasks, most recent status update first | nil, err
function Client:list()
  local exec, policy = open(self)
  return out(exec, poll.list_tasks(exec, policy))
end

-- client:wait(id, opts) -> final task | nil, err (kinds task, timeout, http, transport, decode).
-- opts: timeout, interval, max_interval, backoff, jitter, on_update(task, previous).
function Client:wait(id, opts)
  check.task_id(id)
  local o = wait_options(opts, WAIT, "rctasks.wait")
  local exec, policy = open(self, o)
  return out(exec, poll.wait(exec, policy, id, o))
end

-- client:wait_all(ids, opts) -> array in input order of { id =, task = final task, err = error }.
-- opts: the wait options (on_update per task) plus list_above (one GET /tasks per round while more
-- than this many are pending, default 2).
function Client:wait_all(ids, opts)
  if type(ids) ~= "table" then check.fail("rctasks.wait_all: ids must be a list of task ids") end
  for _, id in ipairs(ids) do check.task_id(id) end
  local o = wait_options(opts, WAIT_ALL, "rctasks.wait_all")
  local exec, policy = open(self, o)
  local by_id = poll.wait_all(exec, policy, ids, o)
  local results = {}
  for i, id in ipairs(ids) do
    local w = by_id[id]
    results[i] = { id = id, task = w.value, err = w.err and exec:seal(w.err) }
  end
  return results
end

------------------------------------------------------------------------------------------------
-- Workflows

-- client:request(method, path, body) -> decoded body (nulls dropped) | true (empty 2xx) | nil, err.
-- body: a table (sent as JSON), a JSON string, or nil.
function Client:request(method, path, body)
  body = check.request(method, path, body)
  local exec, policy = open(self)
  return out(exec, resource.request(exec, policy, method, path, body))
end

-- client:submit(method, path, body) -> the task the API answered with (any 2xx) | nil, err. For
-- the operations that answer without a task (database tags, traffic resume), what they answered:
-- the decoded body, or true for an empty one.
function Client:submit(method, path, body)
  body = check.request(method, path, body)
  local exec, policy = open(self)
  return out(exec, resource.submit(exec, policy, method, path, body))
end

-- client:run(method, path, body, opts) -> final task, resource | nil, err. Submits, waits for the
-- task, then follows the resource the request names (rctasks.families knows where each family's
-- resource is read): a create or an update fetches it (and with ready, polls it until its
-- family's ready status); a DELETE of a resource waits until it is gone (resource nil); a GET
-- that answers with a task returns that task's response.resource; an operation that answers
-- without a task returns what it answered. opts: the wait options (timeout covers the whole run)
-- plus resource (a path, function(task) -> path, or false to skip the fetch), ready (true or a
-- list of statuses; default false), fail (statuses that fail it; default the family's), settle
-- (ready polls in a row), grace (seconds a resource may answer 404 after its task completed,
-- default 60), gone (false: a DELETE does not wait for the resource to go).
function Client:run(method, path, body, opts)
  body = check.request(method, path, body)
  local o = wait_options(opts, RUN, "rctasks.run")
  local exec, policy = open(self, o)
  workflow_options(self, o, "rctasks.run")
  local final, res = workflow.run(exec, policy, method, path, body, o)
  return out(exec, final, res)
end

-- client:wait_ready(path, opts) -> the resource once its status is ready | nil, err: kind "task"
-- when it turns a failed status, "timeout" at the deadline, "decode" when the answer is not a
-- JSON object (or is a task: see wait_status). Ready and failed statuses are the family's
-- (rctasks.families), or opts.statuses and opts.fail. A resource without a GET of its own (ACL
-- rules and roles, peerings, ...) is read the way its family is. opts: the wait options
-- (on_update(resource, previous) on status changes) plus statuses, fail, settle (ready polls in
-- a row; the family's default), grace (seconds of 404s before it is first seen, default 60).
function Client:wait_ready(path, opts)
  check.path(path)
  local o = wait_options(opts, WAIT_READY, "rctasks.wait_ready")
  local exec, policy = open(self, o)
  return out(exec, resource.wait_ready(exec, policy, path, o))
end

-- client:wait_gone(path, opts) -> true once the resource answers 404 (or reads "deleted") | nil,
-- err: "timeout" at the deadline, "task" when it turns a failed status. What run does after a
-- DELETE. opts: the wait options (on_update on status changes) plus fail.
function Client:wait_gone(path, opts)
  check.path(path)
  local o = wait_options(opts, WAIT_GONE, "rctasks.wait_gone")
  local exec, policy = open(self, o)
  return out(exec, resource.wait_gone(exec, policy, path, o))
end

-- client:wait_status(path, opts) -> the resource a status GET reports (an import's, a backup's)
-- once its status is terminal (success) | nil, err: "task" when it is "failed" (err.resource
-- says why), "timeout" at the deadline. Each poll is one GET, which answers with a task that is
-- waited out; the polls follow the wait schedule. opts: the wait options plus statuses, fail.
function Client:wait_status(path, opts)
  check.path(path)
  local o = wait_options(opts, WAIT_STATUS, "rctasks.wait_status")
  local exec, policy = open(self, o)
  return out(exec, resource.wait_status(exec, policy, path, o))
end

-- Static parts are checked before anything is sent: a typo in step 3 must not surface after
-- step 1 created something.
local function check_steps(steps)
  if type(steps) ~= "table" or #steps == 0 then check.fail("rctasks.pipeline: steps must be a non-empty list") end
  local names = {}
  for i, s in ipairs(steps) do
    local what = "rctasks.pipeline: step " .. i
    if type(s) ~= "table" then check.fail(what .. " must be a table") end
    check.options(s, STEP, what)
    if type(s.name) ~= "string" or s.name == "" then check.fail(what .. " needs a name") end
    if names[s.name] then check.fail(what .. ": duplicate name '" .. s.name .. "'") end
    names[s.name] = true
    if type(s.path) ~= "string" and type(s.path) ~= "function" then
      check.fail(what .. " (" .. s.name .. "): path must be a string or a function(results)")
    end
    if s.body ~= nil and type(s.body) ~= "table" and type(s.body) ~= "function" and type(s.body) ~= "string" then
      check.fail(what .. " (" .. s.name .. "): body must be a table, a JSON string or a function(results)")
    end
    check.request(s.method or "POST", type(s.path) == "string" and s.path or "/",
      type(s.body) ~= "function" and s.body or nil)
  end
end

-- client:pipeline(steps, opts) -> results | nil, err
-- Each step { name =, method = "POST", path = string or function(results), body = table, string or
-- function(results), timeout =, ready = true (poll the resource until active; false or a status
-- list), fail =, resource =, grace = } is submitted, waited and its resource fetched; results[name]
-- = { task = final task, resource = resource, id = its resourceId }. opts: the wait options
-- (timeout is each step's default), on_progress(step_name, task, previous), grace. The first
-- failure returns nil, err: its kind kept, err.step naming the step, err.results the steps done.
function Client:pipeline(steps, opts)
  check_steps(steps)
  local o = wait_options(opts, PIPELINE, "rctasks.pipeline")
  local exec, policy = open(self, o)
  workflow_options(self, o, "rctasks.pipeline")
  return out(exec, workflow.pipeline(exec, policy, steps, o))
end

------------------------------------------------------------------------------------------------
-- The rest

-- client:redact(s) -> s with this client's API keys replaced by "[redacted]" (for your own logs).
function Client:redact(s)
  local st = state[self]
  return st and st.exec.redact(s) or s
end

-- client:stats() -> the transport's counters ({requests=, connects=} for curl), or nil.
function Client:stats()
  local st = state[self]
  return st and st.exec:stats()
end

-- Idempotent; the transport's handle is freed now rather than at the next GC.
function Client:close()
  local st = state[self]
  if st then st.exec:close() end
end
Client.__close = Client.close

function Client:__tostring()
  return "rctasks.client (" .. self.base_url .. ")"
end

------------------------------------------------------------------------------------------------
-- For rctasks.background (the same layer): what a scheduler needs of a client.

function M.store_of(c) local s = state[c]; return s and s.store end
function M.account_of(c) local s = state[c]; return s and s.account end

-- A watch of task `id` for the scheduler; on_update(task) on each status change.
function M.task_watch(_, id, on_update)
  return poll.task_watch(id, { early_404 = defaults.wait.early_404, on_update = on_update })
end

-- Rounds without end over the watches refill() brings (poll.serve), through the client's board.
function M.serve_rounds(c, o, refill, done, stop)
  local exec, policy = open(c, o)
  return poll.serve(exec, policy, o, refill, done, stop, o.shared)
end

M.Client = Client
return M
