-- Shared by the bench cases and runners: clocks, argument parsing, the result line the runner reads,
-- shell commands and ports, and the realistic task bodies every decoder is fed. Cases are separate
-- processes started by bench/run.lua and bench/fleet.lua.
local M = {}

local ok_core, core = pcall(require, "rctasks.core")
local ok_socket, socket = pcall(require, "socket")

-- Monotonic seconds when the core is built, else LuaSocket's wall clock (the smoke run has both).
M.now = ok_core and core.now or (ok_socket and socket.gettime) or os.clock
M.cpu = os.clock -- process CPU seconds: steadier than wall time on a shared machine
M.wall = ok_socket and socket.gettime or os.time -- epoch seconds, comparable with the sim's timestamps

-- key=value arguments: `lua bench/x.lua impl=rctasks n=100` -> { impl = "rctasks", n = 100 }.
-- sh(cmd) -> ok, what it printed (stdout and stderr); must(cmd) -> what it printed, or raises.
function M.sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok = p:close()
  return ok, out
end

function M.must(cmd)
  local ok, out = M.sh(cmd)
  if not ok then error("bench: `" .. cmd .. "` failed:\n" .. out, 2) end
  return out
end

-- Wait (up to 5 s) until something listens on the loopback port.
function M.wait_port(port)
  for _ = 1, 200 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close(); return true end
    socket.sleep(0.025)
  end
  error("bench: nothing listens on port " .. port)
end

function M.args(argv)
  local a = {}
  for _, s in ipairs(argv) do
    local k, v = s:match("^([%w_]+)=(.*)$")
    if not k then error("bench: argument '" .. s .. "' is not key=value", 2) end
    a[k] = tonumber(v) or v
  end
  return a
end

function M.need(a, k)
  if a[k] == nil then error("bench: missing argument " .. k, 2) end
  return a[k]
end

-- The one line the runner parses: RESULT k=v k=v ... (numbers printed with full precision).
function M.emit(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { "RESULT" }
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "number" then v = string.format("%.9g", v) end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  io.stdout:write(table.concat(parts, " "), "\n")
  io.stdout:flush()
end

-- Resident set size in bytes (Linux /proc/self/statm: pages; 4 KiB on x86-64).
function M.rss()
  local f = assert(io.open("/proc/self/statm", "r"))
  local line = f:read("*l")
  f:close()
  local pages = tonumber(line:match("^%d+%s+(%d+)"))
  return pages * 4096
end

function M.interpreter()
  return rawget(_G, "jit") and "luajit" or _VERSION:gsub("Lua ", "lua")
end

------------------------------------------------------------------------------------------------
-- Realistic task bodies, built as text (not through an encoder, so every decoder reads the same
-- bytes on every Lua). A tiny LCG keeps them identical across runs and interpreters.

local function lcg(seed)
  local s = seed
  return function(n) -- Park-Miller: products stay below 2^53, exact on doubles (LuaJIT) too
    s = (s * 16807) % 2147483647
    return s % n
  end
end

local COMMANDS = { "subscriptionCreateRequest", "databaseCreateRequest", "fixedDatabaseCreateRequest",
  "databaseUpdateRequest", "dbDeleteRequest", "subscriptionDeleteRequest", "aclUserCreateRequest" }
local ERRORS = { "SUBSCRIPTION_NOT_FOUND", "DATABASE_NOT_FOUND", "GENERAL_ERROR", "PROVISION_FAILURE",
  "PLANNER_TIMEOUT", "TOO_MANY_PENDING_SUBSCRIPTIONS" }
local BASE = "https://api.redislabs.com/v1"

local function uuid(r)
  return string.format("%08x-%04x-4%03x-%04x-%04x%08x", r(0x7fffffff), r(0xffff), r(0xfff),
    0x8000 + r(0x3fff), r(0xffff), r(0x7fffffff))
end

local function stamp(r, i)
  return string.format("2024-05-%02dT%02d:%02d:%02d.%09dZ", 1 + i % 28, r(24), r(60), r(60), r(1000000000))
end

-- One task as JSON; the mix follows a real account's list: mostly completed creates with a
-- resource link, some failures with the API's error object, some in flight, a few old `_links`.
local function task_json(r, i)
  local id = uuid(r)
  local cmd = COMMANDS[1 + r(#COMMANDS)]
  local kind = r(100)
  local self_link = '{"rel":"self","type":"GET","href":"' .. BASE .. '/tasks/' .. id .. '"}'
  local status, desc, response, links
  if kind < 70 then
    local sub, db = 100000 + r(900000), 51000000 + r(9000000)
    status = "processing-completed"
    desc = "Request processing completed successfully and its resources are now being provisioned / de-provisioned."
    response = string.format('{"resourceId":%d,"additionalResourceId":%d}', db, sub)
    links = '[{"rel":"resource","type":"GET","href":"' .. BASE .. '/subscriptions/' .. sub ..
      '/databases/' .. db .. '"},' .. self_link .. ']'
  elseif kind < 85 then
    local e = ERRORS[1 + r(#ERRORS)]
    status = "processing-error"
    desc = "Task request failed during processing. See error information for failure details."
    response = '{"error":{"type":"' .. e .. '","status":"400 BAD_REQUEST","description":"The request failed: ' ..
      e:lower():gsub("_", " ") .. '"}}'
    links = "[" .. self_link .. "]"
  elseif kind < 95 then
    status = "processing-in-progress"
    desc = "Request processing is in progress."
    response = "{}"
    links = "[" .. self_link .. "]"
  else
    status = "received"
    desc = "Task request received and is being queued for processing."
    response = nil
    links = nil
  end
  local parts = { '{"taskId":"', id, '","commandType":"', cmd, '","status":"', status,
    '","description":"', desc, '","timestamp":"', stamp(r, i), '"' }
  if response then parts[#parts + 1] = ',"response":' .. response end
  if links and r(50) == 0 then -- the older HAL-style object
    parts[#parts + 1] = ',"_links":{"task":{"href":"' .. BASE .. '/tasks/' .. id ..
      '","title":"getTaskStatusUpdates","type":"GET"}}'
  elseif links then
    parts[#parts + 1] = ',"links":' .. links
  end
  parts[#parts + 1] = "}"
  return table.concat(parts)
end

-- A completed task with a resource link: what one `GET /v1/tasks/{id}` answers at the end of a wait.
function M.task_body()
  local r = lcg(7)
  local id = uuid(r)
  return '{"taskId":"' .. id .. '","commandType":"databaseCreateRequest","status":"processing-completed",' ..
    '"description":"Request processing completed successfully and its resources are now being ' ..
    'provisioned / de-provisioned.",' ..
    '"timestamp":"2024-05-10T14:14:34.153537279Z","response":{"resourceId":51055029,"additionalResourceId":111728},' ..
    '"links":[{"rel":"resource","type":"GET","href":"' .. BASE .. '/subscriptions/111728/databases/51055029"},' ..
    '{"rel":"self","type":"GET","href":"' .. BASE .. '/tasks/' .. id .. '"}]}', id
end

-- `GET /v1/tasks` with n tasks: {"tasks":[...]}.
function M.list_body(n)
  local r = lcg(42)
  local t = {}
  for i = 1, n do t[i] = task_json(r, i) end
  return '{"tasks":[' .. table.concat(t, ",") .. "]}"
end

return M
