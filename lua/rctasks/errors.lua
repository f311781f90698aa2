-- rctasks.errors: the one place error values are made. Every failure the library returns as
-- `nil, err` is one of these: a table with `kind`, `message` and the fields the README lists,
-- whose tostring is one readable line naming the task when there is one. `seal` is the last
-- step before an error leaves the library: every string in it loses the API keys, then the
-- long ones are cut.
local defaults = require "rctasks.defaults"
local task = require "rctasks.task"

local M = {}

local LIMIT = { message = defaults.errors.max_message, body = defaults.errors.max_body,
                task_id = defaults.max_id, code = 128, curl_code = 64 }

local mt = { __name = "rctasks.error" }
M.mt = mt

-- Server text may hold newlines and terminal escapes: one line, control characters as spaces.
local function one_line(s) return (s:gsub("%c", " ")) end

mt.__tostring = function(e)
  local s = "rctasks " .. tostring(e.kind) .. " error"
  if type(e.task_id) == "string" then s = s .. " (task " .. e.task_id .. ")" end
  s = s .. ": " .. tostring(e.message)
  if type(e.method) == "string" and type(e.url) == "string" then s = s .. " [" .. e.method .. " " .. e.url .. "]" end
  return one_line(s)
end

-- "while waiting: " .. err works as it does for strings.
mt.__concat = function(a, b) return tostring(a) .. tostring(b) end

-- errors.new(kind, fields): kind is one of transport, http, decode, timeout, task.
function M.new(kind, fields)
  local e = fields or {}
  e.kind = kind
  if e.message == nil then e.message = kind end
  if e.retryable == nil then e.retryable = false end
  local t = e.task
  if e.task_id == nil and type(t) == "table" and type(t.taskId) == "string" then e.task_id = t.taskId end
  return setmetatable(e, mt)
end

function M.is(v) return getmetatable(v) == mt end

-- Every string reachable from `e` (values and table keys, nested tables included) through
-- `redact`, then the fields in LIMIT cut to size. Idempotent. Returns e.
function M.seal(e, redact)
  local seen = {}
  local function walk(t)
    if seen[t] then return end
    seen[t] = true
    local renamed
    for k, v in pairs(t) do
      if type(v) == "string" then
        local r = redact(v)
        if r ~= v then t[k] = r end
      elseif type(v) == "table" then
        walk(v)
      end
      if type(k) == "string" and redact(k) ~= k then
        renamed = renamed or {}
        renamed[k] = v
      end
    end
    for k, v in pairs(renamed or {}) do t[k] = nil; t[redact(k)] = v end
  end
  walk(e)
  for field, max in pairs(LIMIT) do
    local v = e[field]
    if type(v) == "string" and #v > max then e[field] = v:sub(1, max) end
  end
  if type(e.message) == "string" then e.message = one_line(e.message) end
  return e
end

-- Retry-After is delta-seconds or an HTTP date; returns seconds from now (>= 0), or nil.
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                 Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
function M.retry_after(value, wall_now)
  if type(value) ~= "string" or #value > 64 then return nil end
  local n = tonumber(value:match("^%s*(%d+)%s*$"))
  if n then return n end
  local d, mon, y, h, mi, s = value:match("^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not MONTHS[mon] then return nil end
  local ts = task.parse_time(string.format("%s-%02d-%sT%s:%s:%sZ", y, MONTHS[mon], d, h, mi, s))
  if not ts then return nil end
  local delta = ts - (wall_now or os.time())
  return delta > 0 and delta or 0
end

-- A transport's failure, whatever it returned (an error value, or a user transport's string).
function M.transport(req, err)
  if not M.is(err) then
    err = M.new("transport", { message = tostring(err or "transport failed"), retryable = true })
  end
  err.method, err.url = req.method, req.url
  return err
end

-- Statuses worth another try: rate limited or busy, the request never arrived whole (408), or a
-- gateway that did not reach the API.
M.RETRYABLE_STATUS = { [408] = true, [429] = true, [502] = true, [503] = true, [504] = true }

M.REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [406] = "Not Acceptable", [408] = "Request Timeout",
  [409] = "Conflict", [410] = "Gone", [411] = "Length Required", [412] = "Precondition Failed",
  [413] = "Content Too Large", [414] = "URI Too Long", [415] = "Unsupported Media Type",
  [422] = "Unprocessable Content", [423] = "Locked", [425] = "Too Early", [428] = "Precondition Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}
local REASONS = M.REASONS

local function str(v) return type(v) == "string" and v ~= "" and v or nil end

local TITLE_SCAN = 4096     -- how much of a body is looked at for an HTML title or a leading '{'
local JSON_SCAN = 64 * 1024 -- a larger error body is kept raw, not decoded for its message

-- Server text for a message: whole when it fits, else only its size. A cut piece could end
-- inside a key the server echoed, which no redaction could then recognise.
local QUOTE_MAX = 512
local function quoted(s)
  if #s <= QUOTE_MAX then return s end
  return "(" .. #s .. " bytes of text)"
end
M.quoted = quoted

-- The most useful line a body offers: Spring JSON's message, an API error's description, an
-- HTML page's title; and the API's error type when the body names one. Only strings are used,
-- whatever the server put in those fields. The raw body stays in err.body.
local function body_message(body, decode)
  if type(body) ~= "string" or body == "" then return nil end
  if body:sub(1, TITLE_SCAN):find("^%s*{") and decode then -- a prefix: megabytes of blanks are not JSON
    if #body > JSON_SCAN then return nil end -- decoding a huge error body costs many times its size
    local v = decode(body)
    if type(v) ~= "table" then return nil end
    local e = v.error
    if type(e) == "table" then return str(e.description) or str(e.type), str(e.type) end
    -- Spring's "error" is a reason phrase ("Not Found"); only an UPPER_SNAKE word is an API type.
    local code = str(v.type) or (str(e) and e:match("^[A-Z][A-Z0-9_]+$"))
    return str(v.message) or str(v.description) or str(e), code
  end
  return M.html_title(body)
end

-- The <title> of an HTML page, looked for in its first TITLE_SCAN bytes with plain finds only:
-- linear in that prefix whatever the page holds (a pattern with two lazy captures is cubic).
function M.html_title(body)
  local head = body:sub(1, TITLE_SCAN):lower()
  local open = head:find("<title>", 1, true)
  if not open then return nil end
  local close = head:find("</title>", open + 7, true)
  if not close then return nil end
  local s = body:sub(open + 7, close - 1)
  local first = s:find("%S")
  if not first then return nil end
  local last = #s
  while last > first and s:find("^%s", last) do last = last - 1 end
  return s:sub(first, last)
end

-- An HTTP answer outside 2xx. `decode` is the core's JSON decoder (passed in: no C here).
function M.http(req, res, decode)
  local status = res.status
  local msg, code = body_message(res.body, decode)
  if msg then msg = quoted(msg) end
  if code and #code > 128 then code = nil end -- not an error type the API has
  local location = res.headers and res.headers["location"]
  if status >= 300 and status < 400 and type(location) == "string" then
    msg = "redirect to " .. quoted(location) .. " not followed" -- the keys would go with it
  end
  local reason = REASONS[status]
  if msg == status .. " " .. tostring(reason) then msg = nil end -- an HTML title saying the same
  local text = "HTTP " .. status .. (reason and " " .. reason or "")
  if msg and msg ~= reason then text = text .. ": " .. msg end
  return M.new("http", {
    message = text,
    status = status,
    code = code,
    retryable = M.RETRYABLE_STATUS[status] == true,
    retry_after = M.retry_after(res.headers and res.headers["retry-after"]),
    body = res.body,
    method = req.method,
    url = req.url,
  })
end

-- A 2xx answer whose body is not what the call expects.
function M.decode(message, res, req)
  return M.new("decode", { message = message, body = res.body, status = res.status,
                           method = req.method, url = req.url })
end

-- A task that ended badly: processing-error, or a status outside the API's five.
function M.task(t)
  local msg
  if task.failed(t) then
    msg = "task failed: " .. quoted(task.error_text(t) or str(t.description) or "processing-error")
  else
    msg = "task ended in unknown status '" .. quoted(tostring(t.status)) .. "'"
  end
  local r = rawget(t, "response")
  local e = type(r) == "table" and r.error
  return M.new("task", { message = msg, task = t, code = type(e) == "table" and str(e.type) or nil })
end

-- A resource that turned a failure status while being waited for.
function M.resource(path, resource, status)
  return M.new("task", { resource = resource, code = status,
                         message = string.format("resource %s turned '%s'", path, tostring(status)) })
end

-- The deadline came first. fields: task, task_id, cause (the last failure), resource, url.
function M.timeout(message, fields)
  local e = fields or {}
  e.message, e.retryable = message, true
  return M.new("timeout", e)
end

return M
