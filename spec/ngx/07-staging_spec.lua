-- nginx reads code only from its own prefix (scripts/stage), as an installed deployment does: its
-- workers (nobody, when the master is root) then work from a checkout they cannot read, such as a
-- clone under /root or in a `mktemp -d`. Proven here from a private copy of this checkout.
local sim = require "helpers.sim"
local sys = require "helpers.sys"
local H = require "ngx.harness"

local ROOT_USER = sys.sh("test $(id -u) = 0")

-- True when user nobody can read `path` (only asked as root: otherwise workers run as us).
local function nobody_reads(path)
  return sys.sh("setpriv --reuid=$(id -u nobody) --regid=$(id -g nobody) --clear-groups test -r " .. path)
end

-- The entries of a config's lua_package_path and lua_package_cpath, the default (;;) left out.
local function lua_paths(conf)
  local out = {}
  for _, directive in ipairs({ "lua_package_path", "lua_package_cpath" }) do
    for entry in (conf:match(directive .. '%s+"([^"]*)"') or ""):gmatch("[^;]+") do out[#out + 1] = entry end
  end
  return out
end

-- Every Lua search path of the config at `dir`/nginx.conf lies inside `dir`.
local function assert_paths_inside(dir)
  local entries = lua_paths(assert(H.read(dir .. "/nginx.conf")))
  assert.is_true(#entries >= 2, "no lua_package_path in " .. dir .. "/nginx.conf")
  for _, entry in ipairs(entries) do assert.is_true(entry:sub(1, #dir + 1) == dir .. "/", entry) end
end

describe("nginx with its code staged into its prefix", function()
  local private, srv

  setup(function()
    -- What nginx needs of a checkout, copied into a directory of mode 0700 (mktemp -d).
    private = H.tmpdir()
    assert(sys.sh(("mkdir -p %s/build %s/spec/ngx && cp -R scripts lua sim %s/ && cp -R build/jit %s/build/"
      .. " && cp spec/ngx/handlers.lua spec/ngx/redis_handlers.lua %s/spec/ngx/")
      :format(private, private, private, private, private)))
    srv = H.start(H.config{
      workers = 1,
      server = table.concat({
        "    client_body_buffer_size 1k;",
        "    default_type application/json;",
        -- nothing is preloaded in the master: handlers, rctasks and its core load here, in the worker
        "    location = /ping { content_by_lua_block { require('handlers').ping() } }",
        "    location = /whoami { content_by_lua_block {",
        "      local status = io.open('/proc/self/status'):read('*a')",
        "      ngx.say(require('cjson').encode{ uid = tonumber(status:match('\\nUid:%s*(%d+)')),",
        "        handlers = debug.getinfo(require('handlers').ping, 'S').source,",
        "        client = debug.getinfo(require('rctasks').new, 'S').source,",
        "        core = package.searchpath('rctasks.core', package.cpath) })",
        "    } }",
        "    location = /body { client_body_in_file_only clean; content_by_lua_block {",
        "      ngx.req.read_body()",
        "      local path = ngx.req.get_body_file()",
        "      local f = io.open(path, 'rb')",
        "      ngx.say(require('cjson').encode{ path = path, size = #f:read('*a') })",
        "      f:close()",
        "    } }",
        "    location = /log { content_by_lua_block {",
        "      ngx.log(ngx.WARN, 'staged worker logs ', ngx.var.arg_m)",
        "      ngx.say('ok')",
        "    } }",
      }, "\n"),
    }, { root = private })
  end)

  teardown(function()
    if srv then srv:stop() end
    if private then sys.sh("rm -rf " .. private) end
  end)

  it("starts from a copy of the checkout that nginx's workers cannot read", function()
    if ROOT_USER then
      assert.is_false(nobody_reads(private .. "/lua/rctasks/init.lua"), "the copy should be private")
      assert.is_true(nobody_reads(srv.dir .. "/share/lua/5.1/rctasks/init.lua"))
    end
    assert.equal(200, (srv:get("/ping")))
  end)

  it("runs its workers as an unprivileged user, loading every module from the prefix", function()
    local status, v = srv:get("/whoami")
    assert.equal(200, status, type(v) == "string" and v or nil)
    assert.are_not.equal(0, v.uid)
    assert.equal("@" .. srv.dir .. "/share/lua/5.1/handlers.lua", v.handlers)
    assert.equal("@" .. srv.dir .. "/share/lua/5.1/rctasks/client.lua", v.client)
    assert.equal(srv.dir .. "/lib/lua/5.1/rctasks/core.so", v.core)
  end)

  it("points lua_package_path and lua_package_cpath into the prefix only", function()
    assert_paths_inside(srv.dir)
  end)

  it("writes request bodies to its temp path in the prefix", function()
    local body = ("0123456789abcdef"):rep(4096)
    local status, v = srv:post("/body", nil, 10, body)
    assert.equal(200, status, type(v) == "string" and v or nil)
    assert.equal(#body, v.size)
    assert.equal(srv.dir .. "/tmp/body/", v.path:sub(1, #srv.dir + 10))
  end)

  it("writes the worker's log lines to the prefix's error log", function()
    local marker = "m" .. sim.hex(8)
    assert.equal(200, (srv:get("/log?m=" .. marker)))
    assert.truthy(H.log(srv):find("staged worker logs " .. marker, 1, true))
  end)

  it("starts the simulator from the private copy: its worker requires rcsim from the sim's prefix", function()
    local dir = H.tmpdir()
    finally(function()
      sys.sh(private .. "/scripts/sim stop " .. dir)
      sys.sh("rm -rf " .. dir)
    end)
    assert.is_true(sys.sh(private .. "/scripts/sim start " .. dir), H.read(dir .. "/error.log"))
    assert.is_nil(H.read(dir .. "/nginx.conf"):find("init_by_lua", 1, true), "rcsim must not need a master preload")
    assert_paths_inside(dir)
    local port = tonumber(assert(H.read(dir .. "/url")):match(":(%d+)/"))
    local status, v = H.get({ port = port }, "/v1/tasks", { ["x-api-key"] = "k-staged-sim",
                                                           ["x-api-secret-key"] = "s-staged-sim" })
    assert.equal(200, status, type(v) == "string" and v or nil)
    assert.same({}, v.tasks)
  end)
end)
