-- Case 6, hostile input: the worst header blocks and error pages that fit under the caps, parsed
-- the way rctasks parses what a server sends:
--   head_*, content_length, chunk_size   rctasks.transport.http1 (the cosocket transport's parser)
--   title_*, blank_8m, spring_*          rctasks.errors.http(req, res, core.decode) (both transports)
-- For each: milliseconds per parse and the ratio to one plain string.find over the same bytes (a
-- linear parse stays a constant factor above that scan whatever the bytes are).
-- usage: lua bench/hostile.lua [reps=5] [min_batch=0.02]
local lib = require "lib"
local http1 = require "rctasks.transport.http1"
local errors = require "rctasks.errors"
local core = require "rctasks.core"

local a = lib.args(arg)
local REPS, MIN_BATCH = a.reps or 5, a.min_batch or 0.02
local LINE, BLOCK = http1.MAX_LINE, http1.MAX_HEADER
local MIB = 1024 * 1024

-- "HTTP/1.1 200 OK" and as many lines made by `line(i)` as fit in the header cap.
local function block_of(line)
  local parts, size = { "HTTP/1.1 200 OK" }, 17
  for i = 1, math.huge do
    local l = line(i)
    if size + #l + 2 > BLOCK then break end
    parts[#parts + 1] = l
    size = size + #l + 2
  end
  return table.concat(parts, "\r\n")
end

-- `unit` repeated up to `size` bytes, then `tail`.
local function fill(unit, size, tail)
  tail = tail or ""
  local n = math.floor((size - #tail) / #unit)
  return unit:rep(n) .. tail
end

local spaces = (" "):rep(LINE - 16)
local function spring(size)
  local head = '{"timestamp":"2024-05-10T14:14:34.153+00:00","status":404,"error":"Not Found","path":"/v1/x",'
  local tail = '"message":"No task found"}'
  return head .. (" "):rep(size - #head - #tail) .. tail
end

local REQ = { method = "GET", url = "https://api.redislabs.com/v1/tasks/x" }
local function as_error(status)
  return function(body)
    return errors.http(REQ, { status = status, headers = { ["content-type"] = "text/html" }, body = body },
      core.decode)
  end
end
local HEAD, ERR401, ERR404 = http1.head, as_error(401), as_error(404)

-- { name, the bytes, the parse of those bytes }
local inputs = {
  { "head_ows", block_of(function(i) return "X-" .. i .. ": " .. spaces .. "x" end), HEAD },
  { "head_inner", block_of(function(i) return "X-" .. i .. ": a" .. spaces .. "b" end), HEAD },
  { "head_folds", block_of(function(i) return i == 1 and "X: a" or " f" end), HEAD },
  { "head_repeats", block_of(function() return "X: r" end), HEAD },
  { "content_length", fill("5, ", BLOCK, "5"), http1.content_length },
  { "chunk_size", fill("0", LINE, "1"), http1.chunk_size },
  { "title_4k", fill("<title>  ", 4096), ERR401 },
  { "title_8m", fill("<title>  ", 8 * MIB), ERR401 },
  { "blank_8m", fill(" ", 8 * MIB, "x"), ERR401 },
  { "spring_4k", spring(4096), ERR404 },
  { "spring_8m", spring(8 * MIB), ERR404 },
}

-- Seconds per call of f(i): the best of REPS batches, each long enough for the clock. Every result
-- is counted and i varies, so LuaJIT can neither drop nor hoist a call.
local seen = 0
local function per_call(f)
  local function batch(k)
    local t0 = lib.now()
    for i = 1, k do
      if f(i) then seen = seen + 1 end
    end
    return lib.now() - t0
  end
  local k = 1
  while batch(k) < MIN_BATCH and k < 1e6 do k = k * 2 end
  local best = math.huge
  for _ = 1, REPS do
    collectgarbage("collect")
    local dt = batch(k) / k
    if dt < best then best = dt end
  end
  return best
end

local names = {}
for i, input in ipairs(inputs) do names[i] = input[1] end
local out = { case = "hostile", lua = lib.interpreter(), inputs = table.concat(names, ",") }
for _, input in ipairs(inputs) do
  local name, s, parse = input[1], input[2], input[3]
  assert(parse(s) ~= nil, name .. ": the parse gave nothing")
  local scan = per_call(function(i) return s:find("\0", 1 + i % 2, true) == nil end)
  local t = per_call(function() return parse(s) end)
  out[name .. "_ms"], out[name .. "_bytes"], out[name .. "_ratio"] = t * 1e3, #s, t / scan
end
out.results = seen
lib.emit(out)
