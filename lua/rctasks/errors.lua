-- rctasks.errors: the one place error values are made. Every failure the library returns as
-- `nil, err` is one of these: a table with `kind`, `message` and the fields of DESIGN.md, whose
-- tostring is one readable line naming the task when there is one. Keys never enter them: no
-- constructor here is ever given request headers.
local M = {}

local BODY_MAX = 4096 -- raw bodies are kept for diagnosis, cut to a few KiB

local mt = { __name = "rctasks.error" }
M.mt = mt

mt.__tostring = function(e)
  local s = "rctasks " .. tostring(e.kind) .. " error"
  if e.task_id then s = s .. " (task " .. e.task_id .. ")" end
  s = s .. ": " .. tostring(e.message)
  if e.method and e.url then s = s .. " [" .. e.method .. " " .. e.url .. "]" end
  return s
end

-- errors.new(kind, fields): kind is one of transport, http, decode, timeout, task.
function M.new(kind, fields)
  local e = fields or {}
  e.kind = kind
  e.message = e.message or kind
  if e.retryable == nil then e.retryable = false end
  if type(e.body) == "string" and #e.body > BODY_MAX then e.body = e.body:sub(1, BODY_MAX) end
  local t = e.task
  if not e.task_id and type(t) == "table" then e.task_id = t.taskId end
  return setmetatable(e, mt)
end

function M.is(v) return getmetatable(v) == mt end

-- Retry-After is either delta-seconds or an HTTP date; returns seconds from now, or nil.
local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                 Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
function M.retry_after(value, wall_now)
  if type(value) ~= "string" then return nil end
  local n = tonumber(value:match("^%s*(%d+)%s*$"))
  if n then return n end
  local d, mon, y, h, mi, s = value:match("^%a+, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d or not MONTHS[mon] then return nil end
  local ts = require("rctasks.task").parse_time(
    string.format("%s-%02d-%sT%s:%s:%sZ", y, MONTHS[mon], d, h, mi, s))
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

-- Statuses worth another try: rate limited, or a gateway that did not reach the API.
M.RETRYABLE_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }

local REASONS = { [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [307] = "Temporary Redirect", [308] = "Permanent Redirect", [400] = "Bad Request", [401] = "Unauthorized",
  [403] = "Forbidden",
  [404] = "Not Found", [409] = "Conflict", [412] = "Precondition Failed",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout" }

-- The most useful line a body offers: Spring JSON's message, an API error's description,
-- an HTML page's title. The raw body stays in err.body.
local function body_message(body, decode)
  if type(body) ~= "string" or body == "" then return nil end
  if body:find("^%s*{") and decode then
    local v = decode(body)
    if type(v) == "table" then
      local e = v.error
      if type(e) == "table" then
        return e.description or e.type, e.type
      end
      -- Spring's "error" is a reason phrase ("Not Found"); only an UPPER_SNAKE word is an API type.
      local code = type(v.type) == "string" and v.type or type(e) == "string" and e:match("^[A-Z][A-Z0-9_]+$")
      local msg = v.message or v.description or (type(e) == "string" and e)
      if type(msg) == "string" then return msg, code or nil end
    end
    return nil
  end
  return M.html_title(body)
end

-- The <title> of an HTML page, looked for in its first TITLE_SCAN bytes with plain finds only:
-- linear in that prefix whatever the page holds (a pattern with two lazy captures is cubic).
local TITLE_SCAN = 4096
function M.html_title(body)
  local head = body:sub(1, TITLE_SCAN):lower()
  local open = head:find("<title>", 1, true)
  if not open then return nil end
  local close = head:find("</title>", open + 7, true)
  if not close then return nil end
  local i, j = open + 7, close - 1
  local s = body:sub(i, j)
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
  local location = res.headers and res.headers["location"]
  if status >= 300 and status < 400 and type(location) == "string" then
    msg = "redirect to " .. location:sub(1, 200) .. " not followed" -- the keys would go with it
  end
  if msg == status .. " " .. tostring(REASONS[status]) then msg = nil end -- an HTML title saying the same
  local text = "HTTP " .. status .. (REASONS[status] and " " .. REASONS[status] or "")
  if msg and msg ~= "" and msg ~= REASONS[status] then text = text .. ": " .. msg end
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

return M
