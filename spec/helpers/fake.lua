-- Test doubles for specs that need no network: a virtual clock whose sleep advances time, and a
-- transport that answers from a script and records every request it was sent.
local M = {}

function M.clock(start)
  local c = { t = start or 1000, slept = {} }
  c.now = function() return c.t end
  c.sleep = function(s) c.slept[#c.slept + 1] = s; c.t = c.t + s end
  return c
end

-- answers: a list of responses; each is {status, body, headers} or {err = {...}} or a
-- function(req, n) returning one of those. The last answer repeats once the list runs out.
function M.transport(answers, clock)
  local t = { requests = {}, agent = "fake/1" }
  function t:request(req)
    local n = #self.requests + 1
    self.requests[n] = { method = req.method, url = req.url, body = req.body, at = clock and clock.t,
      headers = req.headers and { ["x-api-key"] = req.headers["x-api-key"],
        ["user-agent"] = req.headers["user-agent"], ["content-type"] = req.headers["content-type"] } }
    local a = answers[math.min(n, #answers)]
    if type(a) == "function" then a = a(req, n) end
    if a.err then
      local errors = require "rctasks.errors"
      local e = {}
      for k, v in pairs(a.err) do e[k] = v end
      return nil, errors.new("transport", e)
    end
    if a.delay and clock then clock.t = clock.t + a.delay end
    return { status = a[1], body = a[2] or "", headers = a[3] or {} }
  end
  return t
end

-- A client on a fake transport and a virtual clock (no limiter); `extra` overrides options.
-- Returns client, transport, clock.
function M.client(answers, extra)
  local clock = M.clock()
  local tr = M.transport(answers, clock)
  local opts = { api_key = "k", secret_key = "s", base_url = "https://api.example.test/v1",
    transport = tr, now = clock.now, sleep = clock.sleep, limiter = false }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return require("rctasks").new(opts), tr, clock
end

-- A task body as the API sends it.
function M.task_body(id, status, extra)
  local s = '{"taskId":"' .. id .. '","commandType":"subscriptionCreateRequest","status":"' .. status ..
    '","timestamp":"2024-05-10T14:14:34.153537279Z"'
  return s .. (extra or "") .. "}"
end

M.ID = "784299af-17ea-4ed6-b08f-dd643238c8dd"

return M
