-- Many clients in one process, each running in a coroutine on one virtual clock: a client's sleep
-- yields, and the fleet resumes whichever coroutine wakes first. With a fake API (a function of
-- the request and the clock) and one store, it plays many processes sharing an account, exactly.
local M = {}

local Fleet = {}
Fleet.__index = Fleet

function M.new(start)
  local f = setmetatable({ t = start or 1000, queue = {}, requests = {} }, Fleet)
  f.now = function() return f.t end
  f.sleep = function(d) coroutine.yield(d) end
  return f
end

-- A transport whose answers come from api(req, fleet) -> {status, body[, headers]}; every request
-- is recorded with its time.
function Fleet:transport(api)
  local fleet = self
  return { agent = "fleet/1", request = function(_, req)
    fleet.requests[#fleet.requests + 1] = { method = req.method, url = req.url, at = fleet.t }
    local a = api(req, fleet)
    return { status = a[1], body = a[2] or "", headers = a[3] or {} }
  end }
end

-- Start fn in a coroutine now (or `at`); it may sleep through the clients' sleep.
function Fleet:spawn(fn, at)
  local entry = { wake = at or self.t, co = coroutine.create(fn) }
  self.queue[#self.queue + 1] = entry
  return entry
end

-- Stop resuming one coroutine: a process that died mid-wait.
function Fleet.kill(_, entry) entry.killed = true end

-- Resume coroutines in wake order until none is left (or `until_t`); a raise is re-raised.
function Fleet:run(until_t)
  while true do
    local best, bi
    for i, e in ipairs(self.queue) do
      if not e.killed and (not best or e.wake < best.wake) then best, bi = e, i end
    end
    if not best or (until_t and best.wake > until_t) then break end
    if best.wake > self.t then self.t = best.wake end
    local ok, d = coroutine.resume(best.co)
    if not ok then error(d, 0) end
    if coroutine.status(best.co) == "dead" then table.remove(self.queue, bi)
    else best.wake = self.t + (tonumber(d) or 0) end
  end
  if until_t and self.t < until_t then self.t = until_t end
end

-- Requests made in [from, to) of the virtual clock.
function Fleet:count(from, to)
  local n = 0
  for _, r in ipairs(self.requests) do if r.at >= from and r.at < to then n = n + 1 end end
  return n
end

return M
