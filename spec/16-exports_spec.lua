-- The C core exports one symbol, luaopen_rctasks_core, however it is compiled: nginx loads many
-- modules into one process, where an exported rc_* could collide with another module's.
local sys = require "helpers.sys"

-- Defined dynamic symbols of a shared object, sorted (the linker's _init and _fini left out).
local function exports(so)
  local p = assert(io.popen("nm -D --defined-only " .. so .. " 2>&1"))
  local names = {}
  for line in p:lines() do
    local name = line:match("^%x*%s+%a%s+(%S+)$")
    assert(name, "nm: " .. line)
    if name ~= "_init" and name ~= "_fini" then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  return names
end

describe("the core's exported symbols", function()
  it("are luaopen_rctasks_core alone in both builds of make build", function()
    for _, so in ipairs({ "build/5.4/rctasks/core.so", "build/jit/rctasks/core.so" }) do
      assert(sys.read(so), so .. " missing: run make build")
      assert.same({ "luaopen_rctasks_core" }, exports(so), so)
    end
  end)

  it("are luaopen_rctasks_core alone when compiled with no visibility flag (as LuaRocks does)", function()
    local dir = assert(io.popen("mktemp -d /tmp/rctasks-exports.XXXXXX")):read("*l")
    finally(function() sys.sh("rm -rf " .. dir) end)
    for _, cc in ipairs({ "gcc", "clang" }) do
      local so = dir .. "/" .. cc .. ".so"
      assert(sys.sh(cc .. " -O0 -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -shared $(pkg-config --cflags lua5.4)"
        .. " -o " .. so .. " csrc/*.c $(pkg-config --libs libcurl)"), cc)
      assert.same({ "luaopen_rctasks_core" }, exports(so), cc)
    end
  end)
end)
