-- rctasks.ngx: OpenResty helpers on top of the cosocket transport.
--   limiter{dict=, key=, limit=, window=, margin=}  one request budget per account across all
--                                                 workers, kept in an ngx.shared.DICT
--   new(client_opts, {dict=, limit=, window=})     rctasks.new with that limiter, keyed by account
--   default()                                      this worker's client from REDISCLOUD_* variables
--   spawn_wait(client, id, {dict=, ttl=, wait=})   wait in an ngx.timer, record the outcome
--   result(id, {dict=})                            read what spawn_wait recorded (any worker)
local ngx = rawget(_G, "ngx")

local M = {}

local function shared(name, who)
  if type(name) ~= "string" then error(who .. ": option 'dict' must be the name of a lua_shared_dict", 3) end
  local d = ngx and ngx.shared and ngx.shared[name]
  if not d then error(who .. ": no `lua_shared_dict " .. name .. "` in nginx.conf", 3) end
  return d
end

local function check(opts, allowed, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(who .. ": options must be a table", 3) end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then error(who .. ": unknown option '" .. tostring(k) .. "'", 3) end
    if want ~= "any" and type(v) ~= want then
      error(who .. ": option '" .. k .. "' must be a " .. want .. ", got " .. type(v), 3)
    end
  end
  return opts
end

------------------------------------------------------------------------------------------------
-- The shared limiter. The budget is `limit` slots; a send claims a free slot with an atomic
-- safe_add whose TTL is the window, so at most `limit` claims are alive at once and no window of
-- `window` seconds ever holds more than `limit` sends, whichever worker sent them. Times come
-- from the dict's own TTLs (one clock for all workers): the `now` argument is not needed.

local Limiter = {}
Limiter.__index = Limiter
Limiter.__name = "rctasks.ngx.limiter"

local LIMITER_OPTS = { dict = "string", key = "string", limit = "number", window = "number", margin = "number" }

-- margin: extra seconds each claim lives, for network jitter and the server's own window edges.
function M.limiter(opts)
  opts = check(opts, LIMITER_OPTS, "rctasks.ngx.limiter")
  local dict = shared(opts.dict or "rctasks", "rctasks.ngx.limiter")
  local limit, window = opts.limit or 400, opts.window or 60
  if limit < 1 or limit ~= math.floor(limit) then error("rctasks.ngx.limiter: limit must be a positive integer", 2) end
  if window <= 0 then error("rctasks.ngx.limiter: window must be positive", 2) end
  local margin = opts.margin or math.min(1, window * 0.05)
  if margin < 0 then error("rctasks.ngx.limiter: margin must be >= 0", 2) end
  local key = "rl:" .. (opts.key or "default")
  return setmetatable({ dict = dict, limit = limit, window = window, margin = margin,
    seq_key = key .. ":n", held_key = key .. ":held", slot_prefix = key .. ":s" }, Limiter)
end

local warned = false
local function warn_once(msg)
  if not warned then
    warned = true
    ngx.log(ngx.ERR, "rctasks: ", msg)
  end
end

-- 0: go (the send is counted); otherwise seconds to wait before asking again.
function Limiter:acquire()
  local d = self.dict
  local held = d:ttl(self.held_key)
  if held and held > 0 then return held end
  ngx.update_time() -- the dict stamps TTLs with the worker's cached clock: make it current
  local soonest
  for _ = 1, self.limit do -- at most one lap of the ring
    local n, err = d:incr(self.seq_key, 1, 0)
    if not n then
      warn_once("shared limiter cannot count (" .. tostring(err) .. "): holding requests")
      return self.window / self.limit
    end
    local slot = self.slot_prefix .. (n % self.limit)
    local ok
    ok, err = d:safe_add(slot, true, self.window + self.margin)
    if ok then return 0 end
    if err ~= "exists" then -- "no memory": fail closed rather than overspend the budget
      warn_once("shared limiter dict is full (" .. tostring(err) .. "): holding requests; enlarge it")
      return self.window / self.limit
    end
    local t = d:ttl(slot) or 0 -- nil: it expired a moment ago
    if not soonest or t < soonest then soonest = t end
  end
  return math.max(soonest or 0, 0.001)
end

-- The server says the budget is spent (X-Rate-Limit-Remaining: 0): every worker holds one slot's time.
function Limiter:pause()
  local d, hold = self.dict, self.window / self.limit
  local t = d:ttl(self.held_key)
  if not t or t < hold then d:set(self.held_key, true, hold) end
end

-- Claims alive now (for monitoring and tests): a full scan, so not on a hot path.
function Limiter:in_use()
  local n = 0
  for i = 0, self.limit - 1 do
    if self.dict:get(self.slot_prefix .. i) then n = n + 1 end
  end
  return n
end

-- A client whose budget is shared by every worker: keyed by a hash of the account key.
function M.new(client_opts, lim)
  lim = check(lim, { dict = "string", limit = "number", window = "number", margin = "number" }, "rctasks.ngx.new")
  if type(client_opts) ~= "table" then error("rctasks.ngx.new: options must be a table", 2) end
  local o = {}
  for k, v in pairs(client_opts) do o[k] = v end
  if o.limiter == nil and type(o.api_key) == "string" then
    o.limiter = M.limiter{ dict = lim.dict, key = ngx.md5(o.api_key), limit = lim.limit, window = lim.window,
                           margin = lim.margin }
  end
  return require("rctasks").new(o)
end

-- The worker's default client (rctasks.default): keys from REDISCLOUD_* (nginx.conf needs `env`
-- lines for them), its budget in `lua_shared_dict rctasks` when that dict exists.
function M.default() return require("rctasks").default() end

------------------------------------------------------------------------------------------------
-- Background waits. A record per task in a shared dict: "state\ttask status\tresource id\t
-- updated\tmessage". States: waiting, completed, failed (processing-error or an unknown
-- status), timeout, error (http, transport, decode), interrupted (the worker exited first).

local FIELDS = { "state", "task_status", "resource_id", "updated", "message" }

local function clean(v)
  if v == nil then return "" end
  return (tostring(v):gsub("[%c]", " "))
end

local function encode(r)
  local out = {}
  for i, f in ipairs(FIELDS) do out[i] = clean(r[f]) end
  return table.concat(out, "\t")
end

local function decode(s)
  local r, i = {}, 0
  for v in (s .. "\t"):gmatch("([^\t]*)\t") do
    i = i + 1
    if FIELDS[i] and v ~= "" then r[FIELDS[i]] = v end
  end
  r.resource_id = tonumber(r.resource_id)
  r.updated = tonumber(r.updated)
  return r
end

local OUTCOME = { task = "failed", timeout = "timeout" }

local function record(dict, key, ttl, r)
  r.updated = ngx.now()
  local ok, err = dict:safe_set(key, encode(r), ttl)
  if not ok then warn_once("cannot record a background wait (" .. tostring(err) .. ")") end
end

local function runner(premature, client, id, dict, key, ttl, wopts, on_done)
  if premature then
    return record(dict, key, ttl, { state = "interrupted", message = "nginx worker exited before the wait began" })
  end
  local user_update = wopts.on_update
  local w = {}
  for k, v in pairs(wopts) do w[k] = v end
  w.on_update = function(t, prev)
    record(dict, key, ttl, { state = "waiting", task_status = t.status,
                             resource_id = t.response and t.response.resourceId })
    if user_update then user_update(t, prev) end
  end
  -- pcall: a raise (e.g. in the user's callback) still ends as a record, not a lost wait
  local ok, t, err = pcall(client.wait, client, id, w)
  local r
  if not ok then
    r = { state = "error", message = "rctasks: wait raised: " .. tostring(t) }
    t, err = nil, nil
  elseif t then
    r = { state = "completed", task_status = t.status, resource_id = t.response and t.response.resourceId }
  else
    local last = err.task
    r = { state = OUTCOME[err.kind] or "error", message = tostring(err),
          task_status = last and last.status, resource_id = last and last.response and last.response.resourceId }
  end
  record(dict, key, ttl, r)
  if on_done then
    local okd, e = pcall(on_done, t, err, id)
    if not okd then ngx.log(ngx.ERR, "rctasks: spawn_wait on_done raised: ", tostring(e)) end
  end
end

local SPAWN_OPTS = { dict = "string", ttl = "number", wait = "table", key = "string", on_done = "function" }

-- spawn_wait(client, id, opts) -> true | true, "exists" | nil, msg. Returns at once; a timer on
-- this worker waits. A second call for a task already tracked (and not interrupted) starts nothing.
function M.spawn_wait(client, id, opts)
  opts = check(opts, SPAWN_OPTS, "rctasks.ngx.spawn_wait")
  if type(client) ~= "table" or type(client.wait) ~= "function" then
    error("rctasks.ngx.spawn_wait: first argument must be an rctasks client", 2)
  end
  require("rctasks.client").check_id(id, 2)
  require("rctasks.wait").options(opts.wait, 3) -- misuse raises here, not later in the timer
  local dict = shared(opts.dict or "rctasks", "rctasks.ngx.spawn_wait")
  local key = "wait:" .. (opts.key or id)
  local wait_timeout = opts.wait and opts.wait.timeout or 1800
  local ttl = opts.ttl or (wait_timeout + 86400)
  local fresh = encode({ state = "waiting", updated = ngx.now() })
  local ok, err = dict:safe_add(key, fresh, ttl)
  if not ok then
    if err ~= "exists" then return nil, "rctasks.ngx.spawn_wait: shared dict: " .. tostring(err) end
    local cur = M.result(id, { dict = opts.dict, key = opts.key })
    if cur and cur.state ~= "interrupted" then return true, "exists" end
    dict:set(key, fresh, ttl)
  end
  local started, terr = ngx.timer.at(0, runner, client, id, dict, key, ttl, opts.wait or {}, opts.on_done)
  if not started then
    dict:delete(key)
    return nil, "rctasks.ngx.spawn_wait: cannot start a timer: " .. tostring(terr)
  end
  return true
end

-- result(id, {dict=, key=}) -> {state=, task_status=, resource_id=, updated=, message=} | nil
function M.result(id, opts)
  opts = check(opts, { dict = "string", key = "string" }, "rctasks.ngx.result")
  local dict = shared(opts.dict or "rctasks", "rctasks.ngx.result")
  local s = dict:get("wait:" .. (opts.key or tostring(id)))
  return s and decode(s) or nil
end

return M
