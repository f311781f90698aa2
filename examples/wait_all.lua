-- Start several operations at once, then wait for all their tasks with wait_all: one
-- GET /v1/tasks per polling round instead of one request per task, results in input order.
-- Credentials from REDISCLOUD_ACCESS_KEY / REDISCLOUD_SECRET_KEY (and REDISCLOUD_URL).
local rctasks = require "rctasks"

local names = { "orders", "sessions", "leaderboard", "rate-limits" }
local ids = {}
for i, name in ipairs(names) do
  local task = assert(rctasks.submit("POST", "/subscriptions", { name = name }))
  ids[i] = task.taskId
  print(string.format("submitted %-12s task %s", name, task.taskId))
end

print("waiting for " .. #ids .. " tasks:")
local results = rctasks.wait_all(ids, {
  timeout = 1800,
  interval = 0.2, -- first poll soon, then doubling up to 30 s
  on_update = function(task) print(string.format("  %s  %s", task.taskId, task.status)) end,
})

local failed = 0
for i, r in ipairs(results) do
  if r.task then
    print(string.format("%-12s subscription %d", names[i], r.task:resource_id()))
  else
    failed = failed + 1
    print(string.format("%-12s failed: %s", names[i], tostring(r.err)))
  end
end
os.exit(failed == 0 and 0 or 1)
