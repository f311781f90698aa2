-- Scripts side by side: four processes each creating three databases in one subscription at the
-- same time, sharing a journal file (so its locks: one change per subscription at a time, sent
-- once the subscription is active), against a simulator that refuses changes meeting a busy
-- subscription as the API does. And the same without the journal, the control.
local cjson = require "cjson"
local sim = require "helpers.sim"
local sys = require "helpers.sys"
local rctasks = require "rctasks"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs `n` workers at once (spec/helpers/worker.lua MODE); returns each one's decoded lines.
local function side_by_side(n, mode, env_of)
  local dir = os.tmpname()
  os.remove(dir)
  assert(sys.sh("mkdir -p " .. dir))
  local cmds = {}
  for i = 1, n do
    local vars = {}
    for k, v in pairs(env_of(i)) do vars[#vars + 1] = k .. "=" .. quote(v) end
    cmds[i] = "env " .. table.concat(vars, " ") .. " " .. sys.LUA .. " spec/helpers/worker.lua " .. mode ..
      " > " .. dir .. "/out" .. i .. " 2> " .. dir .. "/err" .. i .. " &"
  end
  assert(sys.sh("sh -c " .. quote(table.concat(cmds, " ") .. " wait")))
  local outs = {}
  for i = 1, n do
    local lines = {}
    for l in (sys.read(dir .. "/out" .. i) or ""):gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(l) end
    outs[i] = { lines = lines, stderr = sys.read(dir .. "/err" .. i) or "" }
  end
  sys.sh("rm -rf " .. dir)
  return outs
end

-- A subscription with slow database changes: each keeps it pending for a while after its task.
local function busy_account()
  local acct = sim.account({ step = 0.05, provision = 0.3 })
  local c = rctasks.new{ api_key = acct.key, secret_key = acct.secret, base_url = sim.url() }
  local _, sub = assert(c:run("POST", "/subscriptions", { name = "shared" },
                              { ready = true, interval = 0.05, max_interval = 0.2, timeout = 30 }))
  c:close()
  return acct, sub.id
end

local function run_four(journal)
  local acct, sid = busy_account()
  local outs = side_by_side(4, "databases", function(i)
    return { WORKER_KEY = acct.key, WORKER_SECRET = acct.secret, WORKER_URL = sim.url(), WORKER_SUB = sid,
             WORKER_NAME = "p" .. i, WORKER_DBS = 3, WORKER_JOURNAL = journal or "", WORKER_GUARD_WAIT = 0.2 }
  end)
  local ok, failed, requests = 0, {}, 0
  for i, o in ipairs(outs) do
    assert.equal(4, #o.lines, "worker " .. i .. " printed " .. #o.lines .. " lines; stderr: " .. o.stderr)
    for _, l in ipairs(o.lines) do
      if l.requests then requests = requests + l.requests
      elseif l.ok then ok = ok + 1
      else failed[#failed + 1] = l end
    end
  end
  return { acct = acct, ok = ok, failed = failed, requests = requests, stats = sim.stats(acct.key) }
end

describe("four scripts on one subscription", function()
  it("with a shared journal: all 12 databases created, no error reaches any of them", function()
    local journal = os.tmpname()
    local r = run_four(journal)
    assert.same({}, r.failed)
    assert.equal(12, r.ok)
    assert.equal(12, r.stats.created.database)
    assert.equal(0, r.stats.not_active)   -- no change met a busy subscription
    assert.equal(0, r.stats.busy_refused) -- nor a queue too long
    print(string.format("\n  side by side with the guard: 12 databases, %d requests (%.1f per database)",
      r.requests, r.requests / 12))
    os.remove(journal)
  end)

  it("without it (the control), changes meet a busy subscription and callers get the refusals", function()
    local r = run_four(nil)
    assert.is_true(#r.failed > 0, "no refusal reached any caller")
    assert.is_true(r.stats.not_active > 0)
    for _, f in ipairs(r.failed) do assert.equal("SUBSCRIPTION_NOT_ACTIVE", f.code) end
    assert.equal(12 - #r.failed, r.stats.created.database)
    print(string.format("  side by side without it: %d of 12 refused (SUBSCRIPTION_NOT_ACTIVE), %d requests",
      #r.failed, r.requests))
  end)
end)
