-- rctasks.workflow: the helpers a provisioning script is made of, as client methods
-- (client.lua merges `methods` into the client):
--   client:request(method, path, body)        -> decoded body (true for an empty 2xx) | nil, err
--   client:submit(method, path, body)         -> the task the API answered with | nil, err
--   client:run(method, path, body, opts)      -> final task, resource | nil, err
--   client:wait_ready(path, opts)             -> resource once its status is ready | nil, err
--   client:wait_all(ids, opts)                -> { {id=, task=, err=}, ... } in input order
--   client:pipeline(steps, opts)              -> results by step name | nil, err (err.step)
-- Every loop here polls with the wait schedule (interval doubling to max_interval, plus jitter)
-- and one overall deadline; a Retry-After stretches a sleep, nothing stretches the deadline.
local cjson = require("cjson").new() -- a private instance: the caller's cjson settings stay theirs
local core = require "rctasks.core"
local errors = require "rctasks.errors"
local wait = require "rctasks.wait"

local M = { methods = {} }
local W = M.methods

M.GRACE = 60       -- seconds a resource may still answer 404 after its task completed
M.LIST_ABOVE = 2   -- wait_all lists all tasks in one GET while more than this many are pending

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }

------------------------------------------------------------------------------------------------
-- Option checks: misuse raises at the caller (level counts from the function that checks).

local function check_type(what, k, v, want, level)
  if want == "statuses" then
    local bad = type(v) ~= "table" or #v == 0
    for _, s in ipairs(type(v) == "table" and v or {}) do bad = bad or type(s) ~= "string" end
    if bad then error(what .. ": option '" .. k .. "' must be a list of strings", level + 1) end
  elseif want == "path" then
    if v ~= false and type(v) ~= "string" and type(v) ~= "function" then
      error(what .. ": option '" .. k .. "' must be a path, a function(task) or false", level + 1)
    end
  elseif want == "ready" then
    if type(v) ~= "boolean" then check_type(what, k, v, "statuses", level + 1) end
  elseif type(v) ~= want or (want == "number" and (v ~= v or v < 0)) then
    error(what .. ": option '" .. k .. "' must be a " .. (want == "number" and "non-negative number" or want),
      level + 1)
  end
end

-- Split opts into the wait options (checked by wait.options) and this helper's own ones.
local function split(what, opts, own, level)
  if opts ~= nil and type(opts) ~= "table" then error(what .. ": options must be a table", level + 1) end
  local w, mine = {}, {}
  for k, v in pairs(opts or {}) do
    if own[k] then
      check_type(what, k, v, own[k], level + 1)
      mine[k] = v
    else
      w[k] = v
    end
  end
  return wait.options(w, level + 2), mine
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

------------------------------------------------------------------------------------------------
-- Generic requests

local function check_request(self, method, path, body, level)
  if type(method) ~= "string" or not METHODS[method] then
    error("rctasks: method must be one of GET, POST, PUT, PATCH, DELETE", level + 1)
  end
  self:url(path, level + 1) -- raises on a path that could climb out of the base URL
  if body == nil then return nil end
  if type(body) == "string" then return body end -- already JSON
  if type(body) ~= "table" then error("rctasks: body must be a table, a JSON string or nil", level + 1) end
  local ok, s = pcall(cjson.encode, body)
  if not ok then error("rctasks: body cannot be encoded as JSON: " .. tostring(s), level + 1) end
  return s
end

-- The decoder of generic answers: an empty 2xx body is `true`, anything else JSON.
local function decode_any(body)
  if body:find("^%s*$") then return true end
  return core.decode(body)
end

local function request(self, method, path, body, ctl)
  return self:call(method, path, body, ctl, decode_any)
end

-- client:request(method, path, body) -> decoded body (nulls dropped) | true (empty 2xx) | nil, err
function W:request(method, path, body)
  return request(self, method, path, check_request(self, method, path, body, 2))
end

local function submit(self, method, path, body, ctl)
  return self:call(method, path, body, ctl, core.decode_task)
end

-- client:submit(method, path, body) -> the task the API answered with (any 2xx) | nil, err
function W:submit(method, path, body)
  return submit(self, method, path, check_request(self, method, path, body, 2))
end

------------------------------------------------------------------------------------------------
-- Resources: where a finished task's resource lives, and polling it.

-- A resource id as a path segment: whole numbers only, printed without ".0" on any Lua.
local function seg(x)
  return type(x) == "number" and x % 1 == 0 and string.format("%d", x) or nil
end

-- Resource paths for the command types whose task names no resource link.
local KNOWN = {
  subscription = function(id) return "/subscriptions/" .. id end,
  fixedSubscription = function(id) return "/fixed/subscriptions/" .. id end,
  database = function(id, sub) return sub and ("/subscriptions/" .. sub .. "/databases/" .. id) end,
  fixedDatabase = function(id, sub) return sub and ("/fixed/subscriptions/" .. sub .. "/databases/" .. id) end,
}

-- The path (under the base URL) of the resource a completed task names, or nil. A link to another
-- host is rebased onto ours: keys go only where the client was configured to send them.
function M.resource_path(client, t)
  local href = t:link("resource")
  if type(href) == "string" then
    local p = href:match("^%a[%w+.-]*://[^/]*(/.*)$") or (href:sub(1, 1) == "/" and href) or nil
    local base = client.base_url:match("^%a[%w+.-]*://[^/]*(.*)$") or ""
    if p and base ~= "" and p:sub(1, #base + 1) == base .. "/" then p = p:sub(#base + 1) end
    if p and pcall(client.url, client, p) then return p end
  end
  local r = t.response
  local kind = type(t.commandType) == "string" and
    (t.commandType:match("^(%a-)Create") or t.commandType:match("^(%a-)Update"))
  local id = r and seg(r.resourceId)
  if id and KNOWN[kind] then return KNOWN[kind](id, seg(r.additionalResourceId)) end
  return nil
end

local function copy_error(err, fields)
  local e = {}
  for k, v in pairs(err) do e[k] = v end
  for k, v in pairs(fields) do e[k] = v end
  return setmetatable(e, getmetatable(err))
end

-- Poll GET path until `check(value)` returns true (with the result); tolerates 404s until
-- `grace_until` and transient failures until the deadline. Returns value | nil, err.
local function poll_resource(self, path, o, deadline, grace_until, check)
  local next_delay = wait.schedule(o)
  local last
  while true do
    local v, err = request(self, "GET", path, nil, { once = true, deadline = deadline })
    local hint
    if v ~= nil then
      last = v
      local done, value, ferr = check(v)
      if done then return value, ferr end
    elseif err.kind == "timeout" then
      break
    elseif err.status == 404 and self.now() < grace_until then -- luacheck: ignore 542
      -- the resource lags its task: poll again
    elseif not err.retryable then
      return nil, err
    else
      hint = err.retry_after
    end
    if not wait.pause(self, next_delay, deadline, hint) then break end
  end
  return nil, errors.new("timeout", { retryable = true, resource = last, url = self.base_url .. path,
    message = string.format("resource %s not ready after %gs (last status %s)", path, o.timeout,
      type(last) == "table" and tostring(last.status) or "never seen") })
end

-- A check for poll_resource: done when the status is ready, failed when it is a failure status.
local function readiness(path, ready, fail, on_update)
  local prev
  return function(v)
    local status = type(v) == "table" and v.status or nil
    if on_update and (prev == nil or status ~= prev.status) then on_update(v, prev) end
    prev = v
    if ready[status] then return true, v end
    if fail[status] then
      return true, nil, errors.new("task", { resource = v, code = status,
        message = string.format("resource %s turned '%s'", path, tostring(status)) })
    end
    return false
  end
end

local READY_OWN = { statuses = "statuses", fail = "statuses", grace = "number" }

-- client:wait_ready(path, opts) -> resource once its status is in opts.statuses (default
-- {"active"}) | nil, err: kind "task" when it turns one of opts.fail (default {"error"}), kind
-- "timeout" at the deadline. opts: wait options (on_update(resource, previous) on status changes)
-- plus statuses, fail, grace (seconds of 404s tolerated, default 60).
function W:wait_ready(path, opts)
  self:url(path, 2)
  local o, mine = split("rctasks.wait_ready", opts, READY_OWN, 2)
  local now = self.now()
  return poll_resource(self, path, o, now + o.timeout, now + (mine.grace or M.GRACE),
    readiness(path, set_of(mine.statuses or { "active" }), set_of(mine.fail or { "error" }), o.on_update))
end

------------------------------------------------------------------------------------------------
-- run: submit, wait, fetch the resource.

local RUN_OWN = { resource = "path", ready = "ready", grace = "number", fail = "statuses" }

local function run(self, method, path, body, o, mine)
  local deadline = self.now() + o.timeout
  local t, err = submit(self, method, path, body, { deadline = deadline })
  if not t then return nil, err end
  if not pcall(require("rctasks.client").check_id, t.taskId, 1) then -- the server's word, not misuse
    return nil, errors.new("decode", { message = "the API answered a task id that is not one: " ..
      string.format("%q", tostring(t.taskId):sub(1, 64)), task = t, method = method, url = self.base_url .. path })
  end
  local final = t
  if not t:ok() then
    local wo = {}
    for k, v in pairs(o) do wo[k] = v end
    wo.timeout = math.max(0, deadline - self.now())
    final, err = self:wait(t.taskId, wo)
    if not final then
      err.task_id = err.task_id or t.taskId
      return nil, err
    end
  end
  local rpath = mine.resource
  if type(rpath) == "function" then rpath = rpath(final) end
  if rpath == nil then rpath = M.resource_path(self, final) end
  if not rpath then return final end
  self:url(rpath, 3)
  local ready = mine.ready
  if ready == true then ready = { "active" } end
  local check
  if ready then
    local r, fail = set_of(ready), set_of(mine.fail or { "error" })
    local inner = readiness(rpath, r, fail)
    check = function(v)
      if type(v) ~= "table" or v.status == nil then return true, v end -- nothing to wait for
      return inner(v)
    end
  else
    check = function(v) return true, v end
  end
  local res
  res, err = poll_resource(self, rpath, o, deadline, self.now() + (mine.grace or M.GRACE), check)
  if res == nil then
    err = copy_error(err, { task = err.task or final })
    err.task_id = err.task_id or final.taskId
    return nil, err
  end
  return final, res
end

-- client:run(method, path, body, opts) -> final task, resource (when the task names one) | nil, err
-- opts: wait options (timeout covers the whole run) plus resource (a path, function(task) -> path,
-- or false to skip the fetch), ready (true or a list of statuses: poll the resource until it is
-- ready; default false), fail (resource statuses that fail it, default {"error"}), grace (seconds
-- a resource may 404 after its task completed, default 60).
function W:run(method, path, body, opts)
  body = check_request(self, method, path, body, 2)
  local o, mine = split("rctasks.run", opts, RUN_OWN, 2)
  return run(self, method, path, body, o, mine)
end

------------------------------------------------------------------------------------------------
-- wait_all: many tasks, one GET /tasks per round while that is the cheaper way.

local WAIT_ALL_OWN = { list_above = "number" }

-- client:wait_all(ids, opts) -> array in input order of { id =, task = final task, err = error }.
-- opts: wait options (on_update(task, previous) per task) plus list_above (list all tasks in one
-- request while more than this many are pending, default 2).
function W:wait_all(ids, opts)
  if type(ids) ~= "table" then error("rctasks.wait_all: ids must be a list of task ids", 2) end
  local check_id = require("rctasks.client").check_id -- lazily: client.lua loads this file
  for _, id in ipairs(ids) do check_id(id, 2) end
  local o, mine = split("rctasks.wait_all", opts, WAIT_ALL_OWN, 2)
  local state = wait.run(self, ids, o, mine.list_above or M.LIST_ABOVE)
  local out = {}
  for i, id in ipairs(ids) do out[i] = { id = id, task = state[id].task, err = state[id].err } end
  return out
end

------------------------------------------------------------------------------------------------
-- pipeline: steps run in order, each one's results feeding the next.

local STEP_KEYS = { name = "string", method = "string", path = "any", body = "any", timeout = "number",
                    ready = "any", fail = "any", resource = "any", grace = "number" }
local PIPE_OWN = { on_progress = "function", grace = "number" }

local function check_steps(self, steps, level)
  if type(steps) ~= "table" or #steps == 0 then error("rctasks.pipeline: steps must be a non-empty list", level + 1) end
  local names = {}
  for i, s in ipairs(steps) do
    local what = "rctasks.pipeline: step " .. i
    if type(s) ~= "table" then error(what .. " must be a table", level + 1) end
    for k, v in pairs(s) do
      local want = STEP_KEYS[k]
      if not want then error(what .. ": unknown field '" .. tostring(k) .. "'", level + 1) end
      if want ~= "any" then check_type(what, k, v, want, level + 1) end
    end
    if type(s.name) ~= "string" or s.name == "" then error(what .. " needs a name", level + 1) end
    if names[s.name] then error(what .. ": duplicate name '" .. s.name .. "'", level + 1) end
    names[s.name] = true
    if type(s.path) ~= "string" and type(s.path) ~= "function" then
      error(what .. " (" .. s.name .. "): path must be a string or a function(results)", level + 1)
    end
    if s.body ~= nil and type(s.body) ~= "table" and type(s.body) ~= "function" and type(s.body) ~= "string" then
      error(what .. " (" .. s.name .. "): body must be a table, a JSON string or a function(results)", level + 1)
    end
    if s.ready ~= nil then check_type(what, "ready", s.ready, "ready", level + 1) end
    if s.fail ~= nil then check_type(what, "fail", s.fail, "statuses", level + 1) end
    if s.resource ~= nil then check_type(what, "resource", s.resource, "path", level + 1) end
    -- Static parts are checked now: a typo in step 3 must not surface after step 1 created something.
    check_request(self, s.method or "POST", type(s.path) == "string" and s.path or "/",
      type(s.body) ~= "function" and s.body or nil, level + 1)
  end
end

-- client:pipeline(steps, opts) -> results | nil, err
-- Each step { name =, method = "POST", path = string or function(results), body = table, string or
-- function(results), timeout =, ready = true (poll the resource until active; false or a status
-- list), fail =, resource =, grace = } is submitted, waited and its resource fetched; results[name]
-- = { task = final task, resource = resource, id = task:resource_id() }. opts: wait options
-- (timeout is each step's default), on_progress(step_name, task, previous), grace. The first
-- failure returns nil, err: its kind kept, err.step naming the step, err.results the steps done.
function W:pipeline(steps, opts)
  check_steps(self, steps, 2)
  local o, mine = split("rctasks.pipeline", opts, PIPE_OWN, 2)
  local results = {}
  for _, s in ipairs(steps) do
    local name = s.name
    local path = s.path
    if type(path) == "function" then path = path(results) end
    local method = s.method or "POST"
    local body = s.body
    if type(body) == "function" then body = body(results) end
    body = check_request(self, method, path, body, 2)
    local so = {}
    for k, v in pairs(o) do so[k] = v end
    so.timeout = s.timeout or o.timeout
    if mine.on_progress then
      so.on_update = function(t, prev) mine.on_progress(name, t, prev) end
    end
    local ready = s.ready
    if ready == nil then ready = true end
    local t, res = run(self, method, path, body, so,
      { ready = ready, fail = s.fail, resource = s.resource, grace = s.grace or mine.grace })
    if not t then
      local err = res
      err.step, err.results = name, results
      err.message = "step '" .. name .. "': " .. tostring(err.message)
      return nil, err
    end
    results[name] = { task = t, resource = res, id = t:resource_id() }
  end
  return results
end

return M
