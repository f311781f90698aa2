-- core.http: the libcurl client, against a throwaway nginx this spec starts on free loopback ports,
-- and scripted servers (helpers/scripted) for answers nginx would never send.
local core = require "rctasks.core"
local curl = require "rctasks.transport.curl"
local scripted = require "helpers.scripted"
local socket = require "socket"
local sys = require "helpers.sys"
local sh = sys.sh
local free_port = sys.free_port
local read = sys.read
local write = sys.write

local TASK = '{"taskId":"5f1c1a1e-2b4d-4c1e-9a0b-3c7d2e8f9a10","commandType":"subscriptionCreateRequest",'
  .. '"status":"processing-completed","description":"Task request completed successfully",'
  .. '"timestamp":"2024-03-01T10:15:30.123Z","response":{"resourceId":51055029},'
  .. '"links":[{"rel":"self","type":"GET","href":"https://api.redislabs.com/v1/tasks/5f1c"}]}'



local NGINX_CONF = [[
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
  server {
    listen 127.0.0.1:@PORT@;
    listen 127.0.0.1:@TLSPORT@ ssl;
    ssl_certificate @DIR@/cert.pem;
    ssl_certificate_key @DIR@/key.pem;
    root @DIR@/html;
    location = /task { default_type application/json; return 200 '@TASK@'; }
    location = /headers {
      add_header X-Multi one; add_header X-Multi two; add_header X-Mixed-Case Yes;
      return 200 'ok';
    }
    location = /method { return 200 $request_method; }
    location = /ua { return 200 $http_user_agent; }
    location = /hdr { return 200 '[$http_x_test]'; }
    location = /redirect { return 302 /task; }
    location = /echo {
      content_by_lua_block {
        ngx.req.read_body()
        ngx.print(ngx.req.get_method(), " ", ngx.var.http_content_length or "-", " ",
                  ngx.req.get_body_data() or "")
      }
    }
    location = /chunked { content_by_lua_block { for _ = 1, 64 do ngx.print(("x"):rep(4096)) ngx.flush() end } }
    location = /slow { content_by_lua_block { ngx.sleep(5) ngx.say("late") } }
  }
}
]]

local srv = {}

-- core.http with the library's defaults (it has none of its own) under the given options.
local function http(opts) return core.http(curl.options(opts)) end

local function start_nginx()
  srv.dir = os.tmpname() .. ".rctasks-http"
  os.remove(srv.dir:gsub("%.rctasks%-http$", ""))
  assert(sh("mkdir -p " .. srv.dir .. "/logs " .. srv.dir .. "/conf " .. srv.dir .. "/tmp " .. srv.dir .. "/html"))
  assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
    .. " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
    .. " -keyout " .. srv.dir .. "/key.pem -out " .. srv.dir .. "/cert.pem"), "openssl failed")
  write(srv.dir .. "/html/big", ("y"):rep(300000))
  srv.port, srv.tls_port = free_port(), free_port()
  local conf = NGINX_CONF:gsub("@(%w+)@", {
    PORT = tostring(srv.port), TLSPORT = tostring(srv.tls_port), DIR = srv.dir, TASK = TASK })
  write(srv.dir .. "/conf/nginx.conf", conf)
  assert(sh("/usr/sbin/nginx -p " .. srv.dir .. " -c conf/nginx.conf -e logs/error.log"),
    "nginx failed to start: " .. tostring(read(srv.dir .. "/logs/error.log")))
  -- wait (bounded) until the listener answers
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", srv.port)
    if c then c:close() break end
    socket.sleep(0.05)
  end
  srv.base = "http://127.0.0.1:" .. srv.port
  srv.tls = "https://127.0.0.1:" .. srv.tls_port
end

local function stop_nginx()
  local pid = srv.dir and read(srv.dir .. "/logs/nginx.pid")
  if pid and pid:match("^%d+") then
    sh("kill -TERM " .. pid:match("^%d+"))
    for _ = 1, 100 do
      if not read(srv.dir .. "/logs/nginx.pid") then break end
      socket.sleep(0.05)
    end
  end
  if srv.dir and srv.dir:match("%.rctasks%-http$") then sh("rm -rf " .. srv.dir) end
end

describe("core.http", function()
  setup(start_nginx)
  teardown(stop_nginx)

  local h
  before_each(function() h = assert(http{ timeout = 10 }) end)
  after_each(function() h:close() end)

  it("GETs a JSON body with its status and headers", function()
    local status, headers, body = h:request("GET", srv.base .. "/task")
    assert.equal(200, status)
    if math.type then assert.equal("integer", math.type(status)) end
    assert.equal(TASK, body)
    assert.equal("application/json", headers["content-type"])
    assert.equal(tostring(#TASK), headers["content-length"])
  end)

  it("lower-cases header names and joins repeated ones with a comma", function()
    local status, headers = h:request("GET", srv.base .. "/headers")
    assert.equal(200, status)
    assert.equal("one, two", headers["x-multi"])
    assert.equal("Yes", headers["x-mixed-case"])
    assert.is_nil(headers["X-Mixed-Case"])
  end)

  it("sends a POST body, then a plain GET on the same handle", function()
    local status, _, body = h:request("POST", srv.base .. "/echo", { ["Content-Type"] = "application/json" }, '{"a":1}')
    assert.equal(200, status)
    assert.equal('POST 7 {"a":1}', body)
    status, _, body = h:request("GET", srv.base .. "/method")
    assert.equal(200, status)
    assert.equal("GET", body)
    assert.equal(2, h:stats().requests)
  end)

  it("sends a GET with a body as a GET, never as a POST", function()
    local status, _, body = h:request("GET", srv.base .. "/echo", nil, "abc")
    assert.equal(200, status)
    assert.matches("^GET ", body)
  end)

  it("sends PUT, PATCH and DELETE as those methods", function()
    for _, m in ipairs{ "PUT", "PATCH", "DELETE" } do
      local _, _, body = h:request(m, srv.base .. "/method")
      assert.equal(m, body)
    end
    assert.equal("GET", select(3, h:request("GET", srv.base .. "/method")))
  end)

  it("sends a bodiless POST with Content-Length 0", function()
    local _, _, body = h:request("POST", srv.base .. "/echo")
    assert.equal("POST 0 ", body)
  end)

  it("answers HEAD with the status and an empty body", function()
    local status, headers, body = h:request("HEAD", srv.base .. "/task")
    assert.equal(200, status)
    assert.equal(tostring(#TASK), headers["content-length"])
    assert.equal("", body)
  end)

  it("sends the caller's headers", function()
    local _, _, body = h:request("GET", srv.base .. "/hdr", { ["X-Test"] = "hello world" })
    assert.equal("[hello world]", body)
  end)

  it("sends each request's own URL and headers when they change on one handle", function()
    local function hdr(headers) return select(3, h:request("GET", srv.base .. "/hdr", headers)) end
    assert.equal("[a]", hdr({ ["X-Test"] = "a" }))
    assert.equal("[a]", hdr({ ["X-Test"] = "a" })) -- the same again: the kept header list
    assert.equal("[b]", hdr({ ["X-Test"] = "b" })) -- same length, other value
    assert.equal("[]", hdr(nil))                    -- a header dropped is not sent any more
    assert.equal("[longer value]", hdr({ ["X-Test"] = "longer value", ["X-Other"] = "1" }))
    assert.equal("GET", select(3, h:request("GET", srv.base .. "/method", { ["X-Test"] = "c" })))
    assert.equal("[a]", hdr({ ["X-Test"] = "a" }))  -- back to an earlier URL and header set
    local _, headers = h:request("GET", srv.base .. "/headers")
    assert.equal("one, two", headers["x-multi"])
    assert.equal("[d]", hdr({ ["X-Test"] = "d" }))
    assert.equal(1, h:stats().connects)
  end)

  it("reuses one connection for 20 requests (keep-alive)", function()
    for _ = 1, 20 do
      assert.equal(200, (h:request("GET", srv.base .. "/task")))
    end
    local st = h:stats()
    assert.equal(20, st.requests)
    assert.equal(1, st.connects)
  end)

  it("opens a new connection for each fresh handle", function()
    local total = 0
    for _ = 1, 3 do
      local c = http()
      assert.equal(200, (c:request("GET", srv.base .. "/task")))
      total = total + c:stats().connects
      c:close()
    end
    assert.equal(3, total)
  end)

  it("reports a refused connection as CURLE_COULDNT_CONNECT", function()
    local port = free_port()
    local ok, code, msg = h:request("GET", "http://127.0.0.1:" .. port .. "/x", { ["x-api-key"] = "SECRETKEY123" })
    assert.is_nil(ok)
    assert.equal("CURLE_COULDNT_CONNECT", code)
    assert.is_string(msg)
    assert.is_nil(msg:find("SECRETKEY123", 1, true))
  end)

  it("times out a stalled response with CURLE_OPERATION_TIMEDOUT before the server answers", function()
    local t0 = core.now()
    local ok, code = h:request("GET", srv.base .. "/slow", nil, nil, 0.3)
    assert.is_nil(ok)
    assert.equal("CURLE_OPERATION_TIMEDOUT", code)
    assert.is_true(core.now() - t0 < 4.5) -- the server sleeps 5 s: the client gave up first
  end)

  it("honours the client's default timeout", function()
    local c = http{ timeout = 0.3 }
    local ok, code = c:request("GET", srv.base .. "/slow")
    c:close()
    assert.is_nil(ok)
    assert.equal("CURLE_OPERATION_TIMEDOUT", code)
  end)

  it("caps a large body with CURLE_FILESIZE_EXCEEDED (known length and chunked)", function()
    local c = http{ max_body = 100000 }
    for _, path in ipairs{ "/big", "/chunked" } do
      local ok, code, msg = c:request("GET", srv.base .. path)
      assert.is_nil(ok)
      assert.equal("CURLE_FILESIZE_EXCEEDED", code)
      assert.equal("response body larger than 100000 bytes", msg)
    end
    -- the handle still works afterwards
    assert.equal(200, (c:request("GET", srv.base .. "/task")))
    c:close()
  end)

  it("accepts a body of exactly max_body bytes", function()
    local c = http{ max_body = #TASK }
    local status, _, body = c:request("GET", srv.base .. "/task")
    assert.equal(200, status)
    assert.equal(TASK, body)
    c:close()
    c = http{ max_body = 4096 * 64 }
    assert.equal(4096 * 64, #select(3, c:request("GET", srv.base .. "/chunked")))
    c:close()
  end)

  it("receives bodies larger than its buffer and keeps working", function()
    local _, _, body = h:request("GET", srv.base .. "/big")
    assert.equal(300000, #body)
    assert.equal(TASK, select(3, h:request("GET", srv.base .. "/task")))
  end)

  it("returns a 302 without following it", function()
    local status, headers = h:request("GET", srv.base .. "/redirect")
    assert.equal(302, status)
    assert.matches("/task$", headers["location"])
  end)

  it("refuses a header value with CR or LF (header injection)", function()
    assert.has_error(function()
      h:request("GET", srv.base .. "/task", { ["X-Test"] = "a\r\nX-Evil: 1" })
    end)
    assert.has_error(function() h:request("GET", srv.base .. "/task", { ["X-Test"] = "a\nb" }) end)
    assert.has_error(function() h:request("GET", srv.base .. "/task", { ["Bad Name"] = "a" }) end)
    -- the handle is still usable after the raise
    assert.equal(200, (h:request("GET", srv.base .. "/task")))
  end)

  it("never puts a header value in a misuse error", function()
    local ok, err = pcall(h.request, h, "GET", srv.base .. "/task", { ["x-api-key"] = "SECRETKEY123\n" })
    assert.is_false(ok)
    assert.is_nil(tostring(err):find("SECRETKEY123", 1, true))
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() h:request("GET") end)
    assert.has_error(function() h:request(42, srv.base .. "/task") end)
    assert.has_error(function() h:request("GE T", srv.base .. "/task") end)
    assert.has_error(function() h:request("GET", srv.base .. "/task", "x-test: 1") end)
    assert.has_error(function() h:request("GET", srv.base .. "/task", { ["X-Test"] = 1 }) end)
    assert.has_error(function() h:request("GET", srv.base .. "/task", nil, {}) end)
    assert.has_error(function() h:request("GET", srv.base .. "/task", nil, nil, -1) end)
    assert.has_error(function() h.request({}, "GET", srv.base .. "/task") end)
  end)

  it("raises on unknown or mistyped constructor options", function()
    assert.has_error(function() http{ timeuot = 1 } end, "rctasks.http: unknown option 'timeuot'")
    assert.has_error(function() http{ timeout = "1" } end)
    assert.has_error(function() http{ timeout = 0 } end)
    assert.has_error(function() http{ max_body = 1.5 } end)
    assert.has_error(function() http{ max_header = 0 } end)
    assert.has_error(function() http{ ca_file = 1 } end)
    assert.has_error(function() core.http(1) end)
  end)

  it("has no defaults of its own: each of the four numbers must be given", function()
    assert.has_error(function() core.http() end)
    for _, k in ipairs({ "timeout", "connect_timeout", "max_body", "max_header" }) do
      local opts = curl.options()
      opts[k] = nil
      assert.has_error(function() core.http(opts) end, "rctasks.http: option '" .. k .. "' is missing")
    end
    assert(core.http(curl.options())):close()
  end)

  it("caps the response header block at max_header", function()
    local c = http{ max_header = 100 }
    local ok, code, msg = c:request("GET", srv.base .. "/task")
    assert.is_nil(ok)
    assert.equal("CURLE_FILESIZE_EXCEEDED", code)
    assert.equal("response headers larger than 100 bytes", msg)
    c:close()
    assert.equal(200, (h:request("GET", srv.base .. "/task")))
  end)

  it("reads every URL on its own, never relative to the previous request's", function()
    assert.equal(200, (h:request("GET", srv.base .. "/task")))
    for _, u in ipairs({ "/method", "../method", "?q=1" }) do
      local ok, code = h:request("GET", u) -- a fresh handle cannot reach anything with these either
      assert.is_nil(ok, u)
      assert.is_string(code, u)
    end
    assert.has_error(function() h:request("GET", srv.base .. "/task\0/../method") end)
  end)

  it("refuses non-HTTP URLs", function()
    local ok, code = h:request("GET", "file:///etc/passwd")
    assert.is_nil(ok)
    assert.equal("CURLE_UNSUPPORTED_PROTOCOL", code)
  end)

  it("raises on a closed handle, and closing twice is fine", function()
    local c = http()
    assert.equal("rctasks.http (open)", tostring(c))
    c:close()
    c:close()
    assert.equal("rctasks.http (closed)", tostring(c))
    assert.has_error(function() c:request("GET", srv.base .. "/task") end, "rctasks.http: client is closed")
    assert.equal(0, c:stats().requests)
  end)

  it("closes through __close and when garbage-collected", function()
    local c = http()
    getmetatable(c).__close(c, nil)
    assert.equal("rctasks.http (closed)", tostring(c))
    if _VERSION == "Lua 5.4" then
      local f = assert(load([[
        local http, url = ...
        local x <close> = http()
        x:request("GET", url)
        return x
      ]]))
      assert.equal("rctasks.http (closed)", tostring(f(http, srv.base .. "/task")))
    end
    for _ = 1, 50 do http():request("GET", srv.base .. "/task") end
    collectgarbage()
    collectgarbage()
    assert.equal(200, (h:request("GET", srv.base .. "/task")))
  end)

  it("sends a User-Agent naming rctasks, its version and libcurl", function()
    local _, _, body = h:request("GET", srv.base .. "/ua")
    assert.equal("rctasks/" .. core.version .. " libcurl/" .. core.curl_version, body)
    local c = http{ user_agent = "my-tool/2" }
    assert.equal("my-tool/2", select(3, c:request("GET", srv.base .. "/ua")))
    c:close()
  end)

  it("verifies TLS: succeeds with the right ca_file", function()
    local c = http{ ca_file = srv.dir .. "/cert.pem" }
    local status, _, body = c:request("GET", srv.tls .. "/task")
    c:close()
    assert.equal(200, status)
    assert.equal(TASK, body)
  end)

  it("verifies TLS: fails on a certificate it cannot trust", function()
    local ok, code = h:request("GET", srv.tls .. "/task")
    assert.is_nil(ok)
    assert.matches("^CURLE_PEER_FAILED_VERIFICATION$", code)
  end)

  it("reports a missing ca_file as a certificate failure", function()
    local c = http{ ca_file = srv.dir .. "/no-such.pem" }
    local ok, code = c:request("GET", srv.tls .. "/task")
    c:close()
    assert.is_nil(ok)
    assert.matches("^CURLE_SSL_CACERT", code)
  end)
end)

describe("core.http status lines", function()
  -- A scripted server that sends the k-th answer of `answers` to the k-th connection, then closes.
  local function serve(answers)
    local list = {}
    for i, a in ipairs(answers) do list[i] = ("%q"):format(a) end
    return scripted.start("local answers = {" .. table.concat(list, ",") .. [[}
      local k = 0
      return function(conn)
        k = k + 1
        local answer = answers[k]
        if conn:request() then conn:send(answer) end
        conn:close()
      end
    ]])
  end
  local TAIL = "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok" -- the rest of each answer

  it("fails on a malformed status line with CURLE_WEIRD_SERVER_REPLY, never reading it as a status", function()
    local bad = { "HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "HTTP/1.1 200x OK", "HTTP/1.1  200 OK", "http/1.1 200 OK",
                  "HTTP/1.12 200 OK", "HTTP/1.1 2OO OK", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 20x OK",
                  "HTTP/1.1 999 Odd", "HTTP/1.1 600 Odd", "HTTP/1.1 099 Odd" } -- out of 100..599, as over cosockets
    local answers = {}
    for i, line in ipairs(bad) do answers[i] = line .. TAIL end
    local server = serve(answers)
    finally(function() server:stop() end)
    local h = http{ timeout = 5 }
    for _, line in ipairs(bad) do
      local ok, code, msg = h:request("GET", server.url .. "/")
      assert.is_nil(ok, line)
      assert.equal("CURLE_WEIRD_SERVER_REPLY", code, line)
      assert.equal("malformed status line", msg, line)
    end
    h:close()
  end)

  it("reads well-formed status lines, the final one after 1xx answers, and trailers as no status", function()
    local server = serve({
      "HTTP/1.1 200" .. TAIL,
      "HTTP/1.0 204 No Content\r\nConnection: close\r\n\r\n",
      "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 201 Created" .. TAIL,
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 1\r\n\r\n",
    })
    finally(function() server:stop() end)
    local h = http{ timeout = 5 }
    local function get() return h:request("GET", server.url .. "/") end
    local status, _, body = get()
    assert.equal(200, status)
    assert.equal("ok", body)
    assert.equal(204, (get()))
    local headers
    status, headers, body = get()
    assert.equal(201, status)
    assert.equal("ok", body)
    assert.is_nil(headers["x-interim"]) -- the map holds the final answer's headers only
    status, _, body = get()
    assert.equal(200, status)
    assert.equal("ok", body)
    h:close()
  end)
end)
