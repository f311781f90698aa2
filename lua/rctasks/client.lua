-- rctasks.client: a configured connection to one Redis Cloud account.
-- It owns the transport, the clock, the sleep, the retry policy and the limiter, builds requests
-- (URL, headers), and turns what comes back into tasks or error values. Keys live only in a
-- private table keyed by the client, so printing or dumping a client never shows them.
local core = require "rctasks.core"
local errors = require "rctasks.errors"
local retry = require "rctasks.retry"
local taskmod = require "rctasks.task"
local wait = require "rctasks.wait"

local M = { VERSION = core.version }

local Client = {}
Client.__index = Client
Client.__name = "rctasks.client"
M.Client = Client

local secrets = setmetatable({}, { __mode = "k" }) -- client -> its auth headers

local OPTIONS = {
  api_key = "string", secret_key = "string", base_url = "string",
  timeout = "number", connect_timeout = "number", ca_file = "string", max_body = "number",
  transport = "any", sleep = "function", now = "function", retry = "any", limiter = "any",
}

M.DEFAULT_URL = "https://api.redislabs.com/v1"

-- Keys must never cross a network in clear: http:// only to this machine.
local function check_base_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.+)$")
  if not scheme then error("rctasks.new: base_url must be an absolute http(s) URL", 3) end
  scheme = scheme:lower()
  local authority = rest:match("^[^/?#]*")
  if authority:find("@", 1, true) then error("rctasks.new: base_url must not carry credentials", 3) end
  if rest:find("[?#]") then error("rctasks.new: base_url must not have a query or fragment", 3) end
  local host = authority:match("^%[(.-)%]") or authority:match("^[^:]*")
  if scheme == "http" then
    local h = host:lower()
    if not (h == "localhost" or h:match("^127%.%d+%.%d+%.%d+$") or h == "::1") then
      error("rctasks.new: http:// is allowed only to a loopback host (keys would travel in clear); use https://", 3)
    end
  elseif scheme ~= "https" then
    error("rctasks.new: base_url scheme must be https (or http to loopback)", 3)
  end
  if host == "" then error("rctasks.new: base_url has no host", 3) end
  return (url:gsub("/+$", ""))
end

-- The transport a user would expect: cosockets inside nginx (never block a worker), libcurl
-- elsewhere. A string picks one by name; a table is the user's own.
local function make_transport(spec, cfg)
  local ngx = rawget(_G, "ngx")
  local in_ngx = ngx and type(ngx.get_phase) == "function"
  if spec == nil then spec = in_ngx and "ngx" or "curl" end
  if type(spec) == "string" then
    if spec ~= "curl" and spec ~= "ngx" then
      error("rctasks.new: unknown transport '" .. spec .. "' (curl, ngx or a table)", 3)
    end
    return require("rctasks.transport." .. spec).new(cfg)
  end
  if type(spec) ~= "table" and type(spec) ~= "userdata" then
    error("rctasks.new: transport must be 'curl', 'ngx' or a value with :request(req)", 3)
  end
  return spec
end

function M.new(opts)
  if type(opts) ~= "table" then error("rctasks.new: options must be a table", 2) end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then error("rctasks.new: unknown option '" .. tostring(k) .. "'", 2) end
    if want ~= "any" and type(v) ~= want then
      error("rctasks.new: option '" .. k .. "' must be a " .. want .. ", got " .. type(v), 2)
    end
  end
  if not opts.api_key or opts.api_key == "" then error("rctasks.new: api_key is missing", 2) end
  if not opts.secret_key or opts.secret_key == "" then error("rctasks.new: secret_key is missing", 2) end
  if opts.api_key:find("[%c]") or opts.secret_key:find("[%c]") then
    error("rctasks.new: keys must not contain control characters", 2)
  end
  local base = check_base_url(opts.base_url or M.DEFAULT_URL)

  local policy = opts.retry
  if policy == nil then policy = retry.new()
  elseif policy == false then policy = retry.NONE
  elseif getmetatable(policy) == nil and type(policy) == "table" then policy = retry.new(policy) end

  local limiter = opts.limiter
  if limiter == nil then limiter = retry.limiter()
  elseif limiter == false then limiter = nil
  elseif getmetatable(limiter) == nil and type(limiter) == "table" then limiter = retry.limiter(limiter) end

  local transport = make_transport(opts.transport, {
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    ca_file = opts.ca_file, max_body = opts.max_body,
  })
  local ngx = rawget(_G, "ngx")
  local self = setmetatable({
    base_url = base,
    timeout = opts.timeout or 30,
    transport = transport,
    retry = policy,
    limiter = limiter,
    now = opts.now or core.now,
    sleep = opts.sleep or (ngx and ngx.sleep or core.sleep),
    decode = core.decode,
  }, Client)
  -- Servers may echo headers back: any server text bound for an error value or an on_retry hook
  -- goes through this first (retry.lua, send, call), so no error can carry a key.
  local keys = {} -- real keys are long; a few-letter test key would shred every message it matched
  for _, k in ipairs({ opts.api_key, opts.secret_key }) do if #k >= 8 then keys[#keys + 1] = k end end
  self.redact = function(s)
    if type(s) ~= "string" then return s end
    for _, k in ipairs(keys) do
      if s:find(k, 1, true) then
        local parts, i = {}, 1
        while true do
          local j = s:find(k, i, true)
          parts[#parts + 1] = s:sub(i, (j or 0) - 1)
          if not j then break end
          i = j + #k
        end
        s = table.concat(parts, "[redacted]")
      end
    end
    return s
  end
  secrets[self] = {
    ["x-api-key"] = opts.api_key,
    ["x-api-secret-key"] = opts.secret_key,
    ["accept"] = "application/json",
    ["user-agent"] = "rctasks/" .. core.version .. " " .. (transport.agent or (_VERSION:gsub(" ", "/"))),
  }
  return self
end

function Client:__tostring()
  return "rctasks.client (" .. self.base_url .. ")"
end

-- Percent-encode one path segment (RFC 3986 unreserved characters stay as they are).
function M.escape(segment)
  return (tostring(segment):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Task ids are UUIDs: anything else is refused before it can steer the URL.
local last_id = {} -- the last id that passed (a private table until then): a wait polls one id many times
local function check_id(id, level)
  if id == last_id then return id end
  if type(id) ~= "string" then error("rctasks: task id must be a string, got " .. type(id), level + 1) end
  -- Anchored: one match attempt over the id, half the cost of searching for a bad character.
  if #id > 128 or not id:find("^[%w%-_]+$") then
    error("rctasks: invalid task id (expected letters, digits, '-' or '_', at most 128)", level + 1)
  end
  last_id = id
  return id
end
M.check_id = check_id

-- Join an API path to the base URL; a path that could climb out of it is misuse.
function Client:url(path, level)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then
    error("rctasks: path must be a string starting with '/'", (level or 1) + 1)
  end
  -- Some servers decode %2E, %2F, %5C before resolving dot segments: check the decoded spelling too.
  local plain = path:gsub("%%2[Ee]", "."):gsub("%%2[Ff]", "/"):gsub("%%5[Cc]", "/")
  if path:find("[%c%s#\\]") or plain:find("/%.%.?/") or plain:find("/%.%.?$") or path:find("//", 1, true)
    or path:find("%%00") then
    error("rctasks: unsafe path (spaces, '#', '..', %00 or empty segments)", (level or 1) + 1)
  end
  return self.base_url .. path
end

-- Send one request through the retry policy; 2xx -> res, anything else -> nil, err.
-- ctl.once: a single attempt (wait() retries by itself); ctl.deadline: never wait past it.
function Client:send(method, path, body, ctl)
  local h = secrets[self]
  if not h then error("rctasks: client is closed", 3) end
  local headers = h
  if body ~= nil then
    headers = { ["content-type"] = "application/json" }
    for k, v in pairs(h) do headers[k] = v end
  end
  local req = { method = method, url = self.base_url .. path, headers = headers, body = body,
                timeout = self.timeout }
  local policy = (ctl and ctl.once) and retry.NONE or self.retry
  local res, err = policy:perform(self, req, ctl and ctl.deadline)
  req.headers = nil -- the request may end up in an error's traceback: no keys in it
  if res and (res.status < 200 or res.status > 299) then
    res.body = self.redact(res.body)
    res, err = nil, errors.http(req, res, self.decode)
  end
  return res, err
end

-- send, then decode the body with `decode(body, task_mt)` (a core decoder).
function Client:call(method, path, body, ctl, decode)
  local res, err = self:send(method, path, body, ctl)
  if not res then return nil, err end
  local v, msg = decode(res.body, taskmod.mt)
  if v == nil then
    return nil, errors.new("decode", { message = self.redact(msg), body = self.redact(res.body), status = res.status,
      method = method, url = self.base_url .. path })
  end
  return v
end

-- client:get(id) -> task | nil, err
function Client:get(id, ctl)
  check_id(id, 2)
  local t, err = self:call("GET", "/tasks/" .. id, nil, ctl, core.decode_task)
  if not t then err.task_id = id end
  return t, err
end

-- client:list() -> array of tasks, most recent status update first | nil, err
function Client:list()
  return self:call("GET", "/tasks", nil, nil, core.decode_tasks)
end

-- client:wait(id, opts) -> final task | nil, err (kinds task, timeout, http, transport, decode)
function Client:wait(id, opts)
  check_id(id, 2)
  return wait.wait(self, id, wait.options(opts, 3))
end

-- Idempotent; the transport's handle is freed now rather than at the next GC.
function Client:close()
  secrets[self] = nil
  local t = self.transport
  if t and t.close then t:close() end
end
Client.__close = Client.close

-- Workflow helpers (request, submit, run, wait_ready, wait_all, pipeline) are client methods too.
for k, f in pairs(require("rctasks.workflow").methods) do Client[k] = f end

return M
