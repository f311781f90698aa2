-- rctasks.task: the metatable every decoded task carries (the C core sets it while decoding).
-- Tasks keep the API's own field names, so the API's documentation reads straight onto them.
local M = {}

M.COMPLETED = "processing-completed"
M.ERROR = "processing-error"
-- The spec's enum: three in-progress states and two terminal ones. Anything else is unknown.
local IN_PROGRESS = { initialized = true, received = true, ["processing-in-progress"] = true }

local methods = {}

-- Terminal? Unknown statuses are not done: wait() decides what they mean.
function methods:done()
  return self.status == M.COMPLETED or self.status == M.ERROR
end

function methods:ok() return self.status == M.COMPLETED end

function methods:failed() return self.status == M.ERROR end

function methods:resource_id()
  return self.response and self.response.resourceId
end

function methods:link(rel)
  local l = self.links and self.links[rel]
  return l and l.href
end

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

function methods:time() return M.parse_time(self.timestamp) end

-- Is `status` one of the spec's five values?
function M.known(status)
  return IN_PROGRESS[status] == true or status == M.COMPLETED or status == M.ERROR
end

-- The API error of a failed task as one line: "TYPE: description".
function M.error_text(t)
  local e = t.response and t.response.error
  if type(e) ~= "table" then return nil end
  if e.type and e.description then return e.type .. ": " .. e.description end
  return e.type or e.description
end

M.mt = {
  __index = methods,
  __name = "rctasks.task",
  __tostring = function(t)
    return string.format("task %s %s %s", tostring(t.taskId), tostring(t.commandType or "?"),
      tostring(t.status))
  end,
}

return M
