-- rctasks.transport.ngx: HTTP/1.1 over OpenResty cosockets, the default inside nginx. Every wait
-- (connect, TLS handshake, send, receive) yields to nginx's event loop, so a worker keeps serving
-- other requests meanwhile. Connections go back to the worker's keep-alive pool when reusable.
--
-- Failures are `nil, err` with err.kind "transport" and err.code one of:
--   phase       called where nginx has no cosockets (init, init_worker, set, log, filters, ...)
--   resolve     the host name did not resolve (or no `resolver` directive in nginx.conf)
--   connect     the TCP connection failed (refused, unreachable)
--   tls         the TLS handshake failed (certificate not trusted, host name mismatch, protocol)
--   timeout     connect, handshake, send or receive ran past the request's deadline (one
--               deadline for the whole request, however slowly the server trickles bytes)
--   closed      the server closed the connection before the whole response arrived
--   too_large   the body is larger than max_body
--   bad_response the bytes received are not an HTTP/1.x response we can read
--   send        the request could not be written
--   bad_url     the URL is not an http(s) URL this transport can use
-- err.unsent is true only when the request surely never reached the server.
local defaults = require "rctasks.defaults"
local errors = require "rctasks.errors"
local http1 = require "rctasks.transport.http1"
local url = require "rctasks.url"

local ngx = rawget(_G, "ngx")

local M = {}
M.__index = M

-- Phases where ngx_lua offers cosockets (lua-nginx-module docs, per directive).
M.PHASES = { rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
             ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }

local MAX_LINE = defaults.request.max_line     -- status, header and chunk-size lines
local MAX_HEAD = defaults.request.max_header  -- the whole header block (same cap as the C client)
local MAX_INFORMATIONAL = 8                   -- 1xx answers skipped before the real one
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }

local function fail(code, message, fields)
  local f = fields or {}
  f.code, f.message = code, message
  if f.retryable == nil then f.retryable = false end
  f.unsent = f.unsent == true
  return nil, errors.new("transport", f)
end

local function version_string(v)
  if type(v) ~= "number" then return "unknown" end
  return string.format("%d.%d.%d", math.floor(v / 1000000), math.floor(v / 1000) % 1000, v % 1000)
end

-- ngx.new{timeout=, connect_timeout=, ca_file=, max_body=, keepalive_timeout=, pool_size=, resolve=}
-- ca_file: nginx verifies against `lua_ssl_trusted_certificate`; ca_file only keeps connections
-- verified against different stores in different pools (name the same file as that directive).
-- resolve: { ["host"] = "ip" } connects to ip but verifies and sends SNI/Host for host.
function M.new(opts)
  if not (ngx and ngx.socket and ngx.socket.tcp) then
    error("rctasks.transport.ngx: needs OpenResty / nginx's Lua module (no ngx.socket)", 2)
  end
  opts = opts or {}
  local self = setmetatable({
    timeout = opts.timeout or defaults.request.timeout,
    connect_timeout = opts.connect_timeout or defaults.request.connect_timeout,
    ca_file = opts.ca_file,
    max_body = opts.max_body or defaults.request.max_body,
    keepalive_timeout = opts.keepalive_timeout or defaults.request.keepalive_timeout,
    pool_size = opts.pool_size or defaults.request.pool_size,
    resolve = opts.resolve or {},
    agent = "ngx_lua/" .. version_string(ngx.config and ngx.config.ngx_lua_version),
  }, M)
  for _, k in ipairs({ "timeout", "connect_timeout", "max_body", "keepalive_timeout", "pool_size" }) do
    local v = self[k]
    if type(v) ~= "number" or v ~= v or v <= 0 then
      error("rctasks.transport.ngx: option '" .. k .. "' must be a positive number", 2)
    end
  end
  if type(self.resolve) ~= "table" then error("rctasks.transport.ngx: option 'resolve' must be a table", 2) end
  return self
end

local function is_ip(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

-- Milliseconds left before `deadline` (ngx.now seconds), at least 1 (0 would mean "no timeout").
local function left_ms(deadline)
  ngx.update_time()
  local ms = math.ceil((deadline - ngx.now()) * 1000)
  return ms < 1 and 1 or ms
end

-- Cosocket error text -> a transport error (what `step` was doing decides code and unsent).
local function io_error(step, err, got_bytes)
  local unsent = (step == "connect" or step == "tls") -- nothing of the request was written yet
  if err == "timeout" then
    return fail("timeout", step .. " not done within the request's timeout", { retryable = true, unsent = unsent })
  end
  if step == "connect" then
    if err:find("resolve", 1, true) or err:find("resolver", 1, true) then
      return fail("resolve", "could not resolve host: " .. err
        .. (err:find("no resolver", 1, true) and " (add a `resolver` directive to nginx.conf)" or ""),
        { retryable = not err:find("no resolver", 1, true), unsent = true })
    end
    return fail("connect", "connect failed: " .. err, { retryable = true, unsent = true })
  end
  if step == "tls" then
    local verify = err:find("certificate", 1, true) ~= nil
    return fail("tls", "TLS handshake failed: " .. err, { retryable = not verify, unsent = true })
  end
  if step == "send" then
    return fail(err == "closed" and "closed" or "send", "send failed: " .. err, { retryable = true })
  end
  if err == "closed" then
    local what = got_bytes and "connection closed before the response was complete"
      or "connection closed before any response"
    return fail("closed", what, { retryable = true })
  end
  return fail("closed", step .. " failed: " .. err, { retryable = true })
end

local function too_large(max_body)
  return fail("too_large", "response body larger than max_body (" .. max_body .. " bytes)")
end

------------------------------------------------------------------------------------------------
-- The reader: one buffer over sock:receiveany. A cosocket's read timeout restarts with every
-- packet, so each wait is armed with what is left of the request's deadline and the deadline is
-- checked before each one: a server trickling bytes is cut at the deadline all the same.
-- Every byte is searched and copied a bounded number of times (lines are looked for in new data
-- only), and every read is capped, so reading is linear in what the server sends.

local RECV = 65536 -- most bytes asked of one receiveany

local Reader = {}
Reader.__index = Reader

local function reader(sock, deadline)
  return setmetatable({ sock = sock, deadline = deadline, buf = "", pos = 1, got = 0 }, Reader)
end

-- Unread bytes in the buffer (a connection holding some cannot go back to the pool).
function Reader:pending() return #self.buf - self.pos + 1 end

-- Replace the (consumed) buffer with what the socket has next, at most `max` bytes -> true | nil, err.
function Reader:fill(max)
  ngx.update_time()
  if ngx.now() >= self.deadline then return nil, "timeout" end
  self.sock:settimeout(left_ms(self.deadline))
  local data, err = self.sock:receiveany(max or RECV)
  if not data then return nil, err end
  self.buf, self.pos, self.got = data, 1, self.got + #data
  return true
end

-- One line without its LF (and the CR before it), at most `max` bytes -> line | nil, err
-- ("too long", or the socket's error).
function Reader:line(max)
  local parts, n = nil, 0
  while true do
    local buf, pos = self.buf, self.pos
    local len = #buf
    if pos <= len then
      local nl = buf:find("\n", pos, true)
      local stop = (nl or len + 1) - 1
      n = n + stop - pos + 1
      if n > max + 1 then return nil, "too long" end -- +1: the CR is not part of the line
      local piece = buf:sub(pos, stop)
      if nl then
        self.pos = nl + 1
        local line = parts and (table.concat(parts) .. piece) or piece
        if line:byte(-1) == 13 then line = line:sub(1, -2) end
        if #line > max then return nil, "too long" end
        return line
      end
      parts = parts or {}
      parts[#parts + 1] = piece
      self.pos = len + 1
    end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Exactly `n` bytes -> string | nil, err. Never asks the socket for more than it needs.
function Reader:bytes(n)
  local parts, need = {}, n
  while need > 0 do
    local buf, pos = self.buf, self.pos
    local have = #buf - pos + 1
    if have <= 0 then
      local ok, err = self:fill(math.min(need, RECV))
      if not ok then return nil, err end
    else
      local take = have < need and have or need
      parts[#parts + 1] = (pos == 1 and take == #buf) and buf or buf:sub(pos, pos + take - 1)
      self.pos, need = pos + take, need - take
    end
  end
  return table.concat(parts)
end

-- Everything until the server closes, at most `max` bytes -> string | nil, err ("too large", ...).
function Reader:rest(max)
  local parts, n = {}, self:pending()
  if n > 0 then parts[1] = self.buf:sub(self.pos) end
  self.buf, self.pos = "", 1
  while n <= max do
    local ok, err = self:fill()
    if not ok then
      if err == "closed" then return table.concat(parts) end
      return nil, err
    end
    n = n + #self.buf
    parts[#parts + 1] = self.buf
    self.buf, self.pos = "", 1
  end
  return nil, "too large"
end

-- The reader's error -> a transport error (nil, err).
local function read_error(r, err, what)
  if err == "too long" then return fail("bad_response", what .. " longer than " .. MAX_LINE .. " bytes") end
  return io_error("receive", err, r.got > 0)
end

------------------------------------------------------------------------------------------------
-- Reading one response

-- Header block -> status, headers map (lower-cased names, repeats joined by ", "), http minor.
local function read_head(r)
  local line, err = r:line(MAX_LINE)
  if not line then return read_error(r, err, "status line") end
  local status, minor = http1.status_line(line)
  if not status then return fail("bad_response", minor) end
  local lines, n, total = {}, 0, #line + 2
  while true do
    line, err = r:line(MAX_LINE)
    if not line then return read_error(r, err, "header line") end
    if line == "" then break end
    total = total + #line + 2
    if total > MAX_HEAD then return fail("bad_response", "response headers larger than " .. MAX_HEAD .. " bytes") end
    n = n + 1
    lines[n] = line
  end
  local headers, why = http1.fields(lines, 1, n)
  if not headers then return fail("bad_response", why) end
  return status, headers, minor
end

-- Chunked body, every size bounded; returns body or nil, err.
local function read_chunked(r, max_body)
  local parts, n = {}, 0
  while true do
    local line, err = r:line(MAX_LINE)
    if not line then return read_error(r, err, "chunk-size line") end
    local size, why = http1.chunk_size(line)
    if not size then return fail("bad_response", why) end
    if size == 0 then break end
    if n + size > max_body then return too_large(max_body) end
    local data
    data, err = r:bytes(size)
    if not data then return read_error(r, err) end
    parts[#parts + 1] = data
    n = n + size
    line, err = r:line(0)
    if not line then
      if err == "too long" then return fail("bad_response", "chunk not followed by CRLF") end
      return read_error(r, err)
    end
  end
  local trailers = 0
  while true do -- trailer section, ignored, ends with an empty line
    local line, err = r:line(MAX_LINE)
    if not line then return read_error(r, err, "trailer line") end
    if line == "" then break end
    trailers = trailers + #line + 2
    if trailers > MAX_HEAD then return fail("bad_response", "chunked trailers too large") end
  end
  return table.concat(parts)
end

-- TLS with verification and SNI -> true | nil, err. resty.core 0.1.25 asserts (raises) when a
-- handshake that completed at once then failed verification, and with reused_session=false it
-- skips that check: pcall keeps the check and turns the raise into the error it stands for.
local function handshake(sock, host)
  local ok, sess, err = pcall(sock.sslhandshake, sock, nil, host, true)
  if not ok then
    return fail("tls", "TLS handshake failed: certificate not verified (untrusted CA or host name mismatch)",
      { unsent = true })
  end
  if sess == nil then
    if err == "timeout" then return io_error("tls", err) end
    return fail("tls", "TLS handshake failed: " .. tostring(err),
      { unsent = true, retryable = not tostring(err):find("certificate", 1, true) })
  end
  return true
end

-- The body after `headers` -> body, reusable | nil, err.
local function read_body(r, headers, max_body)
  local te, cl = headers["transfer-encoding"], headers["content-length"]
  if te then
    local codings = http1.tokens(te)
    if #codings ~= 1 or codings[1] ~= "chunked" then
      return fail("bad_response", "unsupported transfer-encoding: " .. http1.quoted(te))
    end
    local body, err = read_chunked(r, max_body)
    if not body then return nil, err end
    -- with both framings the length is the chunking's, and the connection is not trusted again
    return body, cl == nil
  end
  if cl then
    local len, why = http1.content_length(cl)
    if not len then return fail("bad_response", why) end
    if len > max_body then return too_large(max_body) end
    local body, err = r:bytes(len)
    if not body then return read_error(r, err) end
    return body, true
  end
  local body, err = r:rest(max_body) -- no length given: until the server closes, never reusable
  if not body then
    if err == "too large" then return too_large(max_body) end
    return read_error(r, err)
  end
  return body, false
end

-- One exchange on a connected socket: returns res, reusable | nil, err, nothing_received.
local function exchange(self, sock, req, host_header, target, deadline)
  local lines = { req.method .. " " .. target .. " HTTP/1.1", "Host: " .. host_header }
  for k, v in pairs(req.headers or {}) do
    local lk = k:lower()
    if lk ~= "host" and lk ~= "content-length" and lk ~= "connection" and lk ~= "transfer-encoding" then
      v = tostring(v)
      if k:find("[%c:]") or v:find("[%c]") then return fail("send", "header '" .. k .. "' has control characters") end
      lines[#lines + 1] = k .. ": " .. v
    end
  end
  local body = req.body
  if body ~= nil then
    lines[#lines + 1] = "Content-Length: " .. #body
  elseif req.method == "POST" or req.method == "PUT" or req.method == "PATCH" then
    lines[#lines + 1] = "Content-Length: 0"
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""
  sock:settimeout(left_ms(deadline))
  local ok, err = sock:send(table.concat(lines, "\r\n"))
  if not ok then return nil, select(2, io_error("send", err)), true end

  local r = reader(sock, deadline)
  local status, headers, minor
  for _ = 1, MAX_INFORMATIONAL + 1 do
    status, headers, minor = read_head(r)
    if not status then
      -- nothing at all came back: a pooled connection the server had already closed
      return nil, headers, headers.code == "closed" and r.got == 0
    end
    if status >= 200 or status == 101 then break end
    status = nil
  end
  if not status then return fail("bad_response", "too many informational (1xx) responses") end

  local body_out, reusable = "", true
  if not (req.method == "HEAD" or status == 204 or status == 304 or status < 200) then
    body_out, reusable = read_body(r, headers, self.max_body)
    if not body_out then return nil, reusable end
  end
  -- bytes past the answer mean the framing was not what it said: that connection is not reused
  reusable = reusable and minor >= 1 and not http1.has_token(headers.connection, "close") and r:pending() == 0
  return { status = status, headers = headers, body = body_out }, reusable
end

function M:request(req)
  local phase = ngx.get_phase()
  if not M.PHASES[phase] then
    return fail("phase", "no cosockets in nginx's '" .. phase .. "' phase: run rctasks from a timer "
      .. "(ngx.timer.at) or from a rewrite/access/content handler", { unsent = true })
  end
  if type(req) ~= "table" or type(req.method) ~= "string" or type(req.url) ~= "string" then
    error("rctasks.transport.ngx: request wants {method=, url=, headers=, body=, timeout=}", 2)
  end
  if not req.method:match("^%u+$") then error("rctasks.transport.ngx: bad method", 2) end
  local u, why = url.parse(req.url)
  if not u then return fail("bad_url", "cannot use the request's URL (" .. why .. ")", { unsent = true }) end
  local host, port, target, authority = u.host, u.port, u.target, u.authority
  local tls = u.scheme == "https"

  ngx.update_time()
  local deadline = ngx.now() + (req.timeout or self.timeout)
  local addr = self.resolve[host] or (host == "localhost" and "127.0.0.1") or host
  -- Verified connections to one endpoint under one trust store share a pool; nothing else does.
  local pool = "rctasks:" .. (tls and "https" or "http") .. ":" .. host .. ":" .. port .. ":" .. addr
    .. (tls and self.ca_file and (":" .. self.ca_file) or "")

  -- A POST (or PATCH) rides a connection of its own, never one from the pool: a pooled connection
  -- the server is closing could swallow it, and it cannot be sent again. (A pool nothing is ever
  -- kept in gives a fresh connection.)
  local once = not IDEMPOTENT[req.method]
  if once then pool = pool .. ":once" end

  for attempt = 1, 2 do
    local sock = ngx.socket.tcp()
    local cto = math.min(self.connect_timeout * 1000, left_ms(deadline))
    sock:settimeouts(cto, left_ms(deadline), left_ms(deadline))
    local ok, err = sock:connect(addr, port, { pool = pool, pool_size = self.pool_size })
    if not ok then return io_error("connect", err) end
    local reused = (sock:getreusedtimes() or 0) > 0
    if tls and not reused then
      sock:settimeout(math.min(self.connect_timeout * 1000, left_ms(deadline)))
      local e1, e2 = handshake(sock, host)
      if e2 then
        sock:close()
        if is_ip(host) then
          e2.message = e2.message .. " (certificates of IP-address URLs cannot be verified here: use a host name)"
        end
        return e1, e2
      end
    end
    local res, reusable_or_err, nothing = exchange(self, sock, req, authority, target, deadline)
    if res then
      if reusable_or_err and not once then
        sock:setkeepalive(self.keepalive_timeout * 1000, self.pool_size)
      else
        sock:close()
      end
      return res
    end
    sock:close()
    -- a pooled connection the server closed while idle: try once on a fresh one, unless the
    -- request is not idempotent (a POST might have been processed before the connection died)
    if not (reused and nothing and attempt == 1 and IDEMPOTENT[req.method]) then return nil, reusable_or_err end
  end
end

-- Nothing to free: cosockets belong to requests, the pool to the worker.
function M.close() end

return M
