-- rctasks.cli.out: how the command line prints. Everything a server sent (or a journal holds)
-- goes through `neutral` before it reaches a terminal: control characters and terminal escapes
-- (C0, DEL, and C1 as UTF-8) become "?", so no text can move the cursor, retitle the terminal or
-- forge lines. The exit codes live here too: every command ends in one of them.
local cjson = require("cjson").new() -- a private instance: settings here never leak into the caller's

cjson.encode_invalid_numbers("null") -- a task holding 1e400 still prints (as null)

local M = {}

M.EXIT = { ok = 0, failed = 1, usage = 2, timeout = 3, api = 4 }

-- Bytes >= 0x80 pass only as whole, valid UTF-8 sequences that are not C1 controls (U+0080 to
-- U+009F): a raw 0x9B is a CSI to some terminals.
local function utf8_only(seq)
  local b, n = seq:byte(1), #seq
  local want = (b >= 0xF0 and b <= 0xF4 and 4) or (b >= 0xE0 and 3) or (b >= 0xC2 and b <= 0xDF and 2) or 0
  if want ~= n or (b == 0xC2 and seq:byte(2) < 0xA0) then return ("?"):rep(n) end
  return seq
end

function M.neutral(s)
  s = s:gsub("%c", "?")
  if not s:find("[\128-\255]") then return s end
  return (s:gsub("[\128-\255][\128-\191]*", utf8_only))
end

local neutral = M.neutral

function M.usage_error(env, cmd, msg)
  env.stderr:write("rctasks: ", neutral(msg), "\n", "Run `rctasks ", cmd and (cmd .. " ") or "",
    "--help` for usage.\n")
  return M.EXIT.usage
end

function M.pad(s, n) return s .. string.rep(" ", n - #s) end

-- Aligned columns: rows of strings, the first row the header; the last column is not padded.
function M.table_text(rows)
  local widths = {}
  for _, r in ipairs(rows) do
    for j, cell in ipairs(r) do widths[j] = math.max(widths[j] or 0, #cell) end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for j, cell in ipairs(r) do cells[j] = j < #r and M.pad(cell, widths[j]) or cell end
    out[#out + 1] = table.concat(cells, "  ")
  end
  return table.concat(out, "\n") .. "\n"
end

-- The printers of one run: `show` for text, `json` for --json values, both through the client's
-- redactor.
function M.printers(client)
  local function show(v)
    if v == nil then return "-" end
    return neutral(client:redact(tostring(v)))
  end
  local function scrub(v, seen)
    if type(v) == "string" then return client:redact(v) end
    if type(v) ~= "table" or seen[v] then return v end
    seen[v] = true
    local out = {}
    for k, x in pairs(v) do out[scrub(k, seen)] = scrub(x, seen) end
    return out
  end
  local function json(v)
    if type(v) == "table" and next(v) == nil then return "[]" end -- cjson 2.1.0 writes {} for any empty table
    local ok, s = pcall(cjson.encode, scrub(v, {}))
    if not ok then return nil, "cannot print as JSON: " .. tostring(s) end
    -- cjson leaves C1 controls raw; as \u escapes they are the same JSON and harmless to a terminal
    return (s:gsub("\194([\128-\159])", function(c) return string.format("\\u%04x", c:byte()) end))
  end
  return show, json
end

-- One table cell: a long one is shown by its size (every row is padded to the widest cell).
local CELL_MAX = 100
function M.cell(s) return #s <= CELL_MAX and s or "(" .. #s .. " bytes)" end

function M.print_json(env, json, v)
  local s, why = json(v)
  if not s then env.stderr:write("rctasks: ", why, "\n"); return M.EXIT.api end
  env.stdout:write(s, "\n")
  return M.EXIT.ok
end


return M
