-- Provision a small but complete stack, each step waited out before the next: a subscription,
-- two databases in it, an ACL Redis rule, a role granting it on both databases, and a user with
-- that role. Credentials from REDISCLOUD_ACCESS_KEY / REDISCLOUD_SECRET_KEY (and REDISCLOUD_URL).
-- With RCTASKS_JOURNAL naming a journal file, the pipeline is keyed "demo": rerun after a crash (or
-- twice), it sends only what was not done yet. `make demo` runs it twice against the local
-- simulator, then examples/teardown.lua.
local rctasks = require "rctasks"

local client = rctasks.default()
local t0 = os.time()
local function progress(step, task)
  print(string.format("  %-12s %-24s %s", step, task.status, task.taskId))
end

local function databases_of(done)
  local list = {}
  for _, name in ipairs({ "cache", "sessions" }) do
    list[#list + 1] = { subscriptionId = done.subscription.id, databaseId = done[name].id }
  end
  return list
end

local function database(name, gb)
  return { name = name, path = function(done) return "/subscriptions/" .. done.subscription.id .. "/databases" end,
           body = { name = name, protocol = "redis", memoryLimitInGb = gb, replication = true } }
end

print("provisioning a subscription, two databases, an ACL rule, a role and a user:")
local r, err = client:pipeline({
  { name = "subscription", path = "/subscriptions",
    body = { name = "demo", paymentMethod = "credit-card", memoryStorage = "ram",
             cloudProviders = { { provider = "AWS", regions = { { region = "us-east-1" } } } },
             databases = { { name = "sizing", protocol = "redis", memoryLimitInGb = 1 } } } },
  database("cache", 1),
  database("sessions", 2),
  { name = "rule", path = "/acl/redisRules", body = { name = "demo-read-only", redisRule = "+@read ~*" } },
  { name = "role", path = "/acl/roles", body = function(done)
      return { name = "demo-readers", redisRules = { { ruleName = "demo-read-only", databases = databases_of(done) } } }
    end },
  { name = "user", path = "/acl/users",
    body = { name = "demo-app", role = "demo-readers", password = "Demo-App-2026!" } },
}, { timeout = 1800, interval = 0.2, on_progress = progress, -- first poll soon, then doubling
     key = os.getenv("RCTASKS_JOURNAL") and "demo" or nil })
if not r then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

print(string.format("subscription %d is %s", r.subscription.id, r.subscription.resource.status))
for _, name in ipairs({ "cache", "sessions" }) do
  local db = r[name].resource
  print(string.format("database %d (%s) is %s at %s", r[name].id, name, db.status, tostring(db.publicEndpoint)))
end
print(string.format("ACL rule %d, role %d and user %d are active", r.rule.id, r.role.id, r.user.id))
print(string.format("%d requests in %ds", client:stats().requests, os.time() - t0))
