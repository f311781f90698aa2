-- Small helpers shared by the simulator: JSON answers, ids, timestamps, error bodies.
-- luacheck: globals ngx
local cjson = require "cjson"

local M = {}

cjson.encode_number_precision(14) -- the maximum of Debian's cjson: ids (<= 14 digits) keep every digit
cjson.encode_sparse_array(true)

-- Debian's cjson 2.1.0 has no empty_array: encode this marker and patch it to [] afterwards.
local EMPTY = "\1rcsim-empty-array\1"
local EMPTY_JSON = cjson.encode(EMPTY)

function M.array(t)
  if t[1] == nil then return EMPTY end
  return t
end

function M.encode(v)
  local s = cjson.encode(v)
  -- cjson escapes every '/' as "\/"; the real API does not, and raw '/' never occurs in its output
  s = s:gsub("\\/", "/")
  if s:find(EMPTY_JSON, 1, true) then
    s = s:gsub(EMPTY_JSON:gsub("%p", "%%%0"), "[]")
  end
  return s
end

function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if ok then return v end
  return nil, tostring(v)
end

function M.uuid()
  local r = math.random
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
    r(0, 0x7fffffff), r(0, 0xffff), r(0, 0xfff), 0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0x7fffffff))
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
function M.is_uuid(s) return s:find(UUID) ~= nil end

-- ISO-8601 UTC with 9 fractional digits, like the real task service; below the clock's
-- millisecond the digits are random, as real nanosecond stamps look.
function M.iso(t)
  local sec = math.floor(t)
  local ns = math.floor((t - sec) * 1000) * 1000000 + math.random(0, 999999)
  return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%09dZ", ns)
end

-- Spring Boot's default error body, which the real API answers with on most HTTP errors.
function M.spring(status, err, message, path, extra)
  local t = ngx.now()
  local body = {
    timestamp = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) ..
      string.format(".%03d+00:00", math.floor((t % 1) * 1000)),
    status = status, error = err, message = message, path = path,
  }
  for k, v in pairs(extra or {}) do body[k] = v end
  return M.encode(body)
end

return M
