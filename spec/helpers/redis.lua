-- Redis servers for specs: the suite's own (RCTASKS_REDIS_URL; make test starts one) and
-- throwaway ones a spec starts itself through scripts/redis (a password, a restart).
--   local srv = R.start{ auth = true }   srv.url, srv.port, srv.password, srv:restart(), srv:stop()
local sys = require "helpers.sys"

local R = {}

local Server = {}
Server.__index = Server

-- scripts/redis CMD DIR ARGS -> true | false, what it printed (exit status by os.execute: 5.1 too).
local function script(cmd, dir, args)
  local out = dir .. "/script.out"
  local ok = sys.sh(("scripts/redis %s %s %s >%s 2>&1"):format(cmd, dir, args or "", out), true)
  return ok, sys.read(out) or ""
end

-- The suite's server, or nil when there is none.
function R.url()
  local u = os.getenv("RCTASKS_REDIS_URL")
  if u and u ~= "" then return u end
  return nil
end

-- A spec's own server. o.auth: it requires a password (noted for the runner's leak check).
function R.start(o)
  o = o or {}
  local dir = assert(io.popen("mktemp -d /tmp/rctasks-redis-spec.XXXXXX")):read("*l")
  local ok, out = script("start", dir, o.auth and "--auth")
  if not ok then sys.sh("rm -rf " .. dir); error("scripts/redis did not start: " .. out, 2) end
  local srv = setmetatable({ dir = dir, url = sys.read(dir .. "/url"):match("%S+"),
                             port = tonumber(sys.read(dir .. "/port"):match("%d+")) }, Server)
  if o.auth then
    srv.password = sys.read(dir .. "/password"):match("%S+")
    -- The runner greps everything the suite printed for these: no password may show up.
    local log = os.getenv("RCTASKS_TEST_LOG")
    local f = log and log ~= "" and io.open(log, "a")
    if f then f:write(srv.password, "\n"); f:close() end
  end
  return srv
end

-- The same server again on the same port, its data gone (nothing persists).
function Server:restart()
  script("stop", self.dir)
  local ok, out = script("start", self.dir, "--port " .. self.port .. (self.password and " --auth" or ""))
  assert(ok, "scripts/redis did not restart: " .. out)
end

function Server:down() script("stop", self.dir) end

function Server:stop()
  script("stop", self.dir)
  sys.sh("rm -rf " .. self.dir)
end

-- A scripted server (helpers/scripted) answering each command by the payload its second argument
-- names ("GET deep" gets arrays nested 100000 deep, ...); anything else is answered +PONG.
R.HOSTILE = [==[
local forever = function(piece) return function(conn) while conn:send(piece) do end end end
local P = {
  huge_bulk = "$99999999999\r\n", over_cap = "$" .. (8 * 1024 * 1024 + 1) .. "\r\n",
  negative_bulk = "$-2\r\n", negative_array = "*-5\r\n", huge_array = "*4294967296\r\n",
  deep = string.rep("*1\r\n", 100000), garbage = "!oops\r\n", resp3 = "%1\r\n+a\r\n+b\r\n", empty = "\r\n",
  bare_lf = "+OK\n", bad_int = ":12a\r\n", long_int = ":" .. string.rep("9", 30) .. "\r\n",
  bad_len = "$abc\r\n", bulk_no_crlf = "$3\r\nabcXY", nul_type = "\0\r\n",
  endless_line = function(conn) conn:send("+"); forever(string.rep("a", 65536))(conn) end,
  endless_array = forever("*100000\r\n"),
  over_reply = function(conn)
    conn:send("*100000\r\n")
    forever("$1048576\r\n" .. string.rep("x", 1048576) .. "\r\n")(conn)
  end,
  silent = function(conn) conn:sleep(30) end,
  trickle = function(conn) conn:send("$100\r\n"); for _ = 1, 100 do conn:sleep(0.1); conn:send("x") end end,
  drop = function(conn) conn:close() end,
  two_replies = "+ONE\r\n+TWO\r\n",
}
return function(conn)
  while true do
    local cmd = conn:command()
    if not cmd then return end
    local p = P[cmd[2] or ""] or "+PONG\r\n"
    if type(p) ~= "function" then conn:send(p) else p(conn); return conn:close() end
  end
end
]==]

-- What each hostile payload is refused with (a pattern of the message).
R.HOSTILE_CASES = {
  { "huge_bulk", "bulk of 99999999999 bytes" }, { "over_cap", "more than the 8388608 allowed" },
  { "negative_bulk", "negative bulk" }, { "negative_array", "negative array" },
  { "huge_array", "array of 4294967296 elements %(more than the 262144" }, { "deep", "nested deeper" },
  { "garbage", "type byte 0x21" }, { "resp3", "type byte 0x25" }, { "empty", "empty line" },
  { "bare_lf", "without CRLF" }, { "bad_int", "bad integer" }, { "long_int", "bad integer" },
  { "bad_len", "bad bulk length" }, { "bulk_no_crlf", "not ended by CRLF" }, { "nul_type", "type byte 0x00" },
  { "endless_line", "line longer than 65536" },
  { "endless_array", "array of 100000 elements %(more than the 62144 allowed" },
  { "over_reply", "bulk of 1048576 bytes %(more than the %d+ allowed" },
}

return R
