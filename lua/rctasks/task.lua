-- rctasks.task: the metatable every decoded task carries (the C core sets it while decoding).
-- Tasks keep the API's own field names, so the API's documentation reads straight onto them.
local M = {}

M.COMPLETED = "processing-completed"
M.ERROR = "processing-error"
-- The spec's enum: three in-progress states and two terminal ones. Anything else is unknown.
local IN_PROGRESS = { initialized = true, received = true, ["processing-in-progress"] = true }

-- The library's own code calls these functions, never the methods: a task is what the server
-- sent, and a field named like a method (`ok`, `link`, ...) shadows that method.
local function status(t) return rawget(t, "status") end

-- Terminal? Unknown statuses are not done: wait() decides what they mean.
function M.done(t) local s = status(t) return s == M.COMPLETED or s == M.ERROR end
function M.ok(t) return status(t) == M.COMPLETED end
function M.failed(t) return status(t) == M.ERROR end

-- The response's resourceId when it is a number, else nil.
function M.resource_id(t)
  local r = rawget(t, "response")
  local id = type(r) == "table" and r.resourceId
  return type(id) == "number" and id or nil
end

-- The href of the link `rel`, when it is a string.
function M.link(t, rel)
  local links = rawget(t, "links")
  local l = type(links) == "table" and links[rel]
  local href = type(l) == "table" and l.href
  return type(href) == "string" and href or nil
end

local methods = {
  done = M.done, ok = M.ok, failed = M.failed, resource_id = M.resource_id, link = M.link,
}

local floor = math.floor

-- Days since 1970-01-01 of a proleptic Gregorian date (no os.time: it works in local time).
-- math.floor, not //, so that 5.1 and LuaJIT parse this file.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- ISO-8601 timestamp (1 to 9 fractional digits, Z or an offset) -> epoch seconds, or nil.
function M.parse_time(ts)
  if type(ts) ~= "string" then return nil end
  local y, mo, d, h, mi, s, frac, zone =
    ts:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not y then return nil end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  if frac == "." then return nil end
  local secs = days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s) - offset
  return secs + (frac ~= "" and tonumber("0" .. frac) or 0)
end

function M.time(t) return M.parse_time(rawget(t, "timestamp")) end
methods.time = M.time

-- Is the status `s` one of the spec's five values?
function M.known(s)
  return IN_PROGRESS[s] == true or s == M.COMPLETED or s == M.ERROR
end

-- The API error of a failed task as one line, from string fields only:
-- "<status> - <TYPE>: <description> (<additionalInfo>)", the parts the task has.
function M.error_text(t)
  local r = rawget(t, "response")
  if type(r) ~= "table" then return nil end
  local function str(v) return type(v) == "string" and v ~= "" and v or nil end
  local e = type(r.error) == "table" and r.error or {}
  local typ, desc, code, info = str(e.type), str(e.description), str(e.status), str(r.additionalInfo)
  local s = typ and desc and (typ .. ": " .. desc) or typ or desc
  if code then s = s and (code .. " - " .. s) or code end
  if info then s = s and (s .. " (" .. info .. ")") or info end
  return s
end

M.mt = {
  __index = methods,
  __name = "rctasks.task",
  __tostring = function(t)
    return string.format("task %s %s %s", tostring(rawget(t, "taskId")),
      tostring(rawget(t, "commandType") or "?"), tostring(rawget(t, "status")))
  end,
}

return M
