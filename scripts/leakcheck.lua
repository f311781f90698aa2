-- leakcheck.lua: >= 1000 requests through core.http (and rctasks.new():get()), mixing successes
-- with every failure path, for `scripts/valgrind` to watch for leaks. Failures come from the
-- simulator's fault queue; the sim at $RCTASKS_SIM_URL is used, or one started here (scripts/sim).
-- Usage: lua5.4 scripts/leakcheck.lua [ROUNDS]   (from the repo root, after `make build`)
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;sim/?.lua;" .. package.path
package.cpath = (os.getenv("RCTASKS_CPATH") or "build/5.4/?.so") .. ";" .. package.cpath

local core = require "rctasks.core"
local curl = require "rctasks.transport.curl"
-- core.http has no defaults of its own: the library's, under the given options.
local function http(opts) return core.http(curl.options(opts)) end
local sys = require "helpers.sys"
local function sh(cmd) return sys.sh(cmd, true) end
local free_port = sys.free_port

local ROUNDS = tonumber(arg and arg[1]) or 20  -- one round makes ~55 requests

local count = { requests = 0, ok = 0, raised = 0 }
local codes = {}

-- Tally one result: (status, ...) on an answer, (nil, code) on a failure.
local function note(status, code)
  count.requests = count.requests + 1
  if status then
    count.ok = count.ok + 1
  else
    code = tostring(code)
    codes[code] = (codes[code] or 0) + 1
  end
end

-- ===== The simulator =====

local sim = require "helpers.sim"
local own_sim
if (os.getenv("RCTASKS_SIM_URL") or "") == "" then
  local tmp = os.tmpname()
  os.remove(tmp) -- only its unique name is wanted
  own_sim = tmp .. ".rctasks-leak"
  if not sh("scripts/sim start " .. own_sim .. " >/dev/null") then
    sh("scripts/sim stop " .. own_sim .. " >/dev/null 2>&1; rm -rf " .. own_sim)
    error("leakcheck: scripts/sim start failed (run it outside sanitizers; or set RCTASKS_SIM_URL)")
  end
  local f = assert(io.open(own_sim .. "/url"))
  local url = f:read("*l")
  f:close()
  sim.url = function() return url end -- the helper reads the environment; hand it ours
end

-- Everything that talks to the sim, under pcall so that a sim this script started is always stopped.
local function main()
  local base = sim.url()
  local acct = sim.account{ rate_limit = 1e9 } -- failures come from the fault queue, not the limiter
  local task_id = sim.task(acct.key, { outcome = "completed" })
  local auth = { ["x-api-key"] = acct.key, ["x-api-secret-key"] = acct.secret, accept = "application/json" }
  local task_url = base .. "/tasks/" .. task_id
  local refused = "http://127.0.0.1:" .. free_port() .. "/v1/tasks/x"
  local task_mt = { __index = {} }

  local function decode_checks(body)
    core.decode(body)
    core.decode_task(body, task_mt)
    core.decode_tasks(body, task_mt)
    core.decode('{"a":[1,2,{"b":null}],"c":')          -- truncated: nil, msg
    core.decode(("["):rep(200))                         -- past the depth limit
    core.decode_task('{"taskId":"x","status":7}', task_mt) -- wrong type: nil, msg
    core.decode_task('{"taskId":"' .. ("x"):rep(100) .. '","status":7}', task_mt) -- an id too long to quote
  end

  -- One fault from the sim's queue, then the request it applies to.
  local function faulted(h, fault, timeout, method, url)
    sim.faults(acct.key, { fault })
    local status, headers, body = h:request(method or "GET", url or task_url, auth, nil, timeout)
    note(status, headers)
    if status then decode_checks(body) end
  end

  local FAULTS = {
    { kind = "status", status = 503, retry_after = 1 },
    { kind = "status", status = 429, body = "html" },
    { kind = "reset" },                                  -- CURLE_GOT_NOTHING
    { kind = "reset_mid" },                              -- CURLE_PARTIAL_FILE
    { kind = "invalid_json" },
    { kind = "shape", variant = "status_number" },
    { kind = "shape", variant = "links_string" },
    { kind = "unknown_status" },
    { kind = "gzip" },                                   -- a body we did not ask to be compressed
    { kind = "redirect" },                               -- not followed
    { kind = "trickle", delay = 0.001, chunk = 64 },
  }

  local function round(h)
    local body
    for _ = 1, 25 do                                    -- successes on one kept-alive connection
      local s, _, b = h:request("GET", task_url, auth)
      note(s)
      body = b
    end
    decode_checks(body or "")
    local s, _, b = h:request("GET", base .. "/tasks", auth)
    note(s); decode_checks(b or "")
    note(h:request("GET", base .. "/tasks/not-a-task", auth))  -- 404
    note(h:request("GET", task_url, { ["x-api-key"] = acct.key, ["x-api-secret-key"] = "wrong" })) -- 401
    note(h:request("POST", base .. "/subscriptions", auth, ('{"name":"%s"}'):format(("y"):rep(3000))))
    for _, f in ipairs(FAULTS) do faulted(h, f) end
    faulted(h, { kind = "stall", seconds = 1 }, 0.05)   -- CURLE_OPERATION_TIMEDOUT
    faulted(h, { kind = "big", bytes = 300000 })         -- buffer grows past its first size
    for _ = 1, 3 do note(h:request("GET", refused)) end -- CURLE_COULDNT_CONNECT
    note(h:request("GET", "file:///etc/hostname"))      -- CURLE_UNSUPPORTED_PROTOCOL
    note(h:request("GET", "http://[::1"))               -- CURLE_URL_MALFORMAT

    local capped = http{ max_body = 1000 }
    faulted(capped, { kind = "big", bytes = 300000 })    -- CURLE_FILESIZE_EXCEEDED
    note(capped:request("GET", task_url, auth))
    capped:close()
    local short = http{ max_header = 64 }
    note(short:request("GET", task_url, auth))           -- CURLE_FILESIZE_EXCEEDED (header block)
    short:close()

    -- misuse raises before any per-request allocation: nothing may leak on these paths
    for _, bad in ipairs{
      function() h:request("GET", task_url, { ["x-api-key"] = "a\r\nb" }) end,
      function() h:request("GET", task_url, { x = 1 }) end,
      function() h:request("GE T", task_url) end,
      function() h:request("GET", task_url, nil, nil, -1) end,
      function() capped:request("GET", task_url) end,   -- closed handle
      function() http{ bogus = 1 } end,
    } do
      if not pcall(bad) then count.raised = count.raised + 1 end
    end

    for _ = 1, 3 do                                     -- handles dropped without close: __gc frees them
      local g = http{ timeout = 5 }
      note(g:request("GET", task_url, auth))
    end
    collectgarbage()
  end

  local h = http{ timeout = 5 }
  faulted(h, { kind = "big", bytes = 3 * 1024 * 1024 }) -- above 1 MiB: the buffer is freed after use
  for i = 1, ROUNDS do
    round(h)
    if i % 5 == 0 then                                  -- re-create the main handle now and then
      h:close()
      h = http{ timeout = 5 }
    end
  end
  h:close()

  -- the Lua layer on top of the same core
  local rctasks = require "rctasks"
  local client = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = base }
  for i = 1, 60 do
    if i % 10 == 0 then sim.faults(acct.key, { { kind = "invalid_json" } }) end
    local t, e = client:get(task_id)
    note(t, e and (e.curl_code or e.code or e.kind))
  end
  -- a user's error raised in on_update unwinds through wait: nothing it held may leak
  for i = 1, 20 do
    local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = base }
    local ok = pcall(c.wait, c, task_id, { on_update = function() error("user error in on_update") end })
    note(not ok or nil, "on_update_error")
    if i % 2 == 0 then c:close() end                    -- the other half is left to __gc
  end
  client = nil -- luacheck: ignore
  collectgarbage()
  return sim.stats(acct.key)
end

local ok, st = pcall(main)
if own_sim then sh("scripts/sim stop " .. own_sim .. " >/dev/null; rm -rf " .. own_sim) end
if not ok then
  io.stderr:write("leakcheck: ", tostring(st), "\n")
  os.exit(2)
end

local failed = {}
for code, n in pairs(codes) do failed[#failed + 1] = ("%s=%d"):format(code, n) end
table.sort(failed)
print(("leakcheck: %d requests (%d answered, failures: %s), %d misuse errors raised, sim saw %s requests")
  :format(count.requests, count.ok, table.concat(failed, " "), count.raised, tostring(st.requests)))
os.exit(count.requests >= 1000 and 0 or 1)
