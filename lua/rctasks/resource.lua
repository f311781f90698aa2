-- rctasks.resource: one request and what follows it, built on the executor (one request), the
-- polling loop (waiting) and the family table (where a resource lives and what its status words
-- mean). Arguments arrive checked: client.lua checks them at the public entry. Every function
-- takes the executor and the retry policy first.
--   request(exec, policy, method, path, body)          -> decoded body (true for an empty 2xx)
--   submit(exec, policy, method, path, body, deadline) -> the task the API answered with, or what
--                                                         it answered when that is not a task
--   finish(exec, policy, method, path, t, o, deadline) -> final task, resource: the task `t` a
--                                                         request answered with, waited out (await),
--                                                         then the resource it names (follow)
--   fetch(exec, policy, rpath, o, deadline, mode, parent) -> a resource, read or waited for
--   wait_ready / wait_gone / wait_status(exec, policy, path, o)
-- rctasks.workflow builds run and pipeline (keys, journal, guard) on these.
local core = require "rctasks.core"
local check = require "rctasks.check"
local errors = require "rctasks.errors"
local families = require "rctasks.families"
local poll = require "rctasks.poll"
local retry = require "rctasks.retry"
local taskmod = require "rctasks.task"

local M = {}

local ONCE = retry.ONCE
local decode_any = families.decode_any

-- A task, or, for the operations that answer without one (tags, a 204), what they answered.
local function decode_answer(body, mt)
  if not body:find("%S") then return true end
  local t = core.decode_task(body, mt)
  if t then return t end
  return core.decode(body)
end

local function is_task(v) return getmetatable(v) == taskmod.mt end

-- A decoded body that is a task the API answered with, where a resource was expected.
local function looks_like_task(v)
  return type(v) == "table" and type(v.taskId) == "string" and type(v.status) == "string"
end

function M.request(exec, policy, method, path, body)
  return exec:call(method, path, body, decode_any, policy)
end

function M.submit(exec, policy, method, path, body, deadline)
  return exec:call(method, path, body, decode_answer, policy, deadline)
end

------------------------------------------------------------------------------------------------
-- Watches of one resource, for the polling loop.

local set_of = families.set_of

local Watch = {}
Watch.__index = Watch

local GONE = {} -- what a gone-watch's probe answers once the resource is not there any more

-- watch(exec, policy, path, o, mode): mode "ready" (until a ready status, seen `settle` times in a
-- row), "fetch" (the first answer; no status needed) or "gone" (until it answers 404 or
-- `deleted`). o: the wait options, plus statuses, fail, settle, on_update.
local function watch(exec, policy, path, o, mode)
  local at = families.locate(path)
  local f = at and at.exact and at.family
  if mode == "ready" and f and not o.statuses and next(f.ready) == nil then mode = "fetch" end -- no status words
  local w = setmetatable({ exec = exec, policy = policy, o = o, path = path, mode = mode, at = f and at,
    ready = o.statuses and set_of(o.statuses) or (f and f.ready) or set_of({ "active" }),
    fail = o.fail and set_of(o.fail) or (f and f.failed) or set_of({ "error" }),
    settle = o.settle or (f and f.settle) or 1, seen_ready = 0, on_update = o.on_update,
    max_misses = math.huge, grace_until = exec.now() + o.grace }, Watch)
  if mode == "gone" then w.grace_until = -math.huge end -- a 404 is the answer, not a delay
  return w
end

function Watch:probe(exec, deadline)
  local v, err
  if self.at then
    v, err = families.read(exec, self.policy, self.at, deadline, self.o)
  else
    v, err = exec:call("GET", self.path, nil, decode_any, ONCE, deadline)
  end
  if self.mode == "gone" and v == nil and err.status == 404 then return GONE end
  return v, err
end

function Watch:finish(value, err) self.done, self.value, self.err = true, value, err end

function Watch:see(v, prev)
  if v == GONE then return self:finish(true) end
  if self.mode == "fetch" then return self:finish(v) end
  local object = type(v) == "table" and v[1] == nil -- a decoded JSON object has no integer keys
  if not object and self.lenient then return self:finish(v) end -- run: nothing to wait for
  if not object then
    return self:finish(nil, errors.new("decode", { resource = v, url = self.exec.base_url .. self.path,
      message = "resource " .. self.path .. " is not a JSON object" }))
  end
  if looks_like_task(v) then
    return self:finish(nil, errors.new("decode", { resource = v, url = self.exec.base_url .. self.path,
      message = "GET " .. self.path .. " answers with a task, not a resource: use run(\"GET\", path) or " ..
        "wait_status(path)" }))
  end
  local status = v.status
  if self.on_update and (type(prev) ~= "table" or status ~= prev.status) then self.on_update(v, prev) end
  if self.mode == "gone" then
    if status == "deleted" then return self:finish(true) end
  elseif self.ready[status] then
    self.seen_ready = self.seen_ready + 1
    if self.seen_ready >= self.settle then return self:finish(v) end
    return
  elseif status == nil and self.lenient then
    return self:finish(v) -- nothing to wait for
  end
  self.seen_ready = 0
  if self.fail[status] then self:finish(nil, errors.resource(self.path, v, status)) end
end

function Watch.fatal(_, err) return err end

function Watch:expired(o)
  local last = self.last
  local what = self.mode == "gone" and "still there" or "not ready"
  return errors.timeout(string.format("resource %s %s after %gs (last status %s)", self.path, what, o.timeout,
    type(last) == "table" and tostring(last.status) or "never seen"),
    { resource = last, url = self.exec.base_url .. self.path, cause = self.failed })
end

local function run_watch(w, deadline)
  poll.run(w.exec, w.policy, w.o, deadline or w.exec.now() + w.o.timeout, { w })
  return w.value, w.err
end

-- o: the wait options plus statuses, fail, settle, grace.
function M.wait_ready(exec, policy, path, o)
  return run_watch(watch(exec, policy, path, o, "ready"))
end

-- o: the wait options plus fail, grace. true once the resource answers 404 (or reads `deleted`).
function M.wait_gone(exec, policy, path, o)
  return run_watch(watch(exec, policy, path, o, "gone"))
end

------------------------------------------------------------------------------------------------
-- Status reads: GETs that answer with a task whose resource reports on work going on (an import,
-- a backup). Each poll is one GET (one task) waited out; the rounds follow the wait schedule.

local StatusWatch = {}
StatusWatch.__index = StatusWatch

function StatusWatch:probe(exec, deadline)
  local r, err, t = families.task_resource(exec, self.policy, self.path, deadline, self.o)
  if err then return nil, err end
  self.task = t
  return r or {}
end

function StatusWatch:see(r, prev)
  local status = type(r) == "table" and r.status or nil
  if self.o.on_update and (type(prev) ~= "table" or status ~= prev.status) then self.o.on_update(r, prev) end
  if self.ready[status] then
    self.done, self.value = true, r
  elseif self.fail[status] then
    self.done, self.err = true, errors.resource(self.path, r, status)
    self.err.task = self.task
  end
end

StatusWatch.fatal = Watch.fatal

function StatusWatch:expired(o)
  local last = self.last
  return errors.timeout(string.format("%s not finished after %gs (last status %s)", self.path, o.timeout,
    type(last) == "table" and tostring(last.status) or "never seen"), { resource = last, task = self.task,
    url = self.exec.base_url .. self.path, cause = self.failed })
end

-- o: the wait options plus statuses, fail (default: the status read's own words).
function M.wait_status(exec, policy, path, o)
  local s = families.status_read(path)
  local w = setmetatable({ exec = exec, policy = policy, o = o, path = path,
    ready = o.statuses and set_of(o.statuses) or (s and s.ready_set) or set_of({ "success", "active" }),
    fail = o.fail and set_of(o.fail) or (s and s.failed_set) or set_of({ "failed", "error" }),
    max_misses = 0, grace_until = -math.huge }, StatusWatch)
  poll.run(exec, policy, o, exec.now() + o.timeout, { w })
  return w.value, w.err
end

------------------------------------------------------------------------------------------------
-- finish: wait for the task a request answered with, then follow the resource.

-- Poll the resource at `path` in `mode` for run; on_update follows the task only (a pipeline's
-- on_progress speaks of tasks), and an answer without a status ends the poll.
local function follow_watch(exec, policy, path, o, mode, deadline)
  local w = watch(exec, policy, path, o, mode)
  w.on_update, w.lenient = nil, true
  return run_watch(w, deadline)
end

-- await(exec, policy, method, path, t, o, deadline) -> the task `t` (what `method path` answered,
-- M.submit) once it has completed | nil, err.
function M.await(exec, policy, method, path, t, o, deadline)
  if not check.is_task_id(t.taskId) then -- the server's word, not misuse
    return nil, errors.new("decode", { message = "the API answered a task id that is not one ("
      .. #t.taskId .. " bytes)", task = t, method = method, url = exec.base_url .. path })
  end
  if taskmod.ok(t) then return t end
  local final, err = poll.wait(exec, policy, t.taskId, o, deadline)
  if not final then
    err.task_id = err.task_id or t.taskId
    return nil, err
  end
  return final
end

-- follow(exec, policy, method, path, final, o, deadline) -> final, resource: the resource the
-- completed task `final` of `method path` names, as run follows it. o: the wait options plus
-- resource (a path, function(task) -> path, or false), ready (true or the ready statuses), fail,
-- settle, grace, gone (false: a DELETE does not wait for the resource to go). deadline: absolute.
function M.follow(exec, policy, method, path, final, o, deadline)
  local r = rawget(final, "response")
  local carried = type(r) == "table" and r.resource or nil
  if method == "GET" then return final, carried end -- a GET that answers with a task carries its answer

  local rpath, mode = o.resource, o.ready and "ready" or "fetch"
  if type(rpath) == "function" then rpath = rpath(final) end
  if rpath == nil then
    local at = families.locate(path)
    if method == "DELETE" and at and at.exact then
      if o.gone == false then return final end
      rpath, mode = path, "gone"
    else
      rpath = families.resource_of(exec.base_url, method, path, final)
    end
  end
  if not rpath then return final, carried end
  check.path(rpath)
  local res, err = M.fetch(exec, policy, rpath, o, deadline, mode, o.resource == nil)
  if res == nil then
    err.task = err.task or final
    err.task_id = err.task_id or final.taskId
    return nil, err
  end
  if mode == "gone" then return final end
  return final, res
end

-- finish(exec, policy, method, path, t, o, deadline) -> final task, resource: await, then follow.
function M.finish(exec, policy, method, path, t, o, deadline)
  if not is_task(t) then return t end -- an operation that answers without a task: what it answered
  local final, err = M.await(exec, policy, method, path, t, o, deadline)
  if not final then return nil, err end
  return M.follow(exec, policy, method, path, final, o, deadline)
end

-- fetch(exec, policy, rpath, o, deadline, mode, parent) -> the resource at rpath as run follows
-- it: mode "fetch" (read once), "ready" (until its family's ready status; o.ready may list the
-- statuses) or "gone"; with `parent`, a ready database's subscription is waited out too, since a
-- change to a database turns its subscription pending for a while.
function M.fetch(exec, policy, rpath, o, deadline, mode, parent)
  mode = mode or (o.ready and "ready" or "fetch")
  local wo = type(o.ready) == "table" and check.merge(o, { statuses = o.ready }) or o
  local res, err = follow_watch(exec, policy, rpath, wo, mode, deadline)
  local up = res ~= nil and mode == "ready" and parent and families.parent_item(rpath)
  if up then
    local ok, perr = follow_watch(exec, policy, up, o, "ready", deadline)
    if ok == nil then return nil, perr end
  end
  return res, err
end

M.is_task = is_task

return M
