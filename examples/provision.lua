-- Provision a subscription and a database in it through a pipeline, showing progress.
-- Credentials from REDISCLOUD_ACCESS_KEY / REDISCLOUD_SECRET_KEY (and REDISCLOUD_URL): `make demo`
-- runs this against the local simulator. Each step is submitted, waited, and its resource polled
-- until active before the next step starts; the database step reads the new subscription's id.
local rctasks = require "rctasks"

local t0 = os.time()
local function progress(step, task)
  print(string.format("  %-12s %-24s %s", step, task.status, task.taskId))
end

print("provisioning a subscription and a database:")
local r, err = rctasks.pipeline({
  { name = "subscription", path = "/subscriptions",
    body = { name = "demo", paymentMethod = "credit-card", memoryStorage = "ram",
             cloudProviders = { { provider = "AWS", regions = { { region = "us-east-1" } } } },
             databases = { { name = "sizing", protocol = "redis", memoryLimitInGb = 1 } } } },
  { name = "database", path = function(done) return "/subscriptions/" .. done.subscription.id .. "/databases" end,
    body = { name = "cache", protocol = "redis", memoryLimitInGb = 1, replication = true } },
}, { timeout = 1800, interval = 0.2, on_progress = progress }) -- first poll soon, then doubling
if not r then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end

print(string.format("subscription %d is %s", r.subscription.id, r.subscription.resource.status))
print(string.format("database %d is %s at %s (%ds)", r.database.id, r.database.resource.status,
  r.database.resource.publicEndpoint, os.time() - t0))
