-- rctasks.check: the one checker of arguments and options. Public entry points call it first;
-- misuse raises there, at the caller's line, however deep inside rctasks the check runs.
local cjson = require("cjson").new() -- a private instance: the caller's cjson settings stay theirs
local defaults = require "rctasks.defaults"
local url = require "rctasks.url"

local M = {}

-- This file's directory: frames from files in it (or below it) are rctasks' own.
local OURS = debug.getinfo(1, "S").source:match("^@(.*/)[^/]*$")

local function ours(level)
  local info = debug.getinfo(level + 1, "S")
  if not info then return false end
  local src = info.source
  return OURS ~= nil and src:sub(1, 1) == "@" and src:sub(2, #OURS + 1) == OURS
end

-- Raise `msg` at the first stack frame outside rctasks: the user's call site.
function M.fail(msg)
  local level = 2
  while ours(level) do level = level + 1 end
  error(msg, level)
end

------------------------------------------------------------------------------------------------
-- Kinds of option values. Each returns true, or the words for what was expected.

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

local function list_of_strings(v)
  if type(v) ~= "table" or #v == 0 then return false end
  for _, s in ipairs(v) do if type(s) ~= "string" then return false end end
  return true
end

M.KINDS = {
  number = function(v) return (finite(v) and v >= 0) or "a non-negative number" end,
  positive = function(v) return (finite(v) and v > 0) or "a positive number" end,
  count = function(v) return (finite(v) and v >= 1 and v % 1 == 0) or "a positive whole number" end,
  factor = function(v) return (finite(v) and v >= 1) or "a number >= 1" end,
  string = function(v) return type(v) == "string" or "a string" end,
  boolean = function(v) return type(v) == "boolean" or "a boolean" end,
  ["function"] = function(v) return type(v) == "function" or "a function" end,
  table = function(v) return type(v) == "table" or "a table" end,
  statuses = function(v) return list_of_strings(v) or "a non-empty list of strings" end,
  -- poll until ready: true, false, or the ready statuses
  ready = function(v) return type(v) == "boolean" or list_of_strings(v) or "a boolean or a list of strings" end,
  -- a path, function(...) -> path, or false (none)
  path = function(v)
    return v == false or type(v) == "string" or type(v) == "function" or "a path, a function or false"
  end,
  -- an operation key of the journal: what a person can read back in `rctasks journal`
  key = function(v)
    return (type(v) == "string" and v ~= "" and #v <= 200 and not v:find("%c")) or
      "a non-empty string of at most 200 bytes without control characters"
  end,
  any = function() return true end,
}

-- options(opts, schema, what) -> opts (an empty table for nil). schema: name -> kind.
function M.options(opts, schema, what)
  if opts == nil then return {} end
  if type(opts) ~= "table" then M.fail(what .. ": options must be a table") end
  for k, v in pairs(opts) do
    local kind = schema[k]
    if kind == nil then M.fail(what .. ": unknown option '" .. tostring(k) .. "'") end
    local ok = M.KINDS[kind](v)
    if ok ~= true then M.fail(what .. ": option '" .. k .. "' must be " .. ok .. ", got " .. type(v)) end
  end
  return opts
end

-- merge(base, opts): a new table, opts over base.
function M.merge(base, opts)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

------------------------------------------------------------------------------------------------
-- Arguments

-- Task ids are UUIDs on the real API: anything else is refused before it can steer the URL.
-- Anchored: one match attempt over the id. The last good id is remembered: a wait polls one id.
local last_id = {}
function M.task_id(id)
  if id == last_id then return id end
  if type(id) ~= "string" then M.fail("rctasks: task id must be a string, got " .. type(id)) end
  if #id > defaults.max_id or not id:find("^[%w%-_]+$") then
    M.fail("rctasks: invalid task id (expected letters, digits, '-' or '_', at most " .. defaults.max_id .. ")")
  end
  last_id = id
  return id
end

-- Is `id` a task id? (Server text is checked with this, never raised about.)
function M.is_task_id(id)
  return type(id) == "string" and #id <= defaults.max_id and id:find("^[%w%-_]+$") ~= nil
end

function M.path(path)
  local why = url.path_problem(path)
  if why then M.fail("rctasks: unsafe path: " .. why) end
  return path
end

local METHODS = { GET = true, POST = true, PUT = true, PATCH = true, DELETE = true }
function M.method(method)
  if not METHODS[method] then M.fail("rctasks: method must be one of GET, POST, PUT, PATCH, DELETE") end
  return method
end

-- A request body: nil, a JSON string as it is, or a table encoded to JSON.
function M.body(body)
  if body == nil or type(body) == "string" then return body end
  if type(body) ~= "table" then M.fail("rctasks: body must be a table, a JSON string or nil") end
  local ok, s = pcall(cjson.encode, body)
  if not ok then M.fail("rctasks: body cannot be encoded as JSON: " .. tostring(s)) end
  return s
end

-- method, path and body of a request, checked; returns the body as a string (or nil).
function M.request(method, path, body)
  M.method(method)
  M.path(path)
  return M.body(body)
end

return M
