-- rctasks.redis: a small RESP2 client for the coordination store (rctasks.store.redis). One client
-- over either a LuaSocket TCP socket (plain Lua: one kept connection, probed before reuse and
-- replaced when the server has closed it) or an ngx.socket.tcp cosocket (inside nginx: every wait
-- yields, and connections go back to the worker's keep-alive pool), chosen by rctasks.env.ngx().
--   redis.new{ url = "redis://[[user]:password@]host[:port][/db]" | host=, port=, db=, username=,
--              password=, timeout = 5 (seconds: one deadline per call, connect included),
--              keepalive_timeout = 60, pool_size = 32 (cosockets) }
--   client:call("SET", k, v, "PX", ms)  -> reply | nil, err, kind
--   client:eval(script, keys, args)     -> reply | nil, err, kind (EVALSHA; EVAL on NOSCRIPT)
--   client:close()
-- Replies: a status or bulk string -> string; an integer -> number; an array -> table; a nil bulk
-- or nil array -> false (as in Redis's own Lua); an error inside an array -> { err = "..." }.
-- kind says what failed: "redis" (the server answered with an error reply: err is its text, e.g.
-- "ERR ...", "WRONGTYPE ...", and the connection stays usable), "auth" (AUTH or SELECT refused on a
-- new connection), "connect", "timeout", "closed" (the connection dropped mid-call), "protocol"
-- (the server sent what is not RESP2 within the caps below), "phase" (nginx has no cosockets here).
-- Nothing the server sends raises; misuse (bad options, argument types) raises at the caller's line.
-- The password is never in an error, tostring or the client table (a server echoing it is redacted).
local check = require "rctasks.check"
local core = require "rctasks.core"
local env = require "rctasks.env"

local M = {}

-- What one reply may hold: reading stays linear and memory bounded whatever the server sends.
M.LIMITS = {
  line = 64 * 1024,            -- a type line: status, error, integer, length
  bulk = 8 * 1024 * 1024,      -- one bulk string
  reply = 16 * 1024 * 1024,    -- all the bytes of one reply
  elements = 262144,           -- array elements of one reply, nested ones included
  depth = 8,                   -- arrays inside arrays
}

local DEFAULTS = { port = 6379, db = 0, timeout = 5, keepalive_timeout = 60, pool_size = 32 }
local RECV = 65536 -- most bytes asked of one read

local Client = {}
Client.__index = Client
Client.__name = "rctasks.redis"
Client.__tostring = function(c) return "rctasks.redis(" .. c.where .. ")" end

local SECRETS = setmetatable({}, { __mode = "k" }) -- client -> { username=, password= }, out of sight
local CREDENTIALS = { n = 0 } -- "user\0password" -> its number in pool names

------------------------------------------------------------------------------------------------
-- Sockets: the two kinds behind one small surface. within(s, seconds) arms the next operation;
-- recv(s, max, seconds) returns what is there (1 to max bytes) or nil, "timeout" | "closed" | text.

local LuaSocket = {}

-- Both of LuaSocket's timeouts: "b" bounds each wait, "t" the whole operation.
function LuaSocket.within(s, secs) s:settimeout(secs, "b"); s:settimeout(secs, "t") end

function LuaSocket.connect(host, port, secs)
  local s = require("socket").tcp()
  LuaSocket.within(s, secs)
  local ok, err = s:connect(host, port)
  if not ok then s:close(); return nil, err end
  s:setoption("tcp-nodelay", true)
  return s
end

-- One byte within the deadline, then whatever else already arrived (receive(n) alone would wait for n).
function LuaSocket.recv(s, max, secs)
  LuaSocket.within(s, secs)
  local first, err = s:receive(1)
  if not first then return nil, err end
  s:settimeout(0, "b")
  local more, _, partial = s:receive(max - 1, first)
  return more or partial or first
end

-- A kept connection is fit for the next call when nothing is waiting on it: no stray bytes, no close.
function LuaSocket.idle(s)
  s:settimeout(0, "b")
  local data, err = s:receive(1)
  return data == nil and err == "timeout"
end

local Cosocket = {}

local function ms(secs) local v = math.ceil(secs * 1000); return v < 1 and 1 or v end

function Cosocket.connect(host, port, secs, pool, pool_size)
  local s = rawget(_G, "ngx").socket.tcp()
  s:settimeouts(ms(secs), ms(secs), ms(secs))
  local ok, err = s:connect(host, port, { pool = pool, pool_size = pool_size })
  if not ok then return nil, err end
  return s, s:getreusedtimes() > 0
end

function Cosocket.within(s, secs) s:settimeout(ms(secs)) end

function Cosocket.recv(s, max, secs)
  s:settimeout(ms(secs))
  return s:receiveany(max)
end

------------------------------------------------------------------------------------------------
-- One connection during one call: a buffer over recv, a deadline, and the byte count of the
-- reply being read. Lines are searched for in new bytes only and every read is capped.

local Conn = {}
Conn.__index = Conn

local function left(c) return c.deadline - core.now() end

function Conn:fill(max)
  local secs = left(self)
  if secs <= 0 then return nil, "timeout" end
  local data, err = self.io.recv(self.sock, max or RECV, secs)
  if not data then return nil, err or "closed" end
  self.buf, self.pos = data, 1
  return true
end

-- A CRLF-terminated line without its CRLF, at most LIMITS.line bytes.
function Conn:line()
  local parts, n, max = nil, 0, M.LIMITS.line
  while true do
    local buf, pos = self.buf, self.pos
    local lf = buf:find("\n", pos, true)
    local stop = (lf or #buf + 1) - 1
    n = n + stop - pos + 1
    if n > max + 1 then return nil, "a line longer than " .. max .. " bytes", "protocol" end
    if self.got + n > M.LIMITS.reply then return nil, "a reply over " .. M.LIMITS.reply .. " bytes", "protocol" end
    if lf then
      self.pos = lf + 1
      local line = buf:sub(pos, stop)
      if parts then parts[#parts + 1] = line; line = table.concat(parts) end
      if line:byte(-1) ~= 13 then return nil, "a line ended without CRLF", "protocol" end
      self.got = self.got + n + 1
      return line:sub(1, -2)
    end
    if stop >= pos then parts = parts or {}; parts[#parts + 1] = buf:sub(pos, stop) end
    self.pos = #buf + 1
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Exactly n bytes: what the buffer holds, then reads of at most what is still missing.
function Conn:bytes(n)
  local parts, need = {}, n
  while true do
    local pos = self.pos
    local have = #self.buf - pos + 1
    if have >= need then
      self.pos, self.got = pos + need, self.got + n
      parts[#parts + 1] = self.buf:sub(pos, pos + need - 1)
      return table.concat(parts)
    end
    if have > 0 then -- a whole chunk is taken as it is, not copied
      parts[#parts + 1], self.pos, need = pos == 1 and self.buf or self.buf:sub(pos), pos + have, need - have
    end
    local ok, err = self:fill(need < RECV and need or RECV)
    if not ok then return nil, err end
  end
end

-- A length or integer field: an optional minus and digits, nothing else.
local function integer(s, digits)
  if #s > digits or not s:find("^%-?%d+$") then return nil end
  return tonumber(s)
end

-- A bulk or array length: -1 is nil (false), other negatives and lengths over `cap` are refused.
local function length(rest, what, cap, unit)
  local n = integer(rest, 20)
  if not n then return nil, "a bad " .. what .. " length", "protocol" end
  if n < -1 then return nil, "a negative " .. what .. " length", "protocol" end
  if n > cap then
    return nil, ("%s of %s %s (more than the %d allowed here)"):format(what, rest, unit, cap), "protocol"
  end
  return n
end

local PLUS, MINUS, COLON, DOLLAR, STAR = 43, 45, 58, 36, 42

-- One value of an array or the reply: v | nil, err, kind; for an array header, `open`, n.
local open = {}
local function scalar(c, line, count)
  local t, rest = line:byte(1), line:sub(2)
  if t == PLUS then return rest end
  if t == MINUS then return { err = rest } end
  if t == COLON then
    local v = integer(rest, 20)
    if not v then return nil, "a bad integer", "protocol" end
    return v
  end
  if t == DOLLAR then
    local n, err, kind = length(rest, "bulk", math.min(M.LIMITS.bulk, M.LIMITS.reply - c.got), "bytes")
    if not n then return nil, err, kind end
    if n == -1 then return false end
    local data, rerr = c:bytes(n)
    if not data then return nil, rerr end
    local crlf, cerr = c:bytes(2)
    if not crlf then return nil, cerr end
    if crlf ~= "\r\n" then return nil, "a bulk string not ended by CRLF", "protocol" end
    return data
  end
  if t == STAR then
    local n, err, kind = length(rest, "array", M.LIMITS.elements - count, "elements")
    if not n then return nil, err, kind end
    if n == -1 then return false end
    return open, n
  end
  return nil, ("an unknown reply type byte %s"):format(t and ("0x%02x"):format(t) or "(empty line)"), "protocol"
end

-- One whole reply, iteratively (no recursion: depth is a counter): value | nil, err, kind.
-- A top-level error reply is nil, text, "redis"; a nested one stays { err = text }.
function Conn:reply()
  self.got = 0
  local stack, depth, count = {}, 0, 0
  while true do
    local line, err, kind = self:line()
    if not line then return nil, err, kind end
    local v, n, why = scalar(self, line, count)
    if v == nil then return nil, n, why end
    if v == open and n > 0 then
      if depth >= M.LIMITS.depth then return nil, "arrays nested deeper than " .. M.LIMITS.depth, "protocol" end
      count, depth = count + n, depth + 1
      stack[depth] = { t = {}, n = n, i = 0 }
    else
      if v == open then v = {} end
      if depth == 0 and line:byte(1) == MINUS then return nil, v.err, "redis" end
      while depth > 0 do
        local f = stack[depth]
        f.i = f.i + 1
        f.t[f.i] = v
        if f.i < f.n then break end
        v, stack[depth], depth = f.t, nil, depth - 1
      end
      if depth == 0 then return v end
    end
  end
end

------------------------------------------------------------------------------------------------
-- Commands

local function arg_string(a, i)
  local t = type(a)
  if t == "string" then return a end
  if t == "number" and a == a and a > -math.huge and a < math.huge then
    if math.type and math.type(a) == "integer" then return string.format("%d", a) end
    if a == math.floor(a) and a > -2 ^ 63 and a < 2 ^ 63 then return string.format("%.0f", a) end
    local short = string.format("%.14g", a) -- 0.1 as "0.1", unless that is not the same number
    return tonumber(short) == a and short or string.format("%.17g", a)
  end
  check.fail("rctasks.redis: argument " .. i .. " must be a string or a finite number, got " .. t)
end

-- RESP2's request form: an array of bulk strings.
local function encode(args, n)
  local out = { "*" .. n .. "\r\n" }
  for i = 1, n do
    local a = arg_string(args[i], i)
    out[#out + 1] = "$" .. #a .. "\r\n"
    out[#out + 1] = a
    out[#out + 1] = "\r\n"
  end
  return table.concat(out)
end

-- What the socket said -> (message, kind) naming the server, never the password.
local function io_failure(c, step, err)
  if err == "timeout" then return "no " .. step .. " from " .. c.where .. " within the timeout", "timeout" end
  if err == "closed" then return "connection to " .. c.where .. " closed during " .. step, "closed" end
  return step .. " with " .. c.where .. " failed: " .. tostring(err), "closed"
end

-- Server text into an error: the password out, one line, long text named by its size.
local function scrub(client, text)
  local pw = SECRETS[client].password
  if pw and pw ~= "" then
    local i = text:find(pw, 1, true)
    while i do
      text = text:sub(1, i - 1) .. "[redacted]" .. text:sub(i + #pw)
      i = text:find(pw, i + 10, true)
    end
  end
  if #text > 512 then text = (text:match("^%u+") or "ERR") .. " (an error reply of " .. #text .. " bytes)" end
  return (text:gsub("%c", " "))
end

-- Send one encoded command (or several, pipelined) and read `n` replies; the last reply, or the
-- first failure. A failure that leaves the stream unknown marks the connection broken.
function Conn:exchange(bytes, n)
  self.io.within(self.sock, left(self))
  local ok, err = self.sock:send(bytes)
  if not ok then self.broken = true; return nil, io_failure(self, "send", err) end
  local v, refused
  for _ = 1, n do
    local r, e, k = self:reply()
    if r == nil and k ~= "redis" then
      self.broken = true
      if k then return nil, "bad reply from " .. self.where .. ": " .. e, k end
      return nil, io_failure(self, "reply", e)
    end
    if r == nil then refused = refused or e else v = r end
  end
  if refused then return nil, refused, "redis" end
  return v
end

------------------------------------------------------------------------------------------------
-- Connections: taken for one call, then kept (LuaSocket: in the client; cosockets: in the pool).

local function in_phase(ngx)
  local phase = ngx.get_phase()
  return require("rctasks.transport.ngx").PHASES[phase] == true, phase
end

-- AUTH and SELECT, pipelined, on every new connection.
local function setup(client, conn)
  local secret = SECRETS[client]
  local parts, n = {}, 0
  if secret.password then
    n = n + 1
    parts[n] = secret.username and encode({ "AUTH", secret.username, secret.password }, 3)
      or encode({ "AUTH", secret.password }, 2)
  end
  if client.db ~= 0 then n = n + 1; parts[n] = encode({ "SELECT", client.db }, 2) end
  if n == 0 then return true end
  local ok, err, kind = conn:exchange(table.concat(parts), n)
  if ok then return true end
  if kind == "redis" then
    conn.broken = true
    return nil, "connection setup refused by " .. client.where .. ": " .. scrub(client, err), "auth"
  end
  return nil, err, kind
end

function Client:acquire(deadline)
  local conn = setmetatable({ io = self.io, where = self.where, deadline = deadline, buf = "", pos = 1, got = 0 }, Conn)
  local kept = self.kept
  self.kept = nil
  if kept and LuaSocket.idle(kept) then conn.sock = kept; return conn end
  if kept then kept:close() end
  if self.io == Cosocket then
    local ok, phase = in_phase(env.ngx())
    if not ok then return nil, "no cosockets in nginx's " .. tostring(phase) .. " phase", "phase" end
  end
  local secs = left(conn)
  if secs <= 0 then return nil, "no connection to " .. self.where .. " within the timeout", "timeout" end
  local sock, reused = self.io.connect(self.host, self.port, secs, self.pool, self.pool_size)
  if not sock then
    local why = reused
    if why == "timeout" then return nil, "no connection to " .. self.where .. " within the timeout", "timeout" end
    return nil, "connect to " .. self.where .. " failed: " .. tostring(why), "connect"
  end
  conn.sock = sock
  if reused == true then return conn end
  local ok, err, kind = setup(self, conn)
  if not ok then conn.sock:close(); return nil, err, kind end
  return conn
end

-- Keep a connection whose stream is where it should be; close any other.
function Client:release(conn)
  if conn.broken or conn.pos <= #conn.buf then conn.sock:close(); return end
  if self.io == LuaSocket then self.kept = conn.sock; return end
  if not conn.sock:setkeepalive(self.keepalive_ms, self.pool_size) then conn.sock:close() end
end

-- Run fn(conn) on a connection within one deadline: fn's results, errors scrubbed.
function Client:session(fn)
  local conn, err, kind = self:acquire(core.now() + self.timeout)
  if not conn then return nil, err, kind end
  local v, ferr, fkind = fn(conn)
  self:release(conn)
  if v == nil then return nil, scrub(self, ferr), fkind end
  return v
end

-- What changes a connection's db, user, protocol or reply stream: a kept or pooled connection must
-- stay as the client set it up (and a transaction cannot span calls that may ride other connections).
local REFUSED = { SELECT = 1, AUTH = 1, HELLO = 1, RESET = 1, QUIT = 1, MULTI = 1, EXEC = 1, DISCARD = 1, WATCH = 1,
                  SUBSCRIBE = 1, PSUBSCRIBE = 1, SSUBSCRIBE = 1, MONITOR = 1, SYNC = 1, PSYNC = 1 }

function Client:call(...)
  local n, name, sub = select("#", ...), ...
  if n == 0 or type(name) ~= "string" then check.fail("rctasks.redis: call needs a command name") end
  name = name:upper()
  if REFUSED[name] or (name == "CLIENT" and type(sub) == "string" and sub:upper() == "REPLY") then
    check.fail("rctasks.redis: call cannot run " .. name .. " (make a client per db and user; use eval to be atomic)")
  end
  local bytes = encode({ ... }, n)
  return self:session(function(conn) return conn:exchange(bytes, 1) end)
end

-- EVALSHA with the SHA1 the server gave for this script (SCRIPT LOAD, once per client and script;
-- a server's own answer, so a hostile server's SHA1 never reaches another one); EVAL on NOSCRIPT.
function Client:eval(script, keys, args)
  if type(script) ~= "string" then check.fail("rctasks.redis: eval needs the script's text") end
  if type(keys or {}) ~= "table" or type(args or {}) ~= "table" then
    check.fail("rctasks.redis: eval's keys and args must be tables")
  end
  local t = { "EVALSHA", "", #(keys or {}) }
  for _, k in ipairs(keys or {}) do t[#t + 1] = arg_string(k, #t + 1) end -- misuse raises here, not mid-call
  for _, a in ipairs(args or {}) do t[#t + 1] = arg_string(a, #t + 1) end
  return self:session(function(conn)
    local sha = self.shas[script]
    if not sha then
      local r, err, kind = conn:exchange(encode({ "SCRIPT", "LOAD", script }, 3), 1)
      if r == nil then return nil, err, kind end
      if type(r) ~= "string" or not r:find("^%x+$") or #r ~= 40 then
        conn.broken = true
        return nil, "bad reply from " .. self.where .. ": SCRIPT LOAD answered no SHA1", "protocol"
      end
      sha = r:lower()
      self.shas[script] = sha
    end
    t[2] = sha
    local r, err, kind = conn:exchange(encode(t, #t), 1)
    if r ~= nil or kind ~= "redis" or not err:find("^NOSCRIPT") then return r, err, kind end
    t[1], t[2] = "EVAL", script
    return conn:exchange(encode(t, #t), 1)
  end)
end

function Client:close()
  if self.kept then self.kept:close() end
  self.kept = nil
  return true
end

------------------------------------------------------------------------------------------------
-- Construction

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- redis://[[user]:password@]host[:port][/db] -> fields (the URL itself is never quoted: it may hold a password).
local function parse_url(s)
  local rest = s:match("^[Rr][Ee][Dd][Ii][Ss]://(.*)$")
  if not rest then
    if s:find("^[Rr][Ee][Dd][Ii][Ss][Ss]://") then check.fail("rctasks.redis: rediss:// (TLS) is not supported") end
    check.fail("rctasks.redis: url must start with redis://")
  end
  if rest:find("[%c%s?#]") then check.fail("rctasks.redis: url holds a space, control character, query or fragment") end
  local authority, path = rest:match("^([^/]*)(.*)$")
  local o = {}
  local at = authority:find("@[^@]*$")
  if at then
    local user, pass = authority:sub(1, at - 1):match("^([^:]*):(.*)$")
    if not user then check.fail("rctasks.redis: url credentials must be [user]:password@") end
    o.username = user ~= "" and unescape(user) or nil
    o.password = unescape(pass)
    authority = authority:sub(at + 1)
  end
  local host, port = authority:match("^%[([%x:.]+)%](.*)$")
  if not host then host, port = authority:match("^([^:%[%]]*)(.*)$") end
  if port ~= "" then port = port:match("^:(%d+)$") end
  if not host or host == "" or not port then check.fail("rctasks.redis: url has no host, or a bad port") end
  o.host, o.port = host, tonumber(port)
  if path ~= "" and path ~= "/" then
    local db = path:match("^/(%d+)$")
    if not db then check.fail("rctasks.redis: url path must be /DB (a database number)") end
    o.db = tonumber(db)
  end
  return o
end

local SCHEMA = { url = "string", host = "string", port = "count", db = "number", username = "string",
                 password = "string", timeout = "positive", keepalive_timeout = "positive", pool_size = "count" }

function M.new(opts)
  opts = check.options(opts, SCHEMA, "rctasks.redis.new")
  local o = {}
  if opts.url then
    if opts.host or opts.port then check.fail("rctasks.redis.new: url or host/port, not both") end
    o = parse_url(opts.url)
  end
  for k, v in pairs(opts) do if k ~= "url" then o[k] = v end end
  for k, v in pairs(DEFAULTS) do if o[k] == nil then o[k] = v end end
  if not o.host then check.fail("rctasks.redis.new: url or host is required") end
  if o.port > 65535 then check.fail("rctasks.redis.new: port out of range") end
  if o.db % 1 ~= 0 then check.fail("rctasks.redis.new: db must be a whole number") end
  if o.username and not o.password then check.fail("rctasks.redis.new: a username needs a password") end
  local where = (o.host:find(":", 1, true) and "[" .. o.host .. "]" or o.host) .. ":" .. o.port
  local self = setmetatable({
    host = o.host, port = o.port, db = o.db, timeout = o.timeout, where = where .. "/" .. o.db,
    keepalive_ms = ms(o.keepalive_timeout), pool_size = o.pool_size, shas = {},
    io = env.ngx() and Cosocket or LuaSocket,
  }, Client)
  SECRETS[self] = { username = o.username, password = o.password }
  -- Pooled connections are already authenticated and selected: the pool name says as whom,
  -- by a number this Lua state gives each set of credentials (the credentials are not in it).
  local cred = o.password and ((o.username or "") .. "\0" .. o.password) or ""
  if not CREDENTIALS[cred] then CREDENTIALS.n = CREDENTIALS.n + 1; CREDENTIALS[cred] = CREDENTIALS.n end
  self.pool = "rctasks.redis:" .. where .. ":" .. o.db .. ":" .. CREDENTIALS[cred]
  return self
end

return M
