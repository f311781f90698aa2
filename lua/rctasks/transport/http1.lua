-- rctasks.transport.http1: the HTTP/1.1 response grammar the cosocket transport reads (status
-- line, header fields with obsolete folding, chunk-size lines, Content-Length, token lists), as
-- pure functions of strings. Every one is linear in its input: plain finds, anchored patterns
-- without backtracking and byte loops only, so nothing a server sends can make a parse slow.
-- Failures are `nil, reason` (a short text for the transport's bad_response message).
local defaults = require "rctasks.defaults"

local M = {}

M.MAX_LINE = defaults.request.max_line
M.MAX_HEADER = defaults.request.max_header

local SP, HTAB, SEMI = 32, 9, 59

-- Server text for a message: whole when short, else only its size. Never a cut piece: a cut
-- could end inside an API key the server echoed, and a key prefix cannot be redacted.
local function quoted(s)
  if #s <= 64 and not s:find("%c") then return "'" .. s .. "'" end
  return "(" .. #s .. " bytes)"
end
M.quoted = quoted

-- First and last index of s[i..j] without surrounding spaces and tabs, or nil when nothing is left.
-- The scan from the left stops at the first other byte, the loop from the right never passes it.
local function span(s, i, j)
  local first = s:find("[^ \t]", i)
  if not first or first > j then return nil end
  local last = j
  local b = s:byte(last)
  while b == SP or b == HTAB do
    last = last - 1
    b = s:byte(last)
  end
  return first, last
end
M.span = span

-- s without leading and trailing spaces and tabs.
function M.trim(s)
  local first, last = span(s, 1, #s)
  if not first then return "" end
  return s:sub(first, last)
end

-- "HTTP/1.0" or "HTTP/1.1", a space, three digits (100 to 599), then a space or the line's end.
-- -> status, minor version | nil, reason
function M.status_line(line)
  local minor, code, after = line:match("^HTTP/1%.([01]) (%d%d%d)()")
  if not minor or (after <= #line and line:byte(after) ~= SP) then
    return nil, "not an HTTP/1.x status line: " .. quoted(line)
  end
  local status = tonumber(code)
  if status < 100 or status > 599 then return nil, "status code out of range: " .. code end
  return status, tonumber(minor)
end

-- A field name is a token (RFC 9110 5.1): no spaces, no separators, nothing before the colon.
local NOT_TCHAR = "[^%w!#%$%%&'%*%+%-%.%^_`|~]"

-- A line no header may hold: CR inside it or NUL anywhere (the line end is already cut off).
local function bad_bytes(line)
  return line:find("\r", 1, true) or line:find("\0", 1, true)
end

-- "Name: value" -> lower-cased name, trimmed value | nil, reason
function M.field(line)
  local colon = line:find(":", 1, true)
  if not colon or colon == 1 or line:find(NOT_TCHAR, 1) < colon or bad_bytes(line) then
    return nil, "malformed header line"
  end
  local first, last = span(line, colon + 1, #line)
  return line:sub(1, colon - 1):lower(), first and line:sub(first, last) or ""
end

-- Does this line continue the previous field (obsolete line folding)?
function M.is_fold(line)
  local b = line:byte(1)
  return b == SP or b == HTAB
end

-- lines[first..last] (header lines, no line ends) -> headers | nil, reason. Names are lower-cased;
-- a repeated field is joined with ", ", a folded line onto its field with one space. Values are
-- gathered in pieces and joined once at the end, so thousands of repeats or folds stay linear.
function M.fields(lines, first, last)
  local pieces, cur, has_text = {}, nil, false
  for i = first or 1, last or #lines do
    local line = lines[i]
    if M.is_fold(line) then
      if not cur or bad_bytes(line) then return nil, "malformed header line (folding)" end
      local a, b = span(line, 1, #line)
      if a then
        if has_text then cur[#cur + 1] = " " end
        cur[#cur + 1] = line:sub(a, b)
        has_text = true
      end
    else
      local name, value = M.field(line)
      if not name then return nil, value end
      cur = pieces[name]
      if cur then
        cur[#cur + 1] = ", "
        cur[#cur + 1] = value
      else
        cur = { value }
        pieces[name] = cur
      end
      has_text = value ~= ""
    end
  end
  local headers = {}
  for name, p in pairs(pieces) do headers[name] = #p == 1 and p[1] or table.concat(p) end
  return headers
end

-- Lines of text split at LF, one CR before it dropped, appended to `out` -> out, count | nil, reason.
-- Each line is at most max_line bytes.
function M.lines(text, out, max_line)
  out, max_line = out or {}, max_line or M.MAX_LINE
  local n, i, len = #out, 1, #text
  while i <= len do
    local nl = text:find("\n", i, true) or len + 1
    local j = nl - 1
    if j >= i and text:byte(j) == 13 then j = j - 1 end
    if j - i + 1 > max_line then return nil, "header line too long" end
    n = n + 1
    out[n] = text:sub(i, j)
    i = nl + 1
  end
  return out, n
end

-- A whole header block (status line, header lines, without the empty line that ends it)
-- -> status, headers, minor | nil, reason. At most MAX_HEADER bytes, each line at most MAX_LINE.
function M.head(text)
  if #text > M.MAX_HEADER then return nil, "response headers larger than " .. M.MAX_HEADER .. " bytes" end
  local lines, n = M.lines(text)
  if not lines then return nil, n end
  local status, minor = M.status_line(lines[1] or "")
  if not status then return nil, minor end
  local headers, why = M.fields(lines, 2, n)
  if not headers then return nil, why end
  return status, headers, minor
end

-- A chunk-size line: hex digits, then nothing, or spaces and a `;` extension (ignored).
-- -> size (math.huge when over 8 significant hex digits: 4 GiB, more than any cap) | nil, reason
function M.chunk_size(line)
  local after = line:match("^%x+()")
  if not after then return nil, "bad chunk size line" end
  local rest = line:find("[^ \t]", after)
  if rest and line:byte(rest) ~= SEMI then return nil, "bad chunk size line" end
  local lead = line:find("[^0]") -- leading zeros do not count towards the size's length
  if not lead or lead >= after then return 0 end
  if after - lead > 8 then return math.huge end
  return tonumber(line:sub(lead, after - 1), 16)
end

-- Content-Length, perhaps repeated ("5, 5" once joined): every element the same decimal number.
-- -> length (math.huge when over 15 digits) | nil, reason
function M.content_length(value)
  local len, i, n = #value, 1, nil
  while true do
    local comma = value:find(",", i, true) or len + 1
    local a, b = span(value, i, comma - 1)
    local e = a and select(2, value:find("^%d+", a))
    if not e or e ~= b then return nil, "bad Content-Length: " .. quoted(value) end
    local lead = value:find("[^0]", a)
    local v = 0
    if lead and lead <= b then
      v = b - lead + 1 > 15 and math.huge or tonumber(value:sub(lead, b))
    end
    if n and v ~= n then return nil, "bad Content-Length: " .. quoted(value) end
    n = v
    if comma > len then return n end
    i = comma + 1
  end
end

-- The comma-separated tokens of a list field, lower-cased, empty elements dropped.
function M.tokens(value)
  local out, len, i = {}, #value, 1
  while i <= len do
    local comma = value:find(",", i, true) or len + 1
    local a, b = span(value, i, comma - 1)
    if a then out[#out + 1] = value:sub(a, b):lower() end
    i = comma + 1
  end
  return out
end

function M.has_token(value, token)
  if not value then return false end
  for _, t in ipairs(M.tokens(value)) do
    if t == token then return true end
  end
  return false
end

return M
