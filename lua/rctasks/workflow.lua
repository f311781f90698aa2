-- rctasks.workflow: the steps a provisioning script is made of, built on the executor (one
-- request) and the polling loop (waiting). Arguments arrive checked: client.lua checks them at
-- the public entry. Every function takes the executor and the retry policy first.
--   request(exec, policy, method, path, body)          -> decoded body (true for an empty 2xx)
--   submit(exec, policy, method, path, body, deadline) -> the task the API answered with
--   run(exec, policy, method, path, body, o, deadline) -> final task, resource
--   wait_ready(exec, policy, path, o)                  -> resource once its status is ready
--   pipeline(exec, policy, steps, o)                   -> results by step name
local core = require "rctasks.core"
local check = require "rctasks.check"
local errors = require "rctasks.errors"
local poll = require "rctasks.poll"
local retry = require "rctasks.retry"
local taskmod = require "rctasks.task"
local url = require "rctasks.url"

local M = {}

local ONCE = retry.ONCE

-- The decoder of generic answers: an empty 2xx body is `true`, anything else JSON.
local function decode_any(body)
  if not body:find("%S") then return true end
  return core.decode(body)
end

local decode_task = core.decode_task

function M.request(exec, policy, method, path, body)
  return exec:call(method, path, body, decode_any, policy)
end

function M.submit(exec, policy, method, path, body, deadline)
  return exec:call(method, path, body, decode_task, policy, deadline)
end

------------------------------------------------------------------------------------------------
-- Resources: where a finished task's resource lives, and polling it.

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

-- Resource paths for the command types whose task names no resource link.
local KNOWN = {
  subscription = function(id) return "/subscriptions/" .. id end,
  fixedSubscription = function(id) return "/fixed/subscriptions/" .. id end,
  database = function(id, sub) return sub and ("/subscriptions/" .. sub .. "/databases/" .. id) end,
  fixedDatabase = function(id, sub) return sub and ("/fixed/subscriptions/" .. sub .. "/databases/" .. id) end,
}

-- The path (under base_url) of the resource a completed task names, or nil: its resource link
-- when that names a path under the base URL, else the path its command type implies.
function M.resource_path(base_url, t)
  local p = url.rebase(base_url, taskmod.link(t, "resource"))
  if p then return p end
  local r, ct = rawget(t, "response"), rawget(t, "commandType")
  local kind = type(ct) == "string" and (ct:match("^(%a-)Create") or ct:match("^(%a-)Update"))
  local id = type(r) == "table" and url.segment(r.resourceId)
  if id and KNOWN[kind] then return KNOWN[kind](id, url.segment(r.additionalResourceId)) end
  return nil
end

local ResourceWatch = {}
ResourceWatch.__index = ResourceWatch

-- A watch of the resource at `path`: done at the first answer when `ready` is nil, else once
-- its status is in `ready` (a set); failed when it is in `fail`. `lenient`: an answer with no
-- status ends the watch (run's resource fetch: nothing to wait for). on_update(resource,
-- previous) on status changes.
local function resource_watch(exec, path, o, ready, fail, lenient, on_update)
  return setmetatable({ exec = exec, path = path, ready = ready, fail = fail, lenient = lenient,
    on_update = on_update, max_misses = math.huge, grace_until = exec.now() + o.grace }, ResourceWatch)
end

function ResourceWatch:probe(exec, deadline) return exec:call("GET", self.path, nil, decode_any, ONCE, deadline) end

function ResourceWatch:see(v, prev)
  if not self.ready then self.done, self.value = true, v; return end
  local object = type(v) == "table" and v[1] == nil -- a decoded JSON object has no integer keys
  local status = object and v.status or nil
  if not object or (status == nil and self.lenient) then
    if self.lenient then self.done, self.value = true, v; return end
    self.done, self.err = true, errors.new("decode", { resource = v, url = self.exec.base_url .. self.path,
      message = "resource " .. self.path .. " is not a JSON object" })
    return
  end
  if self.on_update and (prev == nil or status ~= prev.status) then self.on_update(v, prev) end
  if self.ready[status] then
    self.done, self.value = true, v
  elseif self.fail[status] then
    self.done, self.err = true, errors.resource(self.path, v, status)
  end
end

function ResourceWatch.fatal(_, err) return err end

function ResourceWatch:expired(o)
  local last = self.last
  return errors.timeout(string.format("resource %s not ready after %gs (last status %s)", self.path, o.timeout,
    type(last) == "table" and tostring(last.status) or "never seen"),
    { resource = last, url = self.exec.base_url .. self.path, cause = self.failed })
end

local function poll_resource(exec, policy, o, deadline, w)
  poll.run(exec, policy, o, deadline, { w })
  return w.value, w.err
end

-- o: the wait options plus statuses, fail, grace.
function M.wait_ready(exec, policy, path, o)
  local w = resource_watch(exec, path, o, set_of(o.statuses or { "active" }), set_of(o.fail or { "error" }), false,
    o.on_update)
  return poll_resource(exec, policy, o, exec.now() + o.timeout, w)
end

------------------------------------------------------------------------------------------------
-- run: submit, wait, fetch the resource.

-- o: the wait options plus resource (a path, function(task) -> path, or false), ready (true or
-- the ready statuses), fail, grace. deadline: absolute; covers the whole run.
function M.run(exec, policy, method, path, body, o, deadline)
  deadline = deadline or exec.now() + o.timeout
  local t, err = M.submit(exec, policy, method, path, body, deadline)
  if not t then return nil, err end
  if not check.is_task_id(t.taskId) then -- the server's word, not misuse
    return nil, errors.new("decode", { message = "the API answered a task id that is not one ("
      .. #t.taskId .. " bytes)", task = t, method = method, url = exec.base_url .. path })
  end
  local final = t
  if not taskmod.ok(t) then
    final, err = poll.wait(exec, policy, t.taskId, o, deadline)
    if not final then
      err.task_id = err.task_id or t.taskId
      return nil, err
    end
  end
  local rpath = o.resource
  if type(rpath) == "function" then rpath = rpath(final) end
  if rpath == nil then rpath = M.resource_path(exec.base_url, final) end
  if not rpath then return final end
  check.path(rpath)
  local ready = o.ready
  if ready == true then ready = { "active" } end
  -- o.on_update follows the task only: a pipeline's on_progress speaks of tasks
  local w = resource_watch(exec, rpath, o, ready and set_of(ready), set_of(o.fail or { "error" }), true)
  local res
  res, err = poll_resource(exec, policy, o, deadline, w)
  if res == nil then
    err.task = err.task or final
    err.task_id = err.task_id or final.taskId
    return nil, err
  end
  return final, res
end

------------------------------------------------------------------------------------------------
-- pipeline: steps run in order, each one's results feeding the next.

-- steps: checked by the client. o: the wait options plus on_progress and grace.
function M.pipeline(exec, policy, steps, o)
  local results = {}
  for _, s in ipairs(steps) do
    local name = s.name
    local path = s.path
    if type(path) == "function" then path = path(results) end
    local method = s.method or "POST"
    local body = s.body
    if type(body) == "function" then body = body(results) end
    body = check.request(method, path, body)
    local so = check.merge(o, { timeout = s.timeout or o.timeout, resource = s.resource, fail = s.fail,
                                grace = s.grace or o.grace })
    so.ready = s.ready == nil or s.ready
    if o.on_progress then
      so.on_update = function(t, prev) o.on_progress(name, t, prev) end
    end
    local t, res = M.run(exec, policy, method, path, body, so)
    if not t then
      local err = res
      err.step, err.results = name, results
      err.message = "step '" .. name .. "': " .. tostring(err.message)
      return nil, err
    end
    results[name] = { task = t, resource = res, id = taskmod.resource_id(t) }
  end
  return results
end

return M
