-- The peer of core.decode_tasks written in Lua over cjson: what a user of lua-cjson must add to get
-- the same task values (null members dropped, integers as integers on 5.3+, the type checks, links
-- array / HAL _links -> one map keyed by rel, response.error string -> {type = s}, the metatable).
local cjson = require("cjson").new() -- a private instance: settings stay local to the bench
local taskmod = require "rctasks.task"

local M = {}

local null = cjson.null
local tointeger = math.tointeger -- nil on 5.1/LuaJIT, where every number is a double anyway
local type, pairs, setmetatable = type, pairs, setmetatable

-- Drop null members of objects and give integral numbers back as integers (cjson 2.1.0 decodes
-- every number as a float on 5.3+). Arrays keep their nulls (cjson.null is core.null: both NULL).
local function clean(v)
  for k, x in pairs(v) do
    local tx = type(x)
    if tx == "table" then
      clean(x)
    elseif x == null then
      if type(k) == "string" then v[k] = nil end
    elseif tx == "number" and tointeger then
      local i = tointeger(x)
      if i then v[k] = i end
    end
  end
end

local function fail(i, id, msg)
  local where = i and ("task " .. i) or "task"
  if id then where = where .. " (" .. id .. ")" end
  return nil, where .. ": " .. msg
end

local function opt(t, k, want)
  local v = t[k]
  return v == nil or type(v) == want
end

local function links(t, i)
  local l, hal = t.links, t._links
  if l == nil and hal == nil then return true end
  local map = {}
  if l ~= nil then
    if type(l) ~= "table" then return fail(i, t.taskId, "field 'links' must be an array") end
    for n, e in ipairs(l) do
      if type(e) ~= "table" then return fail(i, t.taskId, "field 'links[" .. n .. "]' must be an object") end
      if e.rel ~= nil then
        if type(e.rel) ~= "string" then return fail(i, t.taskId, "links[" .. n .. "].rel must be a string") end
        if not opt(e, "href", "string") then return fail(i, t.taskId, "links[" .. n .. "].href must be a string") end
        map[e.rel] = e
      end
    end
  end
  if hal ~= nil then
    if type(hal) ~= "table" then return fail(i, t.taskId, "field '_links' must be an object") end
    for rel, e in pairs(hal) do
      if type(e) ~= "table" then return fail(i, t.taskId, "field '_links." .. rel .. "' must be an object") end
      if not opt(e, "href", "string") then return fail(i, t.taskId, "_links." .. rel .. ".href must be a string") end
      if map[rel] == nil then
        if e.rel == nil then e.rel = rel end
        map[rel] = e
      end
    end
    t._links = nil
  end
  t.links = map
  return true
end

local function task(t, i, mt)
  if type(t) ~= "table" then return fail(i, nil, "expected an object") end
  if type(t.taskId) ~= "string" then return fail(i, nil, "missing or bad field 'taskId'") end
  if type(t.status) ~= "string" then return fail(i, t.taskId, "missing or bad field 'status'") end
  if not (opt(t, "commandType", "string") and opt(t, "description", "string") and opt(t, "timestamp", "string")) then
    return fail(i, t.taskId, "commandType, description and timestamp must be strings")
  end
  local r = t.response
  if r ~= nil then
    if type(r) ~= "table" then return fail(i, t.taskId, "field 'response' must be an object") end
    if not (opt(r, "resourceId", "number") and opt(r, "additionalResourceId", "number")
            and opt(r, "additionalInfo", "string") and opt(r, "resource", "table")) then
      return fail(i, t.taskId, "bad field in 'response'")
    end
    local e = r.error
    if type(e) == "string" then
      r.error = { type = e }
    elseif e ~= nil and (type(e) ~= "table" or not opt(e, "type", "string")) then
      return fail(i, t.taskId, "field 'response.error' must be an object or a string")
    end
  end
  local ok, err = links(t, i)
  if not ok then return nil, err end
  return setmetatable(t, mt)
end

-- decode_task(json, mt) -> task | nil, msg
function M.decode_task(s, mt)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, v end
  if type(v) == "table" then clean(v) end
  return task(v, nil, mt or taskmod.mt)
end

-- decode_tasks(json, mt) -> array of tasks | nil, msg ({"tasks": [...]} or a bare array)
function M.decode_tasks(s, mt)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, v end
  if type(v) ~= "table" then return nil, "expected an object or an array" end
  clean(v)
  local list = v[1] ~= nil and v or v.tasks or {}
  if type(list) ~= "table" then return nil, "field 'tasks' must be an array" end
  mt = mt or taskmod.mt
  for i = 1, #list do
    local t, err = task(list[i], i, mt)
    if not t then return nil, err end
  end
  return list
end

M.cjson_decode = cjson.decode

return M
