-- rctasks.url: the one URL parser, and the rules for what may be joined to a base URL. Keys go
-- only to the base URL a client was given: paths (the caller's, or links a server sent) may not
-- climb out of it, and a base URL may not smuggle anything into a request line.
local M = {}

-- Control characters and spaces: CR/LF would start a new header or request, NUL cuts C strings.
local UNSAFE = "[%c ]"

-- parse(url) -> { scheme, host (lower case, no brackets), port, target (path and query, "/" at
-- least), authority, path (without query) } | nil, why. Only http and https.
function M.parse(s)
  if type(s) ~= "string" then return nil, "not a string" end
  if s:find(UNSAFE) then return nil, "contains a control character or a space" end
  local scheme, authority, target = s:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "scheme is not http or https" end
  if authority:find("@", 1, true) then return nil, "carries credentials" end
  -- Host and port matched apart: an optional ':' between two greedy runs would backtrack
  -- quadratically over a long run of digits.
  local host, port = authority:match("^%[([%x:.]+)%](.*)$")
  if not host then host, port = authority:match("^([^:%[%]]*)(.*)$") end
  if port ~= "" then port = port:match("^:(%d*)$") end
  if not host or host == "" or not port then return nil, "has no host, or a bad port" end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "port out of range" end
  if target == "" then target = "/" end
  if target:sub(1, 1) ~= "/" then target = "/" .. target end
  return { scheme = scheme, host = host:lower(), port = port, target = target, authority = authority,
           path = target:match("^[^?#]*") }
end

function M.is_loopback(host)
  return host == "localhost" or host == "::1" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- base(url) -> the base URL without trailing slashes, parsed | nil, why.
function M.base(s)
  local u, why = M.parse(s)
  if not u then return nil, why end
  if u.target:find("[?#]") then return nil, "has a query or fragment" end
  if u.scheme == "http" and not M.is_loopback(u.host) then
    return nil, "is http:// to a host that is not loopback (keys would travel in clear); use https://"
  end
  return (s:gsub("/+$", "")), u
end

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Is one path segment a way out? "." or "..", however spelled: percent-encoded, next to an
-- encoded separator ("..%2F"), or before ";params" (servers that split matrix parameters first
-- read "..;" as ".."). One decoding, as a server does; an encoded "/" inside a name is inert.
local function bad_segment(seg)
  local u = unescape(seg)
  if u:find("%z") then return true end
  for piece in (u:gsub("\\", "/") .. "/"):gmatch("([^/]*)/") do
    local name = piece:match("^[^;]*")
    if name == "." or name == ".." then return true end
  end
  return false
end

-- path_problem(path) -> nil when `path` may be joined to a base URL, else why not.
function M.path_problem(path)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then return "must be a string starting with '/'" end
  if path:find(UNSAFE) or path:find("[#\\]") then return "has spaces, control characters, '#' or '\\'" end
  if path:find("%00", 1, true) then return "has %00" end
  local p = path:match("^[^?]*")
  if p:find("//", 1, true) then return "has an empty segment" end
  for seg in p:gmatch("/([^/]*)") do
    if bad_segment(seg) then return "has a dot segment ('.' or '..', however spelled)" end
  end
  return nil
end

-- rebase(base_url, href) -> the path, under base_url, that a server's link names | nil, why.
-- Only a link to the base's own origin, under its path (or under the API's own /v1 when the base
-- sits below a proxy's prefix), with a path that passes path_problem.
function M.rebase(base_url, href)
  if type(href) ~= "string" then return nil, "not a string" end
  if #href > 2048 then return nil, "too long" end
  local b = M.parse(base_url)
  local h = href:sub(1, 1) == "/" and { scheme = b.scheme, host = b.host, port = b.port, target = href }
    or M.parse(href)
  if not h then return nil, "not a URL" end
  if h.scheme ~= b.scheme or h.host ~= b.host or h.port ~= b.port then return nil, "another origin" end
  local prefix = b.path:gsub("/+$", "")
  local p = h.target
  if prefix ~= "" then -- (a base that is the origin itself: the link's path is already ours)
    if p:sub(1, #prefix + 1) == prefix .. "/" then
      p = p:sub(#prefix + 1)
    elseif p:sub(1, 4) == "/v1/" then
      p = p:sub(4)
    else
      return nil, "outside the base URL's path"
    end
  end
  local why = M.path_problem(p)
  if why then return nil, why end
  return p
end

-- Percent-encode one path segment (RFC 3986 unreserved characters stay as they are).
function M.escape(segment)
  return (tostring(segment):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- A resource id from a server as a path segment, or nil: whole numbers (printed without ".0" on
-- any Lua, and only where a double holds them exactly) and plain tokens.
local EXACT = 2 ^ 53
function M.segment(x)
  if type(x) == "number" then
    if x % 1 ~= 0 or x < 0 or x >= EXACT then return nil end
    return string.format("%d", x)
  end
  if type(x) == "string" and #x <= 128 and x:find("^[%w%-_.~]+$") and x ~= "." and x ~= ".." then return x end
  return nil
end

return M
