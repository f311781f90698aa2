-- rctasks.background: waits that outlive the nginx request that started them.
--   spawn_wait(client, id, {dict=, ttl=, wait=, key=, on_done=})  wait in an ngx.timer, record the outcome
--   result(id, {dict=, key=})                                    read what spawn_wait recorded (any worker)
-- A record per task in a shared dict: "state\ttask status\tresource id\tupdated\tmessage". States:
-- waiting, completed, failed (processing-error or an unknown status), timeout, error (http,
-- transport, decode), interrupted (the worker exited first). Every field passes through the
-- client's redactor: a record never holds a key, whatever the server sent.
local check = require "rctasks.check"
local client = require "rctasks.client"
local defaults = require "rctasks.defaults"
local env = require "rctasks.env"
local taskmod = require "rctasks.task"

local M = {}

local FIELDS = { "state", "task_status", "resource_id", "updated", "message" }

local function dict_of(name, who)
  local ngx = env.ngx()
  local d = ngx and ngx.shared and ngx.shared[name]
  if not d then check.fail(who .. ": no `lua_shared_dict " .. name .. "` in nginx.conf") end
  return d
end

local function encode(r, redact)
  local out = {}
  for i, f in ipairs(FIELDS) do
    local v = r[f]
    out[i] = v == nil and "" or redact(tostring(v)):gsub("%c", " ")
  end
  return table.concat(out, "\t")
end

local function decode(s)
  local r, i = {}, 0
  for v in (s .. "\t"):gmatch("([^\t]*)\t") do
    i = i + 1
    if FIELDS[i] and v ~= "" then r[FIELDS[i]] = v end
  end
  r.resource_id = tonumber(r.resource_id)
  r.updated = tonumber(r.updated)
  return r
end

local OUTCOME = { task = "failed", timeout = "timeout" }

local function warn(msg) local ngx = env.ngx(); ngx.log(ngx.ERR, "rctasks: ", msg) end

local function record(c, dict, key, ttl, r)
  r.updated = env.ngx().now()
  local ok, err = dict:safe_set(key, encode(r, function(s) return c:redact(s) end), ttl)
  if not ok then warn("cannot record a background wait (" .. tostring(err) .. ")") end
end

local function task_fields(t)
  return t and t.status, t and taskmod.resource_id(t)
end

local function runner(premature, c, id, dict, key, ttl, wopts, on_done)
  if premature then
    return record(c, dict, key, ttl, { state = "interrupted", message = "nginx worker exited before the wait began" })
  end
  local user_update = wopts.on_update
  local w = {}
  for k, v in pairs(wopts) do w[k] = v end
  w.on_update = function(t, prev)
    local status, rid = task_fields(t)
    record(c, dict, key, ttl, { state = "waiting", task_status = status, resource_id = rid })
    if user_update then user_update(t, prev) end
  end
  -- pcall: a raise (e.g. in the user's callback) still ends as a record, not a lost wait
  local ok, t, err = pcall(c.wait, c, id, w)
  local r
  if not ok then
    r = { state = "error", message = "rctasks: wait raised: " .. tostring(t) }
    t, err = nil, nil
  elseif t then
    local status, rid = task_fields(t)
    r = { state = "completed", task_status = status, resource_id = rid }
  else
    local status, rid = task_fields(err.task)
    r = { state = OUTCOME[err.kind] or "error", message = tostring(err), task_status = status, resource_id = rid }
  end
  record(c, dict, key, ttl, r)
  if on_done then
    local okd, e = pcall(on_done, t, err, id)
    if not okd then warn("spawn_wait on_done raised: " .. c:redact(tostring(e))) end
  end
end

local SPAWN_OPTS = { dict = "string", ttl = "number", wait = "table", key = "string", on_done = "function" }

-- spawn_wait(client, id, opts) -> true | true, "exists" | nil, msg. Returns at once; a timer on
-- this worker waits. A second call for a task already tracked (and not interrupted) starts nothing.
function M.spawn_wait(c, id, opts)
  opts = check.options(opts, SPAWN_OPTS, "rctasks.background.spawn_wait")
  if getmetatable(c) ~= client.Client then
    check.fail("rctasks.background.spawn_wait: first argument must be an rctasks client")
  end
  check.task_id(id)
  local wo = client.wait_options(opts.wait) -- misuse raises here, not later in the timer
  local ngx = env.ngx()
  local dict = dict_of(opts.dict or defaults.shared_dict, "rctasks.background.spawn_wait")
  local key = "wait:" .. (opts.key or id)
  local ttl = opts.ttl or (wo.timeout + defaults.record_keep)
  local fresh = encode({ state = "waiting", updated = ngx.now() }, tostring)
  local ok, err = dict:safe_add(key, fresh, ttl)
  if not ok then
    if err ~= "exists" then return nil, "rctasks.background.spawn_wait: shared dict: " .. tostring(err) end
    local cur = M.result(id, { dict = opts.dict, key = opts.key })
    if cur and cur.state ~= "interrupted" then return true, "exists" end
    dict:set(key, fresh, ttl)
  end
  local started, terr = ngx.timer.at(0, runner, c, id, dict, key, ttl, opts.wait or {}, opts.on_done)
  if not started then
    dict:delete(key)
    return nil, "rctasks.background.spawn_wait: cannot start a timer: " .. tostring(terr)
  end
  return true
end

-- result(id, {dict=, key=}) -> {state=, task_status=, resource_id=, updated=, message=} | nil
function M.result(id, opts)
  opts = check.options(opts, { dict = "string", key = "string" }, "rctasks.background.result")
  local dict = dict_of(opts.dict or defaults.shared_dict, "rctasks.background.result")
  local s = dict:get("wait:" .. (opts.key or tostring(id)))
  return s and decode(s) or nil
end

return M
