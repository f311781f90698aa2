-- leakcheck.lua: >= 1000 requests through core.http (and rctasks.new():get() when the Lua layer
-- exists), mixing successes with every failure path, for `scripts/valgrind` to watch for leaks.
-- Targets the simulator at $RCTASKS_SIM_URL when set, otherwise a throwaway nginx of its own.
-- Usage: lua5.4 scripts/leakcheck.lua [ROUNDS]   (run from the repo root, after `make build`)
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;sim/?.lua;" .. package.path
package.cpath = (os.getenv("RCTASKS_CPATH") or "build/5.4/?.so") .. ";" .. package.cpath

local core = require "rctasks.core"
local socket = require "socket"

local ROUNDS = tonumber(arg and arg[1]) or 30  -- one round makes 40 requests

local count = { requests = 0, ok = 0, raised = 0 }
local codes = {}

local function note(status, code)
  count.requests = count.requests + 1
  if status then
    count.ok = count.ok + 1
  else
    code = tostring(code)
    codes[code] = (codes[code] or 0) + 1
  end
end

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- ===== A throwaway nginx: the stalls, big bodies and bad JSON the leak loop needs =====

local TASK = '{"taskId":"leak-1","commandType":"databaseCreateRequest","status":"processing-completed",'
  .. '"description":"done","timestamp":"2024-03-01T10:15:30Z","response":{"resourceId":51055029},'
  .. '"links":[{"rel":"self","type":"GET","href":"http://127.0.0.1/v1/tasks/leak-1"}]}'

local CONF = [[
daemon on;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log warn;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fcgi;
  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
  keepalive_requests 100000;
  default_type application/json;
  server {
    listen 127.0.0.1:@PORT@;
    location /v1/tasks/ { return 200 '@TASK@'; }
    location = /v1/tasks { return 200 '{"tasks":[@TASK@,@TASK@]}'; }
    location = /v1/bad { return 200 '{"tasks":[{"taskId":'; }
    location = /v1/wrong { return 200 '{"taskId":"x","status":7}'; }
    location = /v1/echo { content_by_lua_block { ngx.req.read_body() ngx.print(ngx.req.get_body_data() or "") } }
    location = /v1/big { content_by_lua_block { for _ = 1, 32 do ngx.print(("x"):rep(8192)) end } }
    location = /v1/slow { content_by_lua_block { ngx.sleep(2) ngx.say("late") } }
    location = /v1/503 { add_header Retry-After 1 always; return 503 '{"error":"busy"}'; }
  }
}
]]

local nginx_dir

local function start_nginx()
  nginx_dir = os.tmpname() .. ".rctasks-leak"
  for _, d in ipairs{ "logs", "conf", "tmp" } do assert(sh("mkdir -p " .. nginx_dir .. "/" .. d)) end
  local port = free_port()
  local f = assert(io.open(nginx_dir .. "/conf/nginx.conf", "wb"))
  f:write((CONF:gsub("@(%w+)@", { PORT = tostring(port), TASK = TASK })))
  f:close()
  assert(sh("/usr/sbin/nginx -p " .. nginx_dir .. " -c conf/nginx.conf -e logs/error.log"), "nginx did not start")
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() break end
    socket.sleep(0.05)
  end
  return "http://127.0.0.1:" .. port .. "/v1"
end

local function stop_nginx()
  local pid = nginx_dir and read(nginx_dir .. "/logs/nginx.pid")
  if pid and pid:match("^%d+") then
    sh("kill -TERM " .. pid:match("^%d+"))
    for _ = 1, 100 do
      if not read(nginx_dir .. "/logs/nginx.pid") then break end
      socket.sleep(0.05)
    end
  end
  if nginx_dir and nginx_dir:match("%.rctasks%-leak$") then sh("rm -rf " .. nginx_dir) end
end

-- ===== The loop =====

local base = start_nginx()
local refused = "http://127.0.0.1:" .. free_port() .. "/v1/tasks/x"
local task_mt = { __index = {} }
local has_decode = pcall(core.decode, "1")

local function decode_checks(body)
  if not has_decode then return end
  core.decode(body)
  core.decode("{\"a\":[1,2,{\"b\":null}],\"c\":")   -- truncated: nil, msg
  core.decode(("["):rep(200))                       -- past the depth limit
  if core.decode_task then
    core.decode_task(body, task_mt)
    core.decode_task('{"taskId":"x","status":7}', task_mt) -- wrong type: nil, msg
    core.decode_tasks('{"tasks":{}}', task_mt)
  end
end

local function round(h)
  local s, _, b
  for _ = 1, 20 do                                  -- successes on one kept-alive connection
    s, _, b = h:request("GET", base .. "/tasks/leak-1", { ["x-api-key"] = "k", accept = "application/json" })
    note(s)
  end
  decode_checks(b or "")
  s, _, b = h:request("GET", base .. "/tasks")
  note(s); decode_checks(b or "")
  local big_json = ('{"name":"db","x":"%s"}'):format(("y"):rep(3000))
  note(h:request("POST", base .. "/echo", { ["content-type"] = "application/json" }, big_json))
  note(h:request("GET", base .. "/bad")); note(h:request("GET", base .. "/wrong"))
  note(h:request("GET", base .. "/503"))
  note(h:request("DELETE", base .. "/tasks/leak-1"))
  for _ = 1, 3 do note(h:request("GET", refused)) end            -- CURLE_COULDNT_CONNECT
  note(h:request("GET", base .. "/slow", nil, nil, 0.05))         -- CURLE_OPERATION_TIMEDOUT
  note(h:request("GET", "file:///etc/hostname"))                  -- CURLE_UNSUPPORTED_PROTOCOL
  note(h:request("GET", "http://[::1")) -- CURLE_URL_MALFORMAT
  note(h:request("GET", base .. "/big"))                          -- big body: buffer grows, then shrinks

  local capped = core.http{ max_body = 1000 }                     -- CURLE_FILESIZE_EXCEEDED
  note(capped:request("GET", base .. "/big"))
  note(capped:request("GET", base .. "/tasks/leak-1"))
  capped:close()

  -- misuse raises before any per-request allocation: nothing may leak on these paths
  for _, bad in ipairs{
    function() h:request("GET", base .. "/tasks/x", { ["x-api-key"] = "a\r\nb" }) end,
    function() h:request("GET", base .. "/tasks/x", { ["x"] = 1 }) end,
    function() h:request("GE T", base .. "/tasks/x") end,
    function() h:request("GET", base .. "/tasks/x", nil, nil, -1) end,
    function() capped:request("GET", base .. "/tasks/x") end,      -- closed handle
    function() core.http{ bogus = 1 } end,
  } do
    if not pcall(bad) then count.raised = count.raised + 1 end
  end

  -- handles dropped without close: __gc must free them
  for _ = 1, 3 do
    local g = core.http{ timeout = 5 }
    note(g:request("GET", base .. "/tasks/leak-1"))
  end
  collectgarbage()
end

local h = core.http{ timeout = 5 }
for i = 1, ROUNDS do
  round(h)
  if i % 5 == 0 then                                -- re-create the main handle now and then
    h:close()
    h = core.http{ timeout = 5 }
  end
end
h:close()

-- the Lua layer, once it exists, on top of the same core
local ok_rctasks, rctasks = pcall(require, "rctasks")
if ok_rctasks and type(rctasks) == "table" and rctasks.new then
  local ok, client = pcall(rctasks.new, { api_key = "leak-key", secret_key = "leak-secret", base_url = base })
  if ok and client then
    for _ = 1, 50 do
      local t, e = client:get("leak-1")
      note(t, e and e.code)
    end
  end
end

collectgarbage()
stop_nginx()

local failed = {}
for code, n in pairs(codes) do failed[#failed + 1] = ("%s=%d"):format(code, n) end
table.sort(failed)
print(("leakcheck: %d requests (%d answered, failures: %s), %d misuse errors raised")
  :format(count.requests, count.ok, table.concat(failed, " "), count.raised))
os.exit(count.requests >= 1000 and 0 or 1)
