-- rctasks.transport.http1: what the cosocket transport makes of a server's status line, header
-- block, chunk sizes and Content-Length, including the worst input that fits under the caps
-- (64 KiB block, 8 KiB lines), which must parse right and never take seconds.
local http1 = require "rctasks.transport.http1"

local LINE, BLOCK = http1.MAX_LINE, http1.MAX_HEADER

-- f() must not freeze: a parse that takes milliseconds is allowed a few seconds here.
local function quick(f)
  local t0 = os.clock()
  local r = { f() }
  local dt = os.clock() - t0
  assert.truthy(dt < 3, ("took %.2f s of CPU"):format(dt))
  return (table.unpack or unpack)(r)
end

-- A header block of "HTTP/1.1 200 OK" and as many copies of `line` as fit in `BLOCK` bytes.
local function block_of(line)
  local parts, size = { "HTTP/1.1 200 OK" }, 17
  while size + #line + 2 <= BLOCK do
    parts[#parts + 1] = line
    size = size + #line + 2
  end
  return table.concat(parts, "\r\n"), #parts - 1
end

describe("http1: the status line", function()
  it("reads HTTP/1.0 and HTTP/1.1 with three digits, then a space or the line's end", function()
    assert.same({ 200, 1 }, { http1.status_line("HTTP/1.1 200 OK") })
    assert.same({ 404, 0 }, { http1.status_line("HTTP/1.0 404 Not Found") })
    assert.same({ 204, 1 }, { http1.status_line("HTTP/1.1 204") })
    assert.same({ 503, 1 }, { http1.status_line("HTTP/1.1 503 ") })
  end)

  it("refuses everything else", function()
    for _, bad in ipairs({ "HTTP/1.1 2000", "HTTP/1.1 20", "HTTP/1.1 200x", "HTTP/1.2 200", "HTTP/2 200",
                           "HTTP/1.1  200", "http/1.1 200", "HTTP/1.1 099", "HTTP/1.1 600", "HTTP/1.1\t200",
                           " HTTP/1.1 200", "", "HTTP/1.1 20 0" }) do
      local status, why = http1.status_line(bad)
      assert.is_nil(status, bad)
      assert.is_string(why)
    end
  end)
end)

describe("http1: header fields", function()
  it("lower-cases names and trims spaces and tabs around values", function()
    assert.same({ "content-type", "application/json" }, { http1.field("Content-Type: application/json") })
    assert.same({ "x", "a  b" }, { http1.field("X:\t  a  b \t ") })
    assert.same({ "x", "" }, { http1.field("X:") })
    assert.same({ "x", "" }, { http1.field("X:    ") })
  end)

  it("refuses a line without a token before its colon, or with a CR or NUL in it", function()
    for _, bad in ipairs({ "X : a", " X: a", ": a", "no colon", "X Y: a", "X(: a", "X: a\rb", "X: a\0b", "" }) do
      assert.is_nil((http1.field(bad)), bad)
    end
  end)

  it("joins repeated fields with ', ' and folded lines with one space", function()
    local h = assert(http1.fields({ "Set-Cookie: a", "X: 1", "set-cookie: b", "Y: first", "   second  ", "\tthird" }))
    assert.equal("a, b", h["set-cookie"])
    assert.equal("1", h.x)
    assert.equal("first second third", h.y)
  end)

  it("refuses a folded line before any field", function()
    assert.is_nil((http1.fields({ " folded", "X: a" })))
  end)

  it("reads a whole block, with CRLF or bare LF line ends", function()
    local status, h, minor = http1.head("HTTP/1.1 201 Created\r\nContent-Length: 2\nConnection: close\r\n")
    assert.same({ 201, 1, "2", "close" }, { status, minor, h["content-length"], h.connection })
  end)

  it("refuses a block over the header cap and a line over the line cap", function()
    assert.is_nil((http1.head("HTTP/1.1 200 OK\r\n" .. ("X: y\r\n"):rep(math.floor(BLOCK / 6) + 1))))
    assert.is_nil((http1.head("HTTP/1.1 200 OK\r\nX: " .. ("y"):rep(LINE))))
    assert.truthy((http1.head("HTTP/1.1 200 OK\r\nX: " .. ("y"):rep(LINE - 3))))
  end)
end)

describe("http1: body framing", function()
  it("reads chunk sizes in hex, with extensions and leading zeros", function()
    assert.equal(26, http1.chunk_size("1a"))
    assert.equal(26, http1.chunk_size("1A;name=value"))
    assert.equal(26, http1.chunk_size("1a \t; ext"))
    assert.equal(0, http1.chunk_size("0"))
    assert.equal(0, http1.chunk_size("0000"))
    assert.equal(1, http1.chunk_size("00000000000001"))
    assert.equal(0xffffffff, http1.chunk_size("ffffffff"))
    assert.equal(math.huge, http1.chunk_size("100000000"))
    for _, bad in ipairs({ "", " 1", "1g", "1 x", "-1", "0x10", ";", "g;1" }) do
      assert.is_nil((http1.chunk_size(bad)), bad)
    end
  end)

  it("reads Content-Length, repeated or not, only when every copy says the same number", function()
    assert.equal(5, http1.content_length("5"))
    assert.equal(5, http1.content_length(" 5 "))
    assert.equal(5, http1.content_length("5, 5,5"))
    assert.equal(5, http1.content_length("0005, 5"))
    assert.equal(0, http1.content_length("0"))
    assert.equal(math.huge, http1.content_length("1234567890123456"))
    for _, bad in ipairs({ "", " ", "5, 6", "5,", ",5", "5,,5", "-1", "1e3", "0x10", "5 5", "+5" }) do
      assert.is_nil((http1.content_length(bad)), bad)
    end
  end)

  it("splits Connection and Transfer-Encoding into lower-cased tokens", function()
    assert.same({ "keep-alive", "upgrade" }, http1.tokens(" Keep-Alive ,, Upgrade,"))
    assert.is_true(http1.has_token("Upgrade, CLOSE", "close"))
    assert.is_false(http1.has_token("closed", "close"))
    assert.is_false(http1.has_token(nil, "close"))
  end)
end)

describe("http1: the worst input under the caps parses right, in milliseconds", function()
  local spaces = (" "):rep(LINE - 8)

  it("a 64 KiB block of 'X: ' + spaces + 'x' lines", function()
    local text, n = block_of("X: " .. spaces .. "x")
    local status, h = quick(function() return http1.head(text) end)
    assert.equal(200, status)
    assert.equal(n, select(2, h.x:gsub("x", "")))
    assert.equal(#"x" * n + #", " * (n - 1), #h.x)
  end)

  it("a 64 KiB block of lines whose value holds 8 KiB of spaces between two letters", function()
    local text = block_of("X: a" .. spaces .. "b")
    local status, h = quick(function() return http1.head(text) end)
    assert.equal(200, status)
    assert.equal("a" .. spaces .. "b", h.x:sub(1, #spaces + 2))
  end)

  it("8 KiB lines of spaces, as folds and as lines", function()
    local blank = (" "):rep(LINE)
    local h = quick(function() return http1.fields({ "X: a", blank, blank, "  b" .. spaces .. "c  " }) end)
    assert.equal("a b" .. spaces .. "c", h.x)
    assert.is_nil(quick(function() return http1.fields({ blank }) end))
    assert.same({ "x", "" }, { quick(function() return http1.field("X:" .. blank) end) })
  end)

  it("thousands of folded lines and thousands of repeats of one field", function()
    local folds = block_of(" f")
    local text = "HTTP/1.1 200 OK\r\nX: a" .. folds:sub(#"HTTP/1.1 200 OK" + 1, BLOCK - 30)
    local status, h = quick(function() return http1.head(text) end)
    assert.equal(200, status)
    assert.truthy(select(2, h.x:gsub(" f", "")) > 10000, "every fold kept")
    local repeats, n = block_of("X: r")
    status, h = quick(function() return http1.head(repeats) end)
    assert.equal(200, status)
    assert.equal(n, select(2, h.x:gsub("r", "")))
  end)

  it("8 KiB names, colons and status-line tails", function()
    local name = ("n"):rep(LINE - 2)
    assert.equal(name, (quick(function() return http1.field(name .. ":") end)))
    assert.is_nil((quick(function() return http1.field((":"):rep(LINE)) end)))
    assert.is_nil((quick(function() return http1.field(("n"):rep(LINE)) end)))
    assert.equal(200, (quick(function() return http1.status_line("HTTP/1.1 200 " .. spaces .. "x") end)))
    local text = block_of(("n"):rep(LINE - 1) .. " ")
    assert.is_nil((quick(function() return http1.head(text) end)))
  end)

  it("Content-Length of 1000 commas, or a number repeated a thousand times", function()
    assert.is_nil((quick(function() return http1.content_length((","):rep(1000)) end)))
    assert.is_nil((quick(function() return http1.content_length(("5,"):rep(1000)) end)))
    assert.equal(5, quick(function() return http1.content_length(("5, "):rep(1000) .. "5") end))
    assert.is_nil((quick(function() return http1.content_length(("5 "):rep(1000) .. "5") end)))
    assert.is_nil((quick(function() return http1.content_length(" " .. spaces .. ",") end)))
  end)

  it("chunk-size lines of 8 KiB and a token list of 64 KiB", function()
    assert.equal(1, quick(function() return http1.chunk_size(("0"):rep(LINE - 1) .. "1") end))
    assert.equal(math.huge, quick(function() return http1.chunk_size(("f"):rep(LINE)) end))
    assert.equal(1, quick(function() return http1.chunk_size("1" .. spaces .. ";" .. spaces) end))
    assert.is_nil((quick(function() return http1.chunk_size("1" .. spaces .. "x") end)))
    assert.same({}, quick(function() return http1.tokens((", "):rep(math.floor(BLOCK / 2))) end))
    local list = (" ,"):rep(math.floor(BLOCK / 2) - 4) .. "close"
    assert.is_true(quick(function() return http1.has_token(list, "close") end))
  end)
end)
