-- Tear down what examples/provision.lua made, in the order the API requires: the user, the role,
-- the rule, the databases, the subscription. Each DELETE is waited out until the resource is gone
-- (a finished delete task only means de-provisioning has begun). Resources are found by name, so
-- a second run after a partial teardown deletes only what is left.
local rctasks = require "rctasks"

local client = rctasks.default()
local t0 = os.time()

local function find(path, field, name)
  local list = assert(client:request("GET", path))
  for _, item in ipairs(list[field] or {}) do
    if item.name == name then return item.id end
  end
  return nil
end

local steps = {}
local function delete(name, path)
  steps[#steps + 1] = { name = name, method = "DELETE", path = path }
end

local user = find("/acl/users", "users", "demo-app")
if user then delete("user", "/acl/users/" .. user) end
local role = find("/acl/roles", "roles", "demo-readers")
if role then delete("role", "/acl/roles/" .. role) end
local rule = find("/acl/redisRules", "redisRules", "demo-read-only")
if rule then delete("rule", "/acl/redisRules/" .. rule) end
local sub = find("/subscriptions", "subscriptions", "demo")
if sub then
  local dbs = assert(client:request("GET", "/subscriptions/" .. sub .. "/databases"))
  for _, db in ipairs(dbs.subscription and dbs.subscription[1] and dbs.subscription[1].databases or {}) do
    delete("database " .. db.databaseId, "/subscriptions/" .. sub .. "/databases/" .. db.databaseId)
  end
  delete("subscription", "/subscriptions/" .. sub)
end

if #steps == 0 then
  print("nothing to tear down")
  os.exit(0)
end
print("tearing down " .. #steps .. " resources:")
local ok, err = client:pipeline(steps, { timeout = 1800, interval = 0.2, on_progress = function(step, task)
  print(string.format("  %-18s %-24s %s", step, task.status, task.taskId))
end })
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
for _, s in ipairs(steps) do print(string.format("  %-18s gone", s.name)) end
print(string.format("%d requests in %ds", client:stats().requests, os.time() - t0))
