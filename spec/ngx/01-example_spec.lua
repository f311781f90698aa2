-- examples/nginx.conf, as documented, started with only its port and paths substituted, against
-- the simulator's TLS listener (certificate verified with the CA generated at test time).
local socket = require "socket"
local sim = require "helpers.sim"
local H = require "ngx.harness"

-- The example with this machine's paths: port, the install tree (rctasks staged into the prefix
-- with the layout of /usr/local), the sim's CA, temp paths.
local function example_conf()
  local text = assert(H.read(H.ROOT .. "/examples/nginx.conf"), "examples/nginx.conf missing")
  text = H.replace(text, "listen 127.0.0.1:8080;", "listen 127.0.0.1:@PORT@;")
  text = H.replace(text, '"/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;;"',
    '"@DIR@/share/lua/5.1/?.lua;@DIR@/share/lua/5.1/?/init.lua;;"')
  text = H.replace(text, '"/usr/local/lib/lua/5.1/?.so;;"', '"@DIR@/lib/lua/5.1/?.so;;"')
  text = H.replace(text, "/etc/ssl/certs/ca-certificates.crt", sim.ca())
  text = H.replace(text, "http {\n", "http {\n    " .. H.temp_paths())
  return text
end

describe("examples/nginx.conf", function()
  local srv, acct

  it("is quoted verbatim in the README's OpenResty section", function()
    local readme = assert(H.read(H.ROOT .. "/README.md"))
    local block = readme:match("\n## OpenResty.-```nginx\n(.-)```\n")
    assert.is_string(block, "no nginx block in the README's OpenResty section")
    assert.equal(H.read(H.ROOT .. "/examples/nginx.conf"), block)
  end)

  setup(function()
    acct = sim.account({ step = 0.2 })
    srv = H.start(example_conf(), { stage = { "rctasks" },
                                    env = { REDISCLOUD_ACCESS_KEY = acct.key, REDISCLOUD_SECRET_KEY = acct.secret,
                                            REDISCLOUD_URL = H.tls_url_by_name() } })
  end)

  teardown(function() if srv then srv:stop() end end)

  it("starts and answers /ping", function()
    local status, body = srv:get("/ping")
    assert.equal(200, status)
    assert.equal("pong\n", body)
  end)

  it("GET /tasks/ID answers the task", function()
    local id = sim.task(acct.key, { resourceId = 123 })
    local status, v = srv:get("/tasks/" .. id)
    assert.equal(200, status)
    assert.equal(id, v.taskId)
    assert.equal("subscriptionCreateRequest", v.commandType)
  end)

  it("GET /tasks lists the account's tasks", function()
    local id = sim.task(acct.key, {})
    local status, v = srv:get("/tasks")
    assert.equal(200, status)
    local seen = false
    for _, t in ipairs(v.tasks) do seen = seen or t.taskId == id end
    assert.is_true(seen)
  end)

  it("GET /tasks/ID/wait waits for the task and answers its resource id", function()
    local id = sim.task(acct.key, { resourceId = 51055029, queue = false })
    local status, v = srv:get("/tasks/" .. id .. "/wait")
    assert.equal(200, status)
    assert.equal("processing-completed", v.status)
    assert.equal(51055029, v.resourceId)
  end)

  it("GET /tasks/ID/wait on a failing task answers 422 with the API's error", function()
    local id = sim.task(acct.key, { outcome = "error:DATABASE_NOT_FOUND", queue = false })
    local status, v = srv:get("/tasks/" .. id .. "/wait")
    assert.equal(422, status)
    assert.equal("task", v.kind)
    assert.equal("DATABASE_NOT_FOUND", v.code)
    assert.equal("processing-error", v.task.status)
  end)

  it("GET /tasks/ID of an unknown task answers 404", function()
    local status, v = srv:get("/tasks/0b7e2a52-0000-4000-8000-000000000000")
    assert.equal(404, status)
    assert.equal("http", v.kind)
  end)

  it("POST /tasks/ID/watch answers 202 at once; /outcome shows the result from any worker", function()
    local id = sim.task(acct.key, { resourceId = 777, queue = false })
    local status, v = srv:post("/tasks/" .. id .. "/watch")
    assert.equal(202, status)
    assert.equal("/tasks/" .. id .. "/outcome", v.outcome)
    local r
    for _ = 1, 100 do
      status, r = srv:get("/tasks/" .. id .. "/outcome")
      assert.equal(200, status)
      if r.state ~= "waiting" then break end
      socket.sleep(0.05)
    end
    assert.equal("completed", r.state)
    assert.equal(777, r.resource_id)
  end)

  it("never sends the keys anywhere but the API: answers and error log are free of them", function()
    local _, body = srv:get("/tasks/0b7e2a52-0000-4000-8000-000000000001")
    local all = (type(body) == "table" and body.error or tostring(body)) .. H.log(srv)
    assert.is_nil(all:find(acct.key, 1, true))
    assert.is_nil(all:find(acct.secret, 1, true))
  end)

  it("rides kept-alive TLS connections: a handful of handshakes for many calls", function()
    local before = sim.stats(acct.key)
    for _ = 1, 10 do assert.equal(200, (srv:get("/tasks"))) end
    local after = sim.stats(acct.key)
    assert.equal(10, after.requests - before.requests)
    assert.truthy(after.tls_handshakes - before.tls_handshakes <= 2,
      "handshakes: " .. (after.tls_handshakes - before.tls_handshakes))
  end)
end)
