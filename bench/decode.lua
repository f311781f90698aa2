-- Case 1, decode: one task body or a `GET /v1/tasks` body of n tasks, by
--   impl=rctasks     core.decode_task / core.decode_tasks (decode + checks + normalisation, in C)
--   impl=cjson       cjson.decode alone (no checks, floats for ids on 5.4, nulls kept)
--   impl=cjson_lua   cjson.decode + the same normalisation in Lua (bench/normalize.lua)
-- usage: lua bench/decode.lua impl=rctasks body=list n=10000 iters=20
-- Prints RESULT with seconds per decode (wall and CPU) after one warm-up decode.
local lib = require "lib"
local core = require "rctasks.core"
local taskmod = require "rctasks.task"
local norm = require "normalize"

local a = lib.args(arg)
local impl, kind = lib.need(a, "impl"), lib.need(a, "body")
local iters = a.iters or 10

local body
if kind == "task" then body = lib.task_body() else body = lib.list_body(lib.need(a, "n")) end

local mt = taskmod.mt
local decode
if impl == "rctasks" then
  decode = kind == "task" and core.decode_task or core.decode_tasks
elseif impl == "cjson" then
  local cd = norm.cjson_decode
  decode = function(s) return cd(s) end -- cjson.decode refuses a second argument
elseif impl == "cjson_lua" then
  decode = kind == "task" and norm.decode_task or norm.decode_tasks
else
  error("bench/decode: unknown impl " .. tostring(impl))
end

-- The three must read the same thing, or the race is not fair.
local first = assert(decode(body, mt))
local count = kind == "task" and 1 or #(first.tasks or first)
if impl ~= "cjson" then
  local t = kind == "task" and first or first[#first]
  assert(getmetatable(t) == mt and t.taskId, "decoded tasks carry the task metatable")
  assert(kind ~= "task" or t:link("self"), "links normalised")
end
first = nil -- luacheck: ignore 311 (dropped before timing)

-- A list is timed one decode at a time after a full collection; a single task in batches of
-- `batch` (one 578-byte decode is too short for the clock), garbage collection included.
local batch = kind == "task" and (a.batch or 1000) or 1
local now, cpu = lib.now, lib.cpu
local best, total, tcpu = math.huge, 0, 0
for _ = 1, iters do
  collectgarbage("collect")
  local c0, t0 = cpu(), now()
  for _ = 1, batch do
    if not decode(body, mt) then error("decode failed") end
  end
  local dt = (now() - t0) / batch
  tcpu = tcpu + (cpu() - c0) / batch
  total = total + dt
  if dt < best then best = dt end
end

lib.emit{ case = "decode", impl = impl, body = kind, tasks = count, bytes = #body, iters = iters,
  lua = lib.interpreter(), sec = total / iters, best = best, cpu = tcpu / iters }
