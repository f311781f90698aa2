-- rctasks.env: what the process around rctasks offers. The one reader of the environment and
-- the one test for "are we inside nginx".
local M = {}

-- A variable's value, or nil when it is unset or empty.
function M.getenv(name)
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- The `ngx` table when this Lua state runs inside nginx with the Lua module (cosockets, shared
-- dicts, timers), else nil. `resty` command-line scripts count as inside nginx too.
function M.ngx()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.get_phase) == "function" then return ngx end
  return nil
end

-- One line for a person to read: nginx's error log inside nginx, stderr elsewhere.
function M.log(msg)
  local ngx = M.ngx()
  if ngx then ngx.log(ngx.WARN, "rctasks: ", msg) else io.stderr:write("rctasks: ", msg, "\n") end
end

-- A name no other process or host will pick: 16 hex digits from /dev/urandom (leases' owners).
function M.unique()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(8)
  if f then f:close() end
  b = b or (tostring({}) .. os.clock() .. os.time()):sub(-8)
  return (b:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- notifier(sink) -> function(kind, message): passes a change of state of `kind` to
-- sink(kind, message) once: the message when something starts failing, then (message nil) a
-- "works again" when it recovers. Repeats of the same state say nothing.
function M.notifier(sink)
  local failing = {}
  return function(kind, message)
    if message and not failing[kind] then
      failing[kind] = true
      sink(kind, message)
    elseif not message and failing[kind] then
      failing[kind] = nil
      sink(kind, nil)
    end
  end
end

return M
