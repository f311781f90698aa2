-- rctasks.executor: the one way to the API. A client owns one executor; it is the only code that
-- touches the transport, the limiter, the clock, the sleep and the API keys, and the only code
-- that redacts. exec:call sends one request (with the attempts a retry policy allows, never past
-- a deadline) and decodes the answer; every error it returns or reports is sealed (no key in it).
-- exec.redact(s) is the one redactor of a client's keys; exec:seal(err) applies it to an error.
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local errors = require "rctasks.errors"
local task_mt = require("rctasks.task").mt

local M = {}

local Executor = {}
Executor.__index = Executor
Executor.__name = "rctasks.executor"

local headers_of = setmetatable({}, { __mode = "k" }) -- executor -> request headers with the keys

local MAX_SLEEP = defaults.max_sleep

-- The escapes a server may spell a key with, each undone by one linear gsub: percent-encoding,
-- JSON's \uXXXX (ASCII) and \/, HTML's numeric character references.
local function char(code) return code < 128 and string.char(code) or nil end
local UNDO = {
  function(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end,
  function(s)
    return (s:gsub("\\[uU](%x%x%x%x)", function(h) return char(tonumber(h, 16)) end):gsub("\\/", "/"))
  end,
  function(s)
    return (s:gsub("&#[xX](%x+);", function(h) return #h <= 6 and char(tonumber(h, 16)) or nil end)
      :gsub("&#(%d+);", function(d) return #d <= 7 and char(tonumber(d)) or nil end))
  end,
}
local ESCAPED = "[%%\\&]" -- a string without these holds no escape UNDO knows

-- A function that replaces every key in a string with "[redacted]": in its plain spelling, and in
-- any spelling the escapes of UNDO make of it, mixed or nested (up to three rounds of undoing).
-- When a key hid behind escapes, the result is the unescaped text, redacted.
local function redactor(keys)
  local function plain(s)
    for _, k in ipairs(keys) do
      local i = s:find(k, 1, true)
      if i then
        local parts, from = {}, 1
        while i do
          parts[#parts + 1] = s:sub(from, i - 1)
          from = i + #k
          i = s:find(k, from, true)
        end
        parts[#parts + 1] = s:sub(from)
        s = table.concat(parts, "[redacted]")
      end
    end
    return s
  end
  return function(s)
    if type(s) ~= "string" or #keys == 0 then return s end
    s = plain(s)
    if not s:find(ESCAPED) then return s end
    local u = s
    for _ = 1, 3 do
      local before = u
      for _, undo in ipairs(UNDO) do u = undo(u) end
      if u == before then break end
      local r = plain(u)
      if r ~= u then return r end
    end
    return s
  end
end

-- executor.new{ base_url=, api_key=, secret_key=, transport=, limiter=, now=, sleep=, timeout=, agent= }
function M.new(cfg)
  local keys = {} -- real keys are long; a few-letter test key would shred every message it matched
  for _, k in ipairs({ cfg.api_key, cfg.secret_key }) do if #k >= 8 then keys[#keys + 1] = k end end
  local self = setmetatable({
    base_url = cfg.base_url, transport = cfg.transport, limiter = cfg.limiter,
    now = cfg.now, raw_sleep = cfg.sleep, timeout = cfg.timeout, redact = redactor(keys),
  }, Executor)
  headers_of[self] = {
    ["x-api-key"] = cfg.api_key,
    ["x-api-secret-key"] = cfg.secret_key,
    ["accept"] = "application/json",
    ["user-agent"] = cfg.agent,
  }
  return self
end

function Executor:seal(err) return errors.seal(err, self.redact) end

-- Sleep `d` seconds, never longer than `deadline` allows (nor a day); nothing for d <= 0 or NaN.
function Executor:sleep(d, deadline)
  if deadline then d = math.min(d, deadline - self.now()) end
  if not (d > 0) then return end -- luacheck: ignore 581 (NaN must not sleep)
  -- at least 1 ms: Debian's nginx warns at every ngx.sleep(0) (no delayed-events patch), and a
  -- budget wait shorter than that would ask the store again at once
  self.raw_sleep(math.min(math.max(d, 0.001), MAX_SLEEP))
end

-- Say this client is still there (a shared budget counts its clients): poll rounds that send
-- nothing, such as a follower's reads of what another caller polled, call it.
function Executor:present()
  local limiter = self.limiter
  if limiter and limiter.beat then limiter:beat(self.now()) end
end

-- Wait for the limiter's go, never past the deadline. Returns nil, or a timeout error.
function Executor:budget(req, deadline)
  local limiter = self.limiter
  local hold = limiter:acquire(self.now())
  while hold > 0 do
    if deadline and self.now() + hold > deadline then
      return errors.timeout("request budget exhausted before the deadline",
        { method = req.method, url = req.url, unsent = true })
    end
    self:sleep(hold)
    hold = limiter:acquire(self.now())
  end
  return nil
end

-- call(method, path, body, decode, policy, deadline) -> value | nil, err.
-- body: a JSON string or nil. decode(body, task_mt) -> value | nil, message: a core decoder
-- (tasks get task_mt), or one of the workflow's. policy: the retry policy (rctasks.retry).
-- deadline: on self.now()'s clock, or nil.
function Executor:call(method, path, body, decode, policy, deadline)
  local h = headers_of[self] -- the client refuses calls once closed, so this is never nil here
  if body ~= nil then
    local with = { ["content-type"] = "application/json" }
    for k, v in pairs(h) do with[k] = v end
    h = with
  end
  local req = { method = method, url = self.base_url .. path, headers = h, body = body, timeout = self.timeout }
  local n = 0
  while true do
    n = n + 1
    local err = self.limiter and self:budget(req, deadline)
    if err then return nil, err end
    if deadline then
      local left = deadline - self.now()
      if left <= 0 then
        return nil, errors.timeout("deadline reached", { method = method, url = req.url, unsent = true })
      end
      req.timeout = math.min(self.timeout, left)
    end
    local res, terr = self.transport:request(req)
    if res then
      local remaining = self.limiter and self.limiter.remaining and res.headers
        and res.headers["x-rate-limit-remaining"]
      if remaining then
        local r = tonumber(remaining)
        if r then self.limiter:remaining(r, self.now()) end
      end
      if res.status >= 200 and res.status <= 299 then
        local v, msg = decode(res.body, task_mt)
        if v ~= nil then return v end
        return nil, self:seal(errors.decode(msg, res, req))
      end
      err = errors.http(req, res, core.decode)
    else
      err = errors.transport(req, terr)
    end
    err = self:seal(err)
    local delay = policy:delay(n, method, err)
    if not delay or (deadline and self.now() + delay > deadline) then return nil, err end
    policy:report(n, delay, err)
    self:sleep(delay)
  end
end

-- The transport's counters, when it keeps any.
function Executor:stats()
  local t = self.transport
  if type(t) == "table" and type(t.stats) == "function" then return t:stats() end
  return nil
end

function Executor:closed() return headers_of[self] == nil end

-- Idempotent; the transport's handle is freed now rather than at the next GC.
function Executor:close()
  headers_of[self] = nil
  local t = self.transport
  if t and t.close then t:close() end
end

return M
