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

return M
