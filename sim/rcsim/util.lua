-- Small helpers shared by the simulator: JSON answers, ids, timestamps, reason phrases, error bodies.
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

-- ISO-8601 UTC to the second, as resource fields (not tasks) carry times.
function M.stamp(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t)) end

-- Reason phrases as Spring writes them in an error body's "error" (and the sim in status lines).
M.REASON = {
  [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created", [202] = "Accepted",
  [203] = "Non-Authoritative Information", [204] = "No Content", [205] = "Reset Content",
  [206] = "Partial Content", [207] = "Multi-Status", [300] = "Multiple Choices", [301] = "Moved Permanently",
  [302] = "Found", [303] = "See Other", [304] = "Not Modified", [307] = "Temporary Redirect",
  [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable",
  [407] = "Proxy Authentication Required", [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
  [411] = "Length Required", [412] = "Precondition Failed", [413] = "Payload Too Large",
  [414] = "URI Too Long", [415] = "Unsupported Media Type", [416] = "Requested range not satisfiable",
  [417] = "Expectation Failed", [418] = "I'm a teapot", [421] = "Misdirected Request",
  [422] = "Unprocessable Entity", [423] = "Locked", [424] = "Failed Dependency", [425] = "Too Early",
  [426] = "Upgrade Required", [428] = "Precondition Required", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [451] = "Unavailable For Legal Reasons",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version not supported",
  [506] = "Variant Also Negotiates", [507] = "Insufficient Storage", [508] = "Loop Detected",
  [510] = "Not Extended", [511] = "Network Authentication Required",
}

function M.reason(status) return M.REASON[status] or (status < 400 and "Unknown" or "Error") end

-- Statuses nginx 1.22 writes a reason phrase for; any other one goes out on the raw socket so
-- that its status line still carries one.
local NGINX = {}
for _, range in ipairs({ { 200, 206 }, { 301, 304 }, { 307, 308 }, { 400, 406 }, { 408, 416 }, { 421, 421 },
                         { 429, 429 }, { 494, 497 }, { 500, 505 }, { 507, 507 } }) do
  for s = range[1], range[2] do NGINX[s] = true end
end
function M.nginx_phrase(status) return NGINX[status] == true end

-- Spring Boot's error body: no `type` (API error codes only appear inside failed tasks), and no
-- `message` when `message` is nil (the real 404s carry none).
function M.spring(status, message, path)
  local t = ngx.now()
  return M.encode({
    timestamp = os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) ..
      string.format(".%03d+00:00", math.floor((t % 1) * 1000)),
    status = status, error = M.reason(status), message = message, path = path,
  })
end

-- Shallow copy of a list or map.
function M.copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

return M
