-- Starts and stops test nginx instances for spec/ngx: Debian's nginx with its Lua module (OpenResty's
-- LuaJIT), an own temp prefix holding the code its workers load (scripts/stage: rctasks, the core
-- built for LuaJIT, the handlers), a free loopback port, `daemon on`, stopped by its pid file.
-- Also a small LuaSocket HTTP client for driving them.
local socket = require "socket"
local sys = require "helpers.sys"
local sh = sys.sh
local read = sys.read
local write = sys.write
local sim = require "helpers.sim"

local H = {}

H.read = read

H.write = write

H.ROOT = assert(io.popen("pwd")):read("*l")

H.free_port = sys.free_port

function H.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/rctasks-ngx.XXXXXX"))
  local d = p:read("*l")
  p:close()
  return d
end

-- Plain text substitution (no Lua pattern surprises in paths).
function H.replace(text, from, to)
  local i = text:find(from, 1, true)
  assert(i, "not found in config: " .. from)
  while i do
    text = text:sub(1, i - 1) .. to .. text:sub(i + #from)
    i = text:find(from, i + #to, true)
  end
  return text
end

-- Temp paths inside the prefix: nginx creates them at start, and /var/lib/nginx may not be ours.
function H.temp_paths()
  return "client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n"
    .. "  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n"
end

local MODULES = "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n"
  .. "load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n"

-- A generated config: o.workers, o.main (main-level lines), o.http (http-level), o.server (server-level).
function H.config(o)
  return table.concat({
    "worker_processes " .. (o.workers or 2) .. ";",
    "daemon on;", "pid logs/nginx.pid;", "error_log logs/error.log warn;", MODULES,
    o.main or "",
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;", "  " .. H.temp_paths(),
    '  lua_package_path "@DIR@/share/lua/5.1/?.lua;@DIR@/share/lua/5.1/?/init.lua;;";',
    '  lua_package_cpath "@DIR@/lib/lua/5.1/?.so;;";',
    "  lua_socket_log_errors off;",
    o.http or "",
    "  server {",
    "    listen 127.0.0.1:@PORT@" .. (o.reuseport and " reuseport" or "") .. ";",
    o.server or "",
    "  }",
    "}", "" }, "\n")
end

local function listening(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

-- What the workers of H.config's handlers load: rctasks, its core and the handler files.
H.STAGE = { "rctasks", "spec/ngx/handlers.lua", "spec/ngx/redis_handlers.lua" }

-- Install `parts` from the checkout at `root` into the prefix `dir` (scripts/stage) or raise.
function H.stage(dir, parts, root)
  local cmd = (root or H.ROOT) .. "/scripts/stage " .. dir .. " " .. table.concat(parts, " ")
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  if not p:close() then error(cmd .. " failed: " .. out, 2) end
end

-- Start nginx from `conf` (text with @PORT@, @DIR@, @ROOT@). opts.env: variables for nginx's
-- environment (keys go here, never on a command line that is printed); opts.stage: what its
-- workers load (default H.STAGE), from the checkout opts.root (default H.ROOT). Returns a server object.
function H.start(conf, opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local staged, err = pcall(H.stage, dir, opts.stage or H.STAGE, opts.root)
  if not staged then sh("rm -rf " .. dir); error(err, 2) end
  assert(sh("mkdir -p " .. dir .. "/logs"))
  local envs = {}
  for k, v in pairs(opts.env or {}) do
    assert(tostring(v):match("^[%w%-_.:/]*$"), "env value with shell characters")
    envs[#envs + 1] = k .. "='" .. v .. "'"
  end
  for _ = 1, 5 do
    local port = H.free_port()
    local text = conf:gsub("@PORT@", port):gsub("@DIR@", dir):gsub("@ROOT@", H.ROOT)
    write(dir .. "/nginx.conf", text)
    write(dir .. "/logs/error.log", "")
    local cmd = (#envs > 0 and ("env " .. table.concat(envs, " ") .. " ") or "")
      .. "nginx -p " .. dir .. " -c " .. dir .. "/nginx.conf -e " .. dir .. "/logs/error.log"
    if sh(cmd) then
      for _ = 1, 100 do
        if listening(port) then
          local srv = setmetatable({ port = port, dir = dir, base = "http://127.0.0.1:" .. port }, { __index = H })
          return srv
        end
        socket.sleep(0.05)
      end
    end
    local log = read(dir .. "/logs/error.log") or ""
    local pid = read(dir .. "/logs/nginx.pid")
    if pid then sh("kill -TERM " .. pid:match("%d+")) end
    if not log:find("Address already in use", 1, true) then
      error("nginx did not start:\n" .. log)
    end
  end
  error("nginx did not start: no free port after 5 tries")
end

-- Stop by pid file, wait for the master to go, remove the prefix.
function H.stop(srv)
  local pid = read(srv.dir .. "/logs/nginx.pid")
  pid = pid and pid:match("%d+")
  if pid then
    sh("kill -TERM " .. pid)
    for _ = 1, 100 do
      if not sh("kill -0 " .. pid) then break end
      socket.sleep(0.05)
    end
    if sh("kill -0 " .. pid) then sh("kill -KILL " .. pid) end
  end
  if os.getenv("RCTASKS_NGX_KEEP") then return end
  sh("rm -rf " .. srv.dir)
end

-- A reload (SIGHUP): new workers start with the config, the old ones finish and exit. true once
-- the master answers again.
function H.reload(srv)
  local pid = read(srv.dir .. "/logs/nginx.pid")
  pid = pid and pid:match("%d+")
  if not pid or not sh("kill -HUP " .. pid) then return false end
  socket.sleep(0.3)
  for _ = 1, 100 do
    if listening(srv.port) then return true end
    socket.sleep(0.05)
  end
  return false
end

function H.log(srv) return read(srv.dir .. "/logs/error.log") or "" end

-- One HTTP/1.0 exchange (nginx then neither chunks nor keeps the connection), a POST with `body`
-- (default empty): status, body (decoded when JSON), headers | nil, err.
function H.request(srv, method, path, headers, timeout, body)
  local c = socket.tcp()
  c:settimeout(timeout or 30)
  local ok, err = c:connect("127.0.0.1", srv.port)
  if not ok then c:close(); return nil, err end
  local lines = { method .. " " .. path .. " HTTP/1.0", "Host: 127.0.0.1:" .. srv.port }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if method == "POST" then lines[#lines + 1] = "Content-Length: " .. #(body or "") end
  ok, err = c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or ""))
  if not ok then c:close(); return nil, err end
  local data, rerr, partial = c:receive("*a")
  c:close()
  data = data or partial
  if not data or data == "" then return nil, rerr end
  local head, answer = data:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil, "no header block" end
  local status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)"))
  local h = {}
  for k, v in head:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do h[k:lower()] = v end
  local v = (h["content-type"] or ""):find("json", 1, true) and sim.decode(answer) or answer
  return status, v, h
end

function H.get(srv, path, headers, timeout) return H.request(srv, "GET", path, headers, timeout) end
function H.post(srv, path, headers, timeout, body) return H.request(srv, "POST", path, headers, timeout, body) end

-- Headers that name a test account to the handlers (spec/ngx/handlers.lua).
function H.account_headers(acct, extra)
  local h = { ["x-test-key"] = acct.key, ["x-test-secret"] = acct.secret, ["x-test-url"] = sim.url() }
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

-- The sim's TLS URL by host name: certificates of IP-address URLs cannot be verified over cosockets.
function H.tls_url_by_name()
  return (sim.tls_url():gsub("^https://127%.0%.0%.1:", "https://localhost:"))
end

-- Open a request without reading the answer (for many in flight at once).
function H.open(srv, path, headers)
  local c = socket.tcp()
  c:settimeout(60)
  assert(c:connect("127.0.0.1", srv.port))
  local lines = { "GET " .. path .. " HTTP/1.0", "Host: 127.0.0.1" } -- 1.0: no chunking, closes after
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  return c
end

-- Read the whole answer of H.open: status, body.
function H.finish(c)
  local data, err, partial = c:receive("*a")
  c:close()
  data = data or partial
  if not data then return nil, err end
  local status = tonumber(data:match("^HTTP/1%.%d (%d%d%d)"))
  local body = data:match("\r\n\r\n(.*)$") or ""
  return status, body
end

return H
