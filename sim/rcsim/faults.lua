-- Fault injection: a per-account queue of faults, the head one applied to the next matching /v1
-- request. See sim/README.md for the list of kinds.
-- luacheck: globals ngx
local bit = require "bit"
local util = require "rcsim.util"

local M = {}

local MAX_SLEEP = 30 -- no fault may hold a connection longer than this

local KINDS = { status = true, reset = true, reset_mid = true, stall = true, trickle = true, invalid_json = true,
  shape = true, big = true, gzip = true, redirect = true, unknown_status = true, huge_headers = true }
local SHAPES = { status_number = true, tasks_object = true, links_string = true }

function M.add(a, list)
  if type(list) ~= "table" then return nil, "faults must be a list" end
  for i, f in ipairs(list) do
    if type(f) ~= "table" or not KINDS[f.kind] then
      return nil, "fault " .. i .. ": unknown kind " .. tostring(type(f) == "table" and f.kind or f)
    end
    if f.kind == "shape" and not SHAPES[f.variant] then return nil, "fault " .. i .. ": unknown shape variant" end
    if f.path ~= nil and (type(f.path) ~= "string" or not pcall(string.find, "", f.path)) then
      return nil, "fault " .. i .. ": bad path pattern"
    end
  end
  for _, f in ipairs(list) do
    f.left = math.max(1, math.floor(tonumber(f.times) or 1))
    a.faults[#a.faults + 1] = f
  end
  return true
end

-- The head fault, consumed, when it applies to `uri`; faults fire strictly in queue order.
function M.next(a, uri)
  local f = a.faults[1]
  if not f or (f.path and not uri:find(f.path)) then return nil end
  f.left = f.left - 1
  if f.left <= 0 then table.remove(a.faults, 1) end
  return f
end

-- ===== gzip with stored (uncompressed) deflate blocks: valid, tiny, no zlib needed =====

local CRC = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit.band(c, 1) ~= 0 then c = bit.bxor(bit.rshift(c, 1), 0xEDB88320) else c = bit.rshift(c, 1) end
  end
  CRC[i] = c
end

local function crc32(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = bit.bxor(CRC[bit.band(bit.bxor(c, s:byte(i)), 0xFF)], bit.rshift(c, 8)) end
  return bit.bnot(c)
end

local function le(n, bytes)
  local t = {}
  for i = 1, bytes do t[i] = string.char(bit.band(bit.rshift(n, 8 * (i - 1)), 0xFF)) end
  return table.concat(t)
end

function M.gzip(s)
  local out = { "\31\139\8\0\0\0\0\0\0\255" }
  local pos = 1
  repeat
    local chunk = s:sub(pos, pos + 65534)
    pos = pos + #chunk
    out[#out + 1] = string.char(pos > #s and 1 or 0) .. le(#chunk, 2) .. le(bit.bnot(#chunk), 2) .. chunk
  until pos > #s
  out[#out + 1] = le(crc32(s), 4) .. le(#s, 4)
  return table.concat(out)
end

-- ===== helpers =====

local function task_id(uri)
  local id = uri:match("^/v1/tasks/([^/]+)$")
  return id and util.is_uuid(id) and id or util.uuid()
end

local function synthetic_task(ctx)
  local id = task_id(ctx.uri)
  return { taskId = id, commandType = "subscriptionCreateRequest", status = "processing-in-progress",
           description = "Request processing is in progress.", timestamp = util.iso(ctx.now),
           response = {}, links = { { rel = "self", type = "GET", href = ctx.base .. "/tasks/" .. id } } }
end

-- The task the normal answer carries, or a synthetic one when it carries none.
local function as_task(ctx)
  local r = ctx.run()
  local v = r.status < 300 and util.decode(r.body or "")
  if type(v) == "table" and v.taskId then return v end
  return synthetic_task(ctx)
end

local function seconds(v, default)
  v = tonumber(v) or default
  return math.min(math.max(v, 0), MAX_SLEEP)
end

local function send_headers(r, length)
  ngx.status = r.status
  for k, v in pairs(r.headers or {}) do ngx.header[k] = v end
  if length > 0 then ngx.header["Content-Type"] = "application/json" end
  ngx.header["Content-Length"] = length
  ngx.send_headers()
  ngx.flush(true)
end

-- ===== kinds: each returns a response to send, or nil after answering itself (calling ctx.done) =====

local apply = {}

function apply.status(f, ctx)
  local st = math.floor(tonumber(f.status) or 500)
  local r = { status = st, headers = {} }
  if f.retry_after then r.headers["Retry-After"] = tostring(f.retry_after) end
  if f.text then
    r.body, r.content_type = tostring(f.text), f.content_type or "text/plain"
  elseif f.body == "empty" then
    r.body = ""
  elseif f.body == "html" then
    r.page = true
  elseif f.body == "json" then
    r.body = util.encode({ error = util.reason(st), status = st })
  else
    r.body = util.spring(st, f.message or "Simulated failure", ctx.uri)
  end
  return r
end

function apply.reset(_, ctx)
  ctx.done()
  return ngx.exit(444)
end

function apply.reset_mid(_, ctx)
  local r = ctx.run()
  local body = r.body or ""
  ngx.req.read_body() -- the raw socket needs the request body consumed first
  local sock = assert(ngx.req.socket(true))
  local head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n")
    :format(r.status, util.reason(r.status), #body + 100)
  sock:send(head .. body:sub(1, math.floor(#body / 2)))
  ctx.done()
  return ngx.exit(444)
end

function apply.stall(f, ctx)
  local r = ctx.run()
  local body = r.body or ""
  send_headers(r, #body)
  ngx.sleep(seconds(f.seconds, 5))
  ngx.print(body)
  ctx.done()
  return ngx.exit(ngx.HTTP_OK)
end

function apply.trickle(f, ctx)
  local r = ctx.run()
  local body = r.body or ""
  local delay = seconds(f.delay, 0.05)
  local size = math.max(1, math.floor(tonumber(f.chunk) or 8))
  if delay > 0 and #body / size * delay > MAX_SLEEP then size = math.ceil(#body * delay / MAX_SLEEP) end
  send_headers(r, #body)
  for i = 1, #body, size do
    ngx.print(body:sub(i, i + size - 1))
    ngx.flush(true)
    if i + size <= #body then ngx.sleep(delay) end
  end
  ctx.done()
  return ngx.exit(ngx.HTTP_OK)
end

function apply.invalid_json(_, ctx)
  local id = task_id(ctx.uri)
  return { status = 200, body = '{"taskId":"' .. id .. '","commandType":"subscriptionCreateRequest","status":"proc' }
end

-- A mangled task as its route carries it: alone, or as the one task of GET /v1/tasks.
local function task_answer(ctx, t)
  return { status = 200, body = util.encode(ctx.uri == "/v1/tasks" and { tasks = { t } } or t) }
end

function apply.shape(f, ctx)
  if f.variant == "tasks_object" then -- the list as an object of tasks instead of an array
    return { status = 200, body = '{"tasks":{"a":' .. util.encode(synthetic_task(ctx)) .. '}}' }
  end
  local t = as_task(ctx)
  if f.variant == "status_number" then t.status = 42 else t.links = "links" end
  return task_answer(ctx, t)
end

function apply.unknown_status(f, ctx)
  local t = as_task(ctx)
  t.status = f.status or "processing-paused"
  return task_answer(ctx, t)
end

function apply.big(f, ctx)
  local bytes = math.max(256, math.floor(tonumber(f.bytes) or 20 * 1024 * 1024))
  local t = synthetic_task(ctx)
  t.status, t.description = "processing-completed", "Request processing completed successfully."
  t.response = { additionalInfo = "@@FILL@@" }
  local head, tail = util.encode(t):match("^(.*)@@FILL@@(.*)$")
  local fill = bytes - #head - #tail
  if f.length == false then -- no Content-Length: chunked, so only the client's own cap stops it
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json"
    ngx.send_headers()
    ngx.flush(true)
  else
    send_headers({ status = 200 }, bytes)
  end
  ngx.print(head)
  local block = string.rep("x", 65536)
  while fill > 0 do
    local n = math.min(fill, #block)
    ngx.print(n == #block and block or block:sub(1, n))
    local ok = ngx.flush(true)
    if not ok then break end -- client gave up (e.g. hit its body cap)
    fill = fill - n
  end
  if fill <= 0 then ngx.print(tail) end
  ctx.done()
  return ngx.exit(ngx.HTTP_OK)
end

function apply.gzip(_, ctx)
  local r = ctx.run()
  local headers = r.headers or {}
  headers["Content-Encoding"] = "gzip"
  return { status = r.status, body = M.gzip(r.body or ""), headers = headers }
end

function apply.redirect(f, ctx)
  local loc = f.location or ("http://127.0.0.2:" .. ngx.var.server_port .. ctx.uri)
  return { status = math.floor(tonumber(f.status) or 302), page = true, headers = { Location = loc } }
end

-- Header lines of 1 KiB, `bytes` of them in all (default 1 MiB), on the raw socket (nginx would
-- refuse such a header block); stops when the client goes away.
function apply.huge_headers(f, ctx)
  local bytes = math.max(1024, math.floor(tonumber(f.bytes) or 1024 * 1024))
  ngx.req.read_body() -- the raw socket needs the request body consumed first
  local sock = assert(ngx.req.socket(true))
  local ok = sock:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
  local line = "X-Filler: " .. string.rep("h", 1024 - 12) .. "\r\n"
  local block = string.rep(line, 64)
  local sent = 0
  while ok and sent < bytes do
    ok = sock:send(block)
    sent = sent + #block
  end
  if ok then sock:send("Content-Length: 2\r\n\r\n{}") end
  ctx.done()
  return ngx.exit(444)
end

function M.apply(f, ctx) return apply[f.kind](f, ctx) end

return M
