-- Every coordination store behaves alike (lua/rctasks/store/memory.lua documents the interface):
-- the in-process memory store always, the Redis store against a real redis-server when the suite
-- has one (RCTASKS_REDIS_URL; make test starts one). The nginx shared-dict store runs the same
-- checks inside nginx (spec/ngx).
local core = require "rctasks.core"
local socket = require "socket"

local function unique(prefix)
  return prefix .. ":" .. string.format("%x%x", os.time(), math.random(1, 2 ^ 30)) .. ":"
end

local files = {}
local backends = {
  { name = "memory", new = function() return require("rctasks.store.memory").new() end },
  { name = "file", new = function()
      files[#files + 1] = os.tmpname()
      return assert(require("rctasks.store.file").new{ path = files[#files] })
    end },
}
teardown(function() for _, f in ipairs(files) do os.remove(f); os.remove(f .. ".lock") end end)
local redis_url = os.getenv("RCTASKS_REDIS_URL")
if redis_url and redis_url ~= "" then
  backends[#backends + 1] = { name = "redis", new = function()
    return require("rctasks.store.redis").new{ url = redis_url, timeout = 2 }
  end }
end

local function sleep(s) socket.sleep(s) end

for _, b in ipairs(backends) do
  describe("the " .. b.name .. " store", function()
    local st, p
    before_each(function() st, p = b.new(), unique("t") end)

    it("gets what was set, false for what never was, and forgets at the ttl", function()
      assert.is_false(st:get(p .. "none"))
      assert.is_true(st:set(p .. "a", "1"))
      assert.equal("1", st:get(p .. "a"))
      assert.is_true(st:set(p .. "b", "2", 0.3))
      assert.equal("2", st:get(p .. "b"))
      sleep(0.45)
      assert.is_false(st:get(p .. "b"))
      assert.equal("1", st:get(p .. "a"))
    end)

    it("adds only what is absent, and deletes", function()
      assert.is_true(st:add(p .. "k", "first", 10))
      assert.is_false(st:add(p .. "k", "second", 10))
      assert.equal("first", st:get(p .. "k"))
      assert.is_true(st:delete(p .. "k"))
      assert.is_false(st:get(p .. "k"))
      assert.is_true(st:add(p .. "k", "third", 10))
    end)

    it("lists the live keys under a prefix, sorted", function()
      st:set(p .. "x:2", "b"); st:set(p .. "x:1", "a"); st:set(p .. "y:1", "c"); st:set(p .. "x:3", "d", 0.2)
      sleep(0.3)
      assert.same({ p .. "x:1", p .. "x:2" }, st:keys(p .. "x:"))
    end)

    it("leases to one owner at a time; the owner renews and releases; another takes over at the ttl", function()
      assert.is_true(st:lease(p .. "l", "a", 0.4))
      assert.is_false(st:lease(p .. "l", "b", 0.4))
      assert.is_true(st:lease(p .. "l", "a", 0.4)) -- renewed
      assert.is_true(st:release(p .. "l", "b"))    -- not b's: nothing released
      assert.is_false(st:lease(p .. "l", "b", 0.4))
      sleep(0.55)
      assert.is_true(st:lease(p .. "l", "b", 0.4)) -- a's lease ran out
      assert.is_true(st:release(p .. "l", "b"))
      assert.is_true(st:lease(p .. "l", "c", 0.4))
    end)

    it("counts a budget: never more than `limit` sends in any window", function()
      local sent = {}
      local t0 = core.now()
      while #sent < 7 do
        local wait = st:budget(p .. "budget", 3, 0.5)
        assert.is_number(wait)
        if wait == 0 then sent[#sent + 1] = core.now() else
          assert.is_true(wait > 0 and wait <= 0.5 + 0.05, "wait " .. wait)
          sleep(wait)
        end
        assert.is_true(core.now() - t0 < 5)
      end
      for i = 4, #sent do
        assert.is_true(sent[i] - sent[i - 3] >= 0.5 - 0.02, ("4 sends within %.3fs"):format(sent[i] - sent[i - 3]))
      end
    end)

    it("takes the server's count of used sends: budget_used fills the window", function()
      assert.equal(0, st:budget(p .. "b", 5, 10))
      assert.is_true(st:budget_used(p .. "b", 5, 5, 10))
      assert.is_true(st:budget(p .. "b", 5, 10) > 0)
    end)

    if b.name == "file" then
      it("is shared by the processes of one host: another store on the same file sees it all", function()
        local other = assert(require("rctasks.store.file").new{ path = st.path })
        st:set(p .. "s", "v")
        assert.equal("v", other:get(p .. "s"))
        assert.is_true(st:lease(p .. "lease", "a", 5))
        assert.is_false(other:lease(p .. "lease", "b", 5))
      end)

      it("reads a file cut mid-record, or holding garbage, up to its last whole record, and says so once", function()
        local warned = {}
        local f = files[#files]
        st:set(p .. "a", "1")
        local h = assert(io.open(f, "ab"))
        h:write('not json at all\n{"k":"' .. p .. 'b","v":"2"}\n{"k":"cut')
        h:close()
        local s2 = assert(require("rctasks.store.file").new{ path = f, warn = function(m) warned[#warned + 1] = m end })
        assert.equal("1", s2:get(p .. "a"))
        assert.equal("2", s2:get(p .. "b"))
        assert.is_true(s2:set(p .. "c", "3")) -- on a line of its own, after the cut one
        assert.equal("3", s2:get(p .. "c"))
        assert.equal(1, #warned)
        assert.matches("2 unreadable line", warned[1], 1, true)
      end)
    end

    if b.name == "redis" then
      it("is shared: a second store on the same server sees the same keys, leases and budget", function()
        local other = b.new()
        assert.is_true(st.shared)
        st:set(p .. "s", "v")
        assert.equal("v", other:get(p .. "s"))
        assert.is_true(st:lease(p .. "lease", "a", 5))
        assert.is_false(other:lease(p .. "lease", "b", 5))
        assert.equal(0, st:budget(p .. "shared", 1, 5))
        assert.is_true(other:budget(p .. "shared", 1, 5) > 0)
      end)

      it("answers nil, err (never raises) when the server cannot be reached", function()
        local port = require("helpers.sys").free_port()
        local dead = require("rctasks.store.redis").new{ url = "redis://127.0.0.1:" .. port .. "/0", timeout = 0.3 }
        for _, call in ipairs({ function() return dead:get("k") end, function() return dead:set("k", "v") end,
                                function() return dead:lease("k", "o", 1) end,
                                function() return dead:budget("k", 1, 1) end, function() return dead:keys("k") end }) do
          local ok, v, err = pcall(call)
          assert.is_true(ok, tostring(v))
          assert.is_nil(v)
          assert.is_string(err)
        end
      end)
    end
  end)
end
