-- rctasks.workflow: run and pipeline, the steps provisioning scripts are made of. A run is a
-- request, its task waited out and its resource followed (rctasks.resource). With an operation
-- key it is safe to rerun: the journal (rctasks.journal) says what an earlier run did, so a
-- completed key is answered from it, a task in flight is waited on, and a create whose answer was
-- lost is looked for before it is sent again. With the guard (rctasks.guard) it is safe to run
-- side by side: one change at a time per subscription, sent once the subscription is active,
-- sent again when the API refuses it as busy.
--   run(exec, policy, method, path, body, o, deadline) -> final task (true when no task ran: an
--                                                         adopted resource, a delete found done),
--                                                         resource, id
--   pipeline(exec, policy, steps, o)                   -> results by step name
-- o: the checked options (key, adopt among them), plus what the client adds: journal
-- (rctasks.journal), locks (rctasks.guard over the journal's store: one run per key at a time)
-- and guard (the subscription guard, when it is on).
local check = require "rctasks.check"
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local errors = require "rctasks.errors"
local families = require "rctasks.families"
local guard = require "rctasks.guard"
local journal = require "rctasks.journal"
local poll = require "rctasks.poll"
local resource = require "rctasks.resource"
local taskmod = require "rctasks.task"

local M = {}

-- Lua 5.1's pcall cannot be yielded across (a cosocket, a coroutine scheduler): there the lease
-- of a change whose callback raises is left to run out instead of being released.
local PCALL_YIELDS = rawget(_G, "jit") ~= nil or _VERSION ~= "Lua 5.1"

-- fn(...), then leave(): on every path, a raise included, where pcall allows it.
local function ensure(leave, fn, ...)
  if not PCALL_YIELDS then
    local a, b, c = fn(...)
    leave()
    return a, b, c
  end
  local ok, a, b, c = pcall(fn, ...)
  leave()
  if not ok then error(a, 0) end
  return a, b, c
end

-- What a create will be known by: its family and placeholder values, the commandType of its
-- task and the name it gives, where its family has names. nil for anything but a create.
local function intent(method, path, body)
  if method ~= "POST" then return nil end
  local f, values = families.collection(path)
  if not f then return nil end
  local name
  if f.listed and type(body) == "string" then
    local b = core.decode(body)
    name = type(b) == "table" and type(b.name) == "string" and b.name or nil
  end
  return { family = f, values = values, command = f.command, name = name }
end

-- The resource a completed create names, and its id.
local function made(exec, method, path, final)
  if method ~= "POST" or not final then return nil end
  return families.resource_of(exec.base_url, method, path, final), taskmod.resource_id(final)
end

-- Could a submission that failed have reached the API? An HTTP answer below 500 refused it, and
-- a transport that never sent it says so; anything else may have been acted on.
local function maybe_sent(err)
  if err.unsent then return false end
  return not (err.kind == "http" and type(err.status) == "number" and err.status < 500)
end

local record = check.merge -- a record: the run's base fields and this state's

------------------------------------------------------------------------------------------------
-- The crash window: a create sent, its answer never recorded. Look for what it made.

-- A task in the API's list that the lost create may have made: same commandType, updated after
-- the record was written (less the clocks' skew), claimed by no record of the journal. With a
-- name, only one whose finished resource carries that name.
local function lost_task(exec, policy, J, rec, it, o, deadline)
  local list, err = poll.list_tasks(exec, policy, deadline)
  if not list then return nil, err end
  local claimed
  claimed, err = J:claimed()
  if not claimed then return nil, err end
  local since, cands = rec.at - defaults.journal.skew, {}
  for _, t in ipairs(list) do
    local ts = taskmod.time(t)
    if rawget(t, "commandType") == rec.command and not claimed[t.taskId] and check.is_task_id(t.taskId)
       and (ts == nil or ts >= since) then
      cands[#cands + 1] = t
    end
  end
  table.sort(cands, function(a, b) return (taskmod.time(a) or 0) < (taskmod.time(b) or 0) end)
  if not (rec.name and it and it.family.listed) then return cands[1] end
  local wo = { timeout = deadline - exec.now(), interval = o.interval, max_interval = o.max_interval,
               backoff = o.backoff, jitter = o.jitter, early_404 = defaults.wait.early_404, shared = o.shared }
  for _, t in ipairs(cands) do
    local final = taskmod.done(t) and t or poll.wait(exec, policy, t.taskId, wo, deadline)
    local item = final and taskmod.ok(final) and made(exec, "POST", rec.path, final)
    local at = item and families.locate(item)
    local r = at and families.read(exec, policy, at, deadline, wo)
    if type(r) == "table" and r.name == rec.name then return final end
  end
  return nil
end

-- find_lost(...) -> task | nil, item path, element (found by name) | nil, nil, nil, err. Nothing
-- found is only believed once the task list has had `lag` seconds to show the create.
local function find_lost(exec, policy, J, rec, it, o, deadline)
  if rec.method ~= "POST" then return nil end -- an update or a delete is sent again: the same outcome
  for pass = 1, 2 do
    if rec.command then
      local t, err = lost_task(exec, policy, J, rec, it, o, deadline)
      if t or err then return t, nil, nil, err end
    end
    if rec.name and it and it.family.listed then
      local item, e = families.named(exec, policy, it.family, it.values, rec.name, deadline)
      if item == nil then return nil, nil, nil, e end
      if item then return nil, item, e end
    end
    if not rec.command and not (rec.name and it and it.family.listed) then
      return nil, nil, nil, errors.new("conflict", { message = "an earlier run sent " .. rec.method .. " "
        .. rec.path .. " and never recorded the answer; rctasks cannot tell whether it was acted on (its "
        .. "family has neither names nor a known commandType): look, then forget the key (rctasks journal "
        .. "--forget) to send it again", method = rec.method, url = exec.base_url .. rec.path })
    end
    local wait = rec.at + defaults.journal.lag - core.time()
    if pass == 2 or wait <= 0 then break end
    if exec.now() + wait > deadline then
      return nil, nil, nil, errors.timeout("no time left to rule out that an earlier run's " .. rec.method
        .. " " .. rec.path .. " was acted on", {})
    end
    exec:sleep(wait, deadline)
  end
  return nil
end

------------------------------------------------------------------------------------------------
-- run

-- One send of `method path` and what follows it. With a key, every step is recorded as it
-- happens: "submitting" before the request goes out, "submitted" the moment the API answers.
local function send(exec, policy, method, path, body, o, deadline, K)
  if not K then
    local t, err = resource.submit(exec, policy, method, path, body, deadline)
    if t == nil then return nil, err end
    return resource.finish(exec, policy, method, path, t, o, deadline)
  end
  local J, key, it = K.journal, K.key, K.intent
  local base = { method = method, path = path, command = it and it.command, name = it and it.name }
  local rec, err = J:get(key) -- afresh: a script side by side may have moved it on
  if rec == nil then return nil, err end
  K.earlier = rec ~= false
  if rec and rec.state == "completed" then return K.replay(rec) end
  if rec and rec.state == "submitted" then return K.resume(rec) end
  local t
  if rec and rec.state == "submitting" then
    local item, elem
    t, item, elem, err = find_lost(exec, policy, J, rec, it, o, deadline)
    if err then return nil, err end
    if item then return K.adopted(item, elem) end
  end
  if not t then
    local sent
    sent, err = J:put(key, record(base, { state = "submitting" }))
    if not sent then return nil, err end
    t, err = resource.submit(exec, policy, method, path, body, deadline)
    if t == nil and method == "DELETE" and err.status == 404 and rec then -- an earlier run's delete went through
      J:put(key, record(base, { state = "completed" }))
      return true
    end
    if t == nil then
      if not maybe_sent(err) then
        J:put(key, record(base, { state = "failed", error = tostring(err.message) }))
        return nil, err
      end
      -- the answer was lost on the way: look for what the request made before giving up
      local lt, item, elem = find_lost(exec, policy, J, sent, it, o, deadline)
      if item then return K.adopted(item, elem) end
      if not lt then return nil, err end -- still "submitting": a rerun looks again
      t = lt
    end
  end
  if not resource.is_task(t) then -- an answer without a task: done
    J:put(key, record(base, { state = "completed" }))
    return t
  end
  local ok
  ok, err = J:put(key, record(base, { state = "submitted", task = t.taskId }))
  if not ok then return nil, err end
  return K.settle(t)
end

-- With the guard: the change waits its turn and an active subscription, holds the lease while
-- it runs, and is sent again while the API refuses it as busy, inside the deadline.
local function guarded(exec, policy, method, path, o, deadline, go)
  local g = o.guard
  local subject = g and guard.subject(method, path)
  if not subject then return go(o) end
  while true do
    local ticket, err = g:enter(exec, policy, subject, o, deadline)
    if not ticket then return nil, err end
    local so = check.merge(o, { on_round = function() g:renew(ticket); if o.on_round then o.on_round() end end })
    local a, b, c = ensure(function() g:leave(ticket) end, go, so)
    if a ~= nil or not guard.busy(b) or exec.now() >= deadline then return a, b, c end
  end
end

-- The keyed parts of a run: what to do with each state an earlier run left.
local function keyed(exec, policy, method, path, o, deadline, J, it)
  local key = o.key
  local base = { method = method, path = path, command = it and it.command, name = it and it.name }
  local K = { journal = J, key = key, intent = it }
  function K.settle(t)
    local final, err = resource.await(exec, policy, method, path, t, o, deadline)
    if not final and K.earlier and method == "DELETE" and err.kind == "task" and type(err.code) == "string"
       and err.code:find("_NOT_FOUND$") then -- an earlier run's delete went through
      J:put(key, record(base, { state = "completed", task = t.taskId }))
      return true
    end
    if not final then -- a failed task is sent again by a rerun; a wait cut short is waited on again
      if err.kind == "task" then J:put(key, record(base, { state = "failed", task = t.taskId,
                                                            error = tostring(err.message) })) end
      return nil, err
    end
    local item, id = made(exec, method, path, final)
    -- completed once the task is: the resource may still be pending, but it exists
    J:put(key, record(base, { state = "completed", task = final.taskId, final = final, resource = item, id = id }))
    local f, res = resource.follow(exec, policy, method, path, final, o, deadline)
    return f, res, id
  end
  function K.resume(rec)
    K.earlier = true
    local t = journal.final_task({ final = { taskId = rec.task, status = "received" } })
    return K.settle(t)
  end
  function K.replay(rec)
    -- a resource may answer 404 for `grace` seconds after its create completed, not after a rerun
    local ro = check.merge(o, { grace = math.max(0, o.grace - (core.time() - rec.at)) })
    local final = journal.final_task(rec)
    local res, err
    if final then
      if o.on_update then o.on_update(final, nil) end
      final, res = resource.follow(exec, policy, method, path, final, ro, deadline)
      if final then return final, res, rec.id end
      err = res
    elseif not rec.resource then
      return true -- done without a task (a delete found done, a tag)
    else
      res, err = resource.fetch(exec, policy, rec.resource, ro, deadline, nil, true)
      if res then return true, res, rec.id end
    end
    if err.status == 404 and rec.resource then
      err.message = string.format("key '%s' completed, but its resource %s is gone (deleted since?): forget the "
        .. "key (rctasks journal --forget) to create it again; %s", key, rec.resource, tostring(err.message))
    end
    return nil, err
  end
  function K.adopted(item, elem)
    local id = elem[it.family.listed.id]
    J:put(key, record(base, { state = "completed", resource = item, id = id }))
    local res, err = resource.fetch(exec, policy, item, o, deadline, nil, true)
    if res == nil then return nil, err end
    return true, res, id
  end
  return K
end

-- o: the wait options plus resource, ready, fail, settle, grace, gone (rctasks.resource.follow),
-- and key, adopt, journal, guard. deadline: absolute; covers the whole run.
function M.run(exec, policy, method, path, body, o, deadline)
  deadline = deadline or exec.now() + o.timeout
  local J, it = o.key and o.journal, (o.key or o.adopt) and intent(method, path, body)
  if o.adopt and not (it and it.family.listed and it.name) then
    check.fail("rctasks.run: adopt needs a create (POST) of a family with names, with a name in its body ("
      .. method .. " " .. path .. ")")
  end
  local K
  if J then
    local rec, err = J:get(o.key)
    if rec == nil then return nil, err end
    if rec and (rec.method ~= method or rec.path ~= path) then
      check.fail(string.format("rctasks: key '%s' was used for %s %s, not %s %s (forget it with rctasks "
        .. "journal --forget)", o.key, rec.method, rec.path, method, path))
    end
    K = keyed(exec, policy, method, path, o, deadline, J, it)
    if rec and rec.state == "completed" then return K.replay(rec) end
    if rec and rec.state == "submitted" then return K.resume(rec) end
  end
  if o.adopt then
    local item, elem = families.named(exec, policy, it.family, it.values, it.name, deadline)
    if item == nil then return nil, elem end
    if item then
      if K then return K.adopted(item, elem) end
      local res, err = resource.fetch(exec, policy, item, o, deadline, nil, true)
      if res == nil then return nil, err end
      return true, res, elem[it.family.listed.id]
    end
  end
  -- one script at a time per key: a second one waits, then finds the first one's record
  local lock
  if K and o.locks then
    local err
    lock, err = o.locks:lock(exec, "k:" .. o.key, "key '" .. o.key .. "'", deadline, o)
    if not lock then return nil, err end
  end
  local function go(so) return send(exec, policy, method, path, body, so, deadline, K) end
  if not lock then return guarded(exec, policy, method, path, o, deadline, go) end
  local lo = check.merge(o, { on_round = function() o.locks:renew(lock) end })
  return ensure(function() o.locks:leave(lock) end, guarded, exec, policy, method, path, lo, deadline, go)
end

------------------------------------------------------------------------------------------------
-- pipeline: steps run in order, each one's results feeding the next.

-- steps: checked by the client. o: the wait options plus on_progress, grace, key (each step is
-- keyed key .. "/" .. its name), adopt, journal, guard.
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
                                grace = s.grace or o.grace, gone = s.gone,
                                key = o.key and (o.key .. "/" .. name) or nil })
    so.ready = s.ready == nil or s.ready
    if s.adopt ~= nil then so.adopt = s.adopt end
    if o.on_progress then
      so.on_update = function(t, prev) o.on_progress(name, t, prev) end
    end
    local t, res, id = M.run(exec, policy, method, path, body, so)
    if t == nil then
      local err = res
      err.step, err.results = name, results
      err.message = "step '" .. name .. "': " .. tostring(err.message)
      return nil, err
    end
    if id == nil and resource.is_task(t) then id = taskmod.resource_id(t) end
    results[name] = { task = resource.is_task(t) and t or nil, resource = res, id = id }
  end
  return results
end

return M
