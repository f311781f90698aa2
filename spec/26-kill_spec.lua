-- Rerunning after a crash: the demo's stack as one keyed pipeline with a journal file, killed
-- with SIGKILL at 50 points chosen at random (seeded; the seed and the points are printed) and
-- rerun after each kill. A point is a request number and a moment: just before the request is
-- sent, or just after its answer arrived and before rctasks saw it (the crash window). A point
-- past the end of a run kills nothing and is drawn again; a stack that gets built is followed by
-- another one (its own names and key), until 50 kills have landed. At the end the simulator must
-- hold exactly one of each resource per stack, every step completed, and no task of a create that
-- no step owns. The same kills without the journal, the control, make duplicates.
local cjson = require "cjson"
local sim = require "helpers.sim"
local sys = require "helpers.sys"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local SEED = tonumber(os.getenv("RCTASKS_KILL_SEED")) or os.time()
local KILLS = 50

-- One run of the stack worker; returns its JSON lines (none when killed before it printed).
local function stack(acct, journal, kill_at, name)
  local vars = { WORKER_KEY = acct.key, WORKER_SECRET = acct.secret, WORKER_URL = sim.url(),
                 WORKER_JOURNAL = journal or "", WORKER_GUARD_WAIT = 0.1, WORKER_GUARD_TTL = 0.5,
                 WORKER_LAG = 0.5, WORKER_KILL_AT = kill_at or "", WORKER_STACK = name or "stack" }
  local env = {}
  for k, v in pairs(vars) do env[#env + 1] = k .. "=" .. quote(v) end
  local out = os.tmpname()
  sys.sh("env " .. table.concat(env, " ") .. " " .. sys.LUA .. " spec/helpers/worker.lua stack > " .. out
    .. " 2>&1", true)
  local lines = {}
  for l in (sys.read(out) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(cjson.decode, l)
    if ok and type(v) == "table" then lines[#lines + 1] = v end -- (a shell may add "Killed")
  end
  os.remove(out)
  return lines
end

local KINDS = { subscription = 1, database = 2, acl_role = 1, acl_user = 1 }

-- A kill point: a request number up to `requests` (what a whole run sends), before or after.
local function point(requests)
  return math.random(1, requests) .. ":" .. (math.random() < 0.5 and "before" or "after")
end

describe("the stack killed 50 times", function()
  local requests -- what a run that is never killed sends, on an account of its own
  setup(function()
    local lines = stack(sim.account(), os.tmpname())
    local last = lines[#lines]
    assert(last and last.requests, "the stack did not run: " .. cjson.encode(lines))
    requests = last.requests
  end)

  it("with a journal: exactly one of each resource per stack, every step completed, no orphan task", function()
    local acct, journal = sim.account(), os.tmpname()
    math.randomseed(SEED)
    local kills, g = {}, 1
    while #kills < KILLS do
      local at = point(requests)
      local lines = stack(acct, journal, at, "stack" .. g)
      assert.is_false(lines[1] ~= nil and not lines[1].ok, "a run failed: " .. cjson.encode(lines))
      if lines[1] then -- the point was past this run's end: the stack is built
        g = g + 1
      else
        kills[#kills + 1] = g .. "/" .. at
      end
    end
    local lines = stack(acct, journal, nil, "stack" .. g) -- the last stack's last run, never killed
    assert.is_true(lines[1] and lines[1].ok, cjson.encode(lines))
    local stacks = g
    print(string.format("\n  kill test: seed %d (RCTASKS_KILL_SEED=%d replays it), %d requests a run; "
      .. "stack/request:moment of each kill: %s", SEED, SEED, requests, table.concat(kills, " ")))
    local st = sim.stats(acct.key)
    for kind, want in pairs(KINDS) do
      assert.equal(want * stacks, st.created[kind], kind .. ": " .. cjson.encode(st.created))
    end
    assert.equal(3 + stacks, st.resources.acl_rule) -- the three default rules and one per stack
    assert.equal(stacks, st.created.acl_rule)
    -- every step of every stack completed in the journal
    local jmod = require "rctasks.journal"
    local store = assert(require("rctasks.store.file").new(journal))
    local records = assert(jmod.all(store))
    local owned = {}
    for _, r in ipairs(records) do
      assert.equal("completed", r.record.state, r.key)
      if r.record.id then owned[tostring(r.record.id)] = true end
    end
    assert.equal(6 * stacks, #records)
    -- no lost task: each create that made something made what a step owns
    local s, body = sim.request("GET", "/tasks", acct.key, acct.secret)
    assert.equal(200, s)
    local orphans = 0
    for _, t in ipairs(sim.decode(body).tasks) do
      local rid = type(t.response) == "table" and t.response.resourceId
      if t.commandType:find("CreateRequest$") and t.status == "processing-completed" and rid
         and not owned[tostring(rid)] then
        orphans = orphans + 1
      end
    end
    assert.equal(0, orphans)
    print(string.format("  kill test with the journal: %d kills over %d stacks, each 1 subscription, "
      .. "2 databases, 1 rule, 1 role, 1 user: 0 duplicates, 0 lost tasks", KILLS, stacks))
    os.remove(journal)
  end)

  it("without the journal (the control): the reruns create duplicates", function()
    local acct = sim.account()
    math.randomseed(SEED)
    for _ = 1, 10 do stack(acct, nil, point(requests)) end
    local st = sim.stats(acct.key)
    local extra = 0
    for kind, want in pairs(KINDS) do extra = extra + math.max(0, (st.created[kind] or 0) - want) end
    assert.is_true((st.created.subscription or 0) > 1, cjson.encode(st.created))
    print(string.format("  kill test without the journal: 10 kills left %d subscriptions, %d databases "
      .. "(%d resources too many)", st.created.subscription or 0, st.created.database or 0, extra))
  end)
end)
