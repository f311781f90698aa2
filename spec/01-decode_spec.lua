-- The C core's JSON decoder and task model: every shape the Redis Cloud API sends (the README lists them),
-- strict JSON edge cases, and the wrong shapes that must fail with a message naming the field.
local core = require "rctasks.core"

local ok_task, task_mod = pcall(require, "rctasks.task")
local MT = ok_task and task_mod.mt or { __index = {} }

local HAS_INT = math.type ~= nil

local function decode_ok(s)
  local v, err = core.decode(s)
  assert(v ~= nil, ("expected %q to decode, got: %s"):format(s, tostring(err)))
  return v
end

local function decode_fails(s)
  local v, err = core.decode(s)
  assert(v == nil, ("expected %q to fail, got a %s"):format(s, type(v)))
  assert.is_string(err)
  return err
end

-- luacheck: push ignore 631 (the API's example, verbatim)
local EXAMPLE = [[
{
  "taskId": "784299af-17ea-4ed6-b08f-dd643238c8dd",
  "commandType": "fixedDatabaseCreateRequest",
  "status": "processing-completed",
  "description": "Request processing completed successfully and its resources are now being provisioned / de-provisioned.",
  "timestamp": "2024-05-10T14:14:34.153537279Z",
  "response": { "resourceId": 51055029, "additionalResourceId": 111728 },
  "links": [
    { "rel": "resource", "type": "GET", "href": "https://api.redislabs.com/v1/fixed/subscriptions/111728/databases/51055029" },
    { "rel": "self", "type": "GET", "href": "https://api.redislabs.com/v1/tasks/784299af-17ea-4ed6-b08f-dd643238c8dd" }
  ]
}]]
-- luacheck: pop
local EXAMPLE_ID = "784299af-17ea-4ed6-b08f-dd643238c8dd"

-- A minimal valid task with extra members spliced in (a JSON fragment starting with ',').
local function task_json(extra, id)
  return ('{"taskId":"%s","status":"received"%s}'):format(id or "t-1", extra or "")
end

describe("core.decode (JSON)", function()
  describe("numbers", function()
    it("keeps JSON integers as Lua integers where the VM has them", function()
      local v = decode_ok("[0, 7, -12, 51055029, 9223372036854775807, -9223372036854775808]")
      assert.same({ 0, 7, -12, 51055029 }, { v[1], v[2], v[3], v[4] })
      if HAS_INT then
        for i = 1, #v do assert.equal("integer", math.type(v[i])) end
        assert.equal(math.maxinteger, v[5])
        assert.equal(math.mininteger, v[6])
      end
    end)

    it("turns integers beyond 64 bits into floats instead of wrapping", function()
      local v = decode_ok("[9223372036854775808, -9223372036854775809, 18446744073709551616, "
        .. "123456789012345678901234567890]")
      assert.equal(tonumber("9223372036854775808.0"), v[1])
      assert.equal(tonumber("-9223372036854775809.0"), v[2])
      assert.equal(2 ^ 64, v[3])
      assert.equal(tonumber("123456789012345678901234567890.0"), v[4])
      if HAS_INT then
        for i = 1, 4 do assert.equal("float", math.type(v[i])) end
      end
      assert.is_true(v[1] > 0 and v[2] < 0)
    end)

    it("reads fractions and exponents to the same double as Lua's own parser", function()
      local cases = { "0.1", "1.5", "-2.25", "1e2", "1E-2", "1.5e+3", "0.30000000000000004",
        "1.7976931348623157e308", "5e-324", "2.2250738585072014e-308", "123456789.123456789",
        "0.000001234", "3.141592653589793238462643383279", "1e22", "1e23", "9007199254740993.5",
        "-0.0", "0e0", "100000000000000000000000e-3", "4.9406564584124654e-324" }
      for _, s in ipairs(cases) do
        local v = decode_ok(s)
        assert.equal(tonumber(s), v, s)
        if HAS_INT then assert.equal("float", math.type(v), s) end
      end
    end)

    it("reads a number with hundreds of digits", function()
      local s = "1" .. ("0"):rep(300) .. ".5"
      assert.equal(tonumber(s), decode_ok(s))
    end)

    -- needs a locale whose decimal point is a comma; `localedef -i de_DE -f UTF-8 DIR/de_DE.UTF-8` + LOCPATH=DIR
    local comma_locale
    do
      local old = os.setlocale(nil, "numeric")
      for _, name in ipairs{ "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "nl_NL.UTF-8" } do
        if os.setlocale(name, "numeric") then comma_locale = name; break end
      end
      os.setlocale(old, "numeric")
    end
    local it_locale = comma_locale and it or pending
    it_locale("reads '.' as the decimal point whatever the C locale says", function()
      local old = os.setlocale(nil, "numeric")
      os.setlocale(comma_locale, "numeric")
      local ok, v = pcall(core.decode, "[3.141592653589793238462643, 0.5, 1e-400]")
      os.setlocale(old, "numeric")
      assert(ok, v)
      assert.equal(3.141592653589793, v[1])
      assert.equal(0.5, v[2])
      assert.equal(0, v[3])
    end)

    it("accepts -0 as zero", function()
      assert.equal(0, decode_ok("-0"))
    end)
  end)

  describe("strings", function()
    it("decodes every escape RFC 8259 defines", function()
      assert.equal('"\\/\b\f\n\r\t', decode_ok([["\"\\\/\b\f\n\r\t"]]))
    end)

    it("turns \\u escapes into UTF-8, surrogate pairs included", function()
      assert.equal("\195\169", decode_ok([["\u00e9"]]))
      assert.equal("\226\130\172", decode_ok([["\u20AC"]]))
      assert.equal("\240\159\152\128", decode_ok([["\ud83d\ude00"]]))
      assert.equal("a\0b", decode_ok([["a\u0000b"]]))
      assert.equal("x\239\191\191y", decode_ok([["x\uFFFFy"]]))
    end)

    it("rejects lone and mismatched surrogates", function()
      for _, s in ipairs{ [["\ud800"]], [["\udc00"]], [["\ud800x"]], [["\ud800\u0041"]],
                          [["\ud800\ud800"]], [["\udbff\\"]] } do
        assert.matches("surrogate", decode_fails(s), 1, true)
      end
    end)

    it("rejects bad escapes", function()
      for _, s in ipairs{ [["\x41"]], [["\u12"]], [["\u12G4"]], [["\'"]], [["\U0041"]] } do
        decode_fails(s)
      end
    end)

    it("passes raw UTF-8 through and rejects invalid UTF-8", function()
      assert.equal("gr\195\188\195\159e \240\159\152\128", decode_ok('"gr\195\188\195\159e \240\159\152\128"'))
      for _, bad in ipairs{ "\192\128", "\237\160\128", "\245\128\128\128", "\195", "\128", "\224\128\128" } do
        assert.matches("invalid UTF%-8", decode_fails('"' .. bad .. '"'))
      end
    end)

    it("rejects raw control characters inside strings", function()
      assert.matches("control character", decode_fails('"a\nb"'), 1, true)
      assert.matches("control character", decode_fails('"a\0b"'), 1, true)
      assert.equal("a\127b", decode_ok('"a\127b"'))
    end)

    it("decodes long strings with escapes, and many of them", function()
      local raw = ("abc\\n\\u00e9\\\""):rep(500)
      local want = ("abc\n\195\169\""):rep(500)
      assert.equal(want, decode_ok('"' .. raw .. '"'))
      local parts, wants = {}, {}
      for i = 1, 300 do
        parts[i] = '"' .. ("x"):rep(i) .. "\\t" .. i .. '"'
        wants[i] = ("x"):rep(i) .. "\t" .. i
      end
      assert.same(wants, decode_ok("[" .. table.concat(parts, ",") .. "]"))
    end)
  end)

  describe("objects and arrays", function()
    it("drops object members whose value is null", function()
      local v = decode_ok('{"a": null, "b": 1, "c": {"d": null}}')
      assert.is_nil(v.a)
      assert.equal(1, v.b)
      assert.same({}, v.c)
    end)

    it("keeps nulls inside arrays as core.null so lengths survive", function()
      local v = decode_ok("[1, null, 3, null]")
      assert.equal(4, #v)
      assert.equal(core.null, v[2])
      assert.equal(core.null, v[4])
      assert.equal("userdata", type(core.null))
    end)

    it("lets the last duplicate key win, a null one included", function()
      assert.same({ a = 2 }, decode_ok('{"a":1,"a":2}'))
      assert.same({}, decode_ok('{"a":1,"a":null}'))
      assert.same({ a = 3 }, decode_ok('{"a":1,"a":null,"a":3}'))
    end)

    it("decodes scalars, booleans and empty containers at the top level", function()
      assert.equal("x", decode_ok('"x"'))
      assert.equal(true, decode_ok("true"))
      assert.equal(false, decode_ok("false"))
      assert.equal(core.null, decode_ok("null"))
      assert.same({}, decode_ok("[]"))
      assert.same({}, decode_ok("{}"))
      assert.same({ x = { true, false } }, decode_ok(' \t\r\n{ "x" : [ true , false ] } \n'))
    end)

    it("accepts nesting up to 128 levels and refuses the 129th", function()
      assert.is_table(decode_ok(("["):rep(128) .. ("]"):rep(128)))
      assert.equal("nesting deeper than 128 at byte 129", decode_fails(("["):rep(129) .. ("]"):rep(129)))
      local deep_obj = ('{"a":'):rep(129) .. "1" .. ("}"):rep(129)
      assert.equal("nesting deeper than 128 at byte 641", decode_fails(deep_obj))
      -- a hostile body far deeper than the cap fails fast instead of exhausting the C stack
      assert.matches("nesting deeper than 128", decode_fails(("["):rep(100000)), 1, true)
    end)
  end)

  describe("strictness", function()
    local bad = {
      "", " ", "[1,]", '{"a":1,}', "[,1]", "01", "-01", "00", "1.", ".5", "+1", "1e", "1e+", "-",
      "NaN", "Infinity", "-Infinity", "0x10", "'x'", "{a:1}", '{"a" 1}', '{"a":1 "b":2}', "[1 2]",
      "True", "nul", "tru", "[1] x", "{} {}", '"abc', '"abc\\"', "[1", '{"a":1', "// c\n1", "/* c */1",
      '{"a"}', '{,}', "[", "]", "}", "1 2", '"\t"', "\0",
      "<html><head><title>401 Authorization Required</title></head></html>",
    }

    it("rejects every non-RFC 8259 form", function()
      for _, s in ipairs(bad) do decode_fails(s) end
    end)

    it("names a byte position in every error message", function()
      for _, s in ipairs(bad) do
        assert.matches("at byte %d+$", decode_fails(s))
      end
    end)

    it("points at the offending byte", function()
      assert.equal("expected ':', got '\"' at byte 12", decode_fails('{"taskId"  "x"}'))
      assert.equal("unexpected character 'x' at byte 2", decode_fails("[x]"))
      assert.equal("trailing garbage: unexpected character 'x' at byte 5", decode_fails("[1] x"))
      assert.equal("trailing comma before ']' at byte 4", decode_fails("[1,]"))
      assert.equal("invalid number (leading zero) at byte 2", decode_fails("[01]"))
      assert.equal("unexpected end of input at byte 1", decode_fails(""))
      assert.equal("unterminated string at byte 2", decode_fails('["abc'))
      assert.equal("unterminated string at byte 1", decode_fails('"\\'))
      assert.equal("unterminated string at byte 1", decode_fails('"ab\\u12'))
    end)

    it("raises on a non-string argument, which is misuse", function()
      assert.has_error(function() core.decode(nil) end)
      assert.has_error(function() core.decode(12) end)
      assert.has_error(function() core.decode({}) end)
    end)
  end)
end)

describe("core.decode_task", function()
  it("decodes the API's example task with every field", function()
    local t = assert(core.decode_task(EXAMPLE, MT))
    assert.equal(MT, getmetatable(t))
    assert.equal(EXAMPLE_ID, t.taskId)
    assert.equal("fixedDatabaseCreateRequest", t.commandType)
    assert.equal("processing-completed", t.status)
    assert.matches("^Request processing completed", t.description)
    assert.equal("2024-05-10T14:14:34.153537279Z", t.timestamp)
    assert.equal(51055029, t.response.resourceId)
    assert.equal(111728, t.response.additionalResourceId)
    if HAS_INT then
      assert.equal("integer", math.type(t.response.resourceId))
      assert.equal("integer", math.type(t.response.additionalResourceId))
    end
    assert.equal("https://api.redislabs.com/v1/fixed/subscriptions/111728/databases/51055029", t.links.resource.href)
    assert.equal("GET", t.links.resource.type)
    assert.equal("https://api.redislabs.com/v1/tasks/" .. EXAMPLE_ID, t.links.self.href)
    assert.is_nil(t.links[1])
  end)

  it("maps a HAL _links object with one rel and removes _links", function()
    local t = assert(core.decode_task(task_json(
      ',"_links":{"task":{"href":"https://api.redislabs.com/v1/tasks/t-1",'
      .. '"title":"getTaskStatusUpdates","type":"GET"}}'), MT))
    assert.is_nil(t._links)
    assert.same({ href = "https://api.redislabs.com/v1/tasks/t-1", title = "getTaskStatusUpdates", type = "GET",
                  rel = "task" }, t.links.task)
  end)

  it("maps a HAL _links object with resource and self", function()
    local t = assert(core.decode_task(task_json(
      ',"_links":{"resource":{"href":"https://x/v1/subscriptions/5","type":"GET"},'
      .. '"self":{"href":"https://x/v1/tasks/t-1","type":"GET"}}'), MT))
    assert.equal("https://x/v1/subscriptions/5", t.links.resource.href)
    assert.equal("https://x/v1/tasks/t-1", t.links.self.href)
    assert.is_nil(t._links)
  end)

  it("merges links and _links, the array winning on a shared rel", function()
    local t = assert(core.decode_task(task_json(
      ',"links":[{"rel":"self","href":"array-self"}],'
      .. '"_links":{"self":{"href":"hal-self"},"task":{"href":"hal-task"}}'), MT))
    assert.equal("array-self", t.links.self.href)
    assert.equal("hal-task", t.links.task.href)
    assert.is_nil(t._links)
  end)

  it("keeps a link's title and skips link entries without rel", function()
    local t = assert(core.decode_task(task_json(
      ',"links":[{"href":"no-rel"},{"rel":"task","href":"h","type":"GET","title":"getTaskStatusUpdates"}]'), MT))
    assert.equal("getTaskStatusUpdates", t.links.task.title)
    local n = 0
    for _ in pairs(t.links) do n = n + 1 end
    assert.equal(1, n)
  end)

  it("gives an empty links map for an empty links array", function()
    local t = assert(core.decode_task(task_json(',"links":[]'), MT))
    assert.same({}, t.links)
  end)

  it("keeps an error object of a failed task with all its fields", function()
    local t = assert(core.decode_task(task_json(
      ',"response":{"error":{"type":"FIXED_SUBSCRIPTION_ACCOUNT_ALREADY_HAS_A_FREE_PLAN",'
      .. '"status":"400 BAD_REQUEST","description":"Account already has a free plan","extra":7}}'), MT))
    assert.same({ type = "FIXED_SUBSCRIPTION_ACCOUNT_ALREADY_HAS_A_FREE_PLAN", status = "400 BAD_REQUEST",
                  description = "Account already has a free plan", extra = 7 }, t.response.error)
  end)

  it("turns a string response.error (the spec's form) into {type = ...}", function()
    local t = assert(core.decode_task(task_json(',"response":{"error":"SUBSCRIPTION_NOT_FOUND"}'), MT))
    assert.same({ type = "SUBSCRIPTION_NOT_FOUND" }, t.response.error)
  end)

  it("accepts an absent or empty response and resource objects", function()
    assert.is_nil(assert(core.decode_task(task_json(), MT)).response)
    assert.same({}, assert(core.decode_task(task_json(',"response":{}'), MT)).response)
    local t = assert(core.decode_task(
      task_json(',"response":{"resource":{"costReportId":"c-1"},"additionalInfo":"ok"}'), MT))
    assert.equal("c-1", t.response.resource.costReportId)
    assert.equal("ok", t.response.additionalInfo)
  end)

  it("reads null fields as absent", function()
    local t = assert(core.decode_task(task_json(
      ',"description":null,"commandType":null,"timestamp":null,"response":null,"links":null,"_links":null'), MT))
    for _, k in ipairs{ "description", "commandType", "timestamp", "response", "links", "_links" } do
      assert.is_nil(t[k], k)
    end
  end)

  it("keeps timestamps with 1 and 9 fractional digits as the exact strings", function()
    for _, ts in ipairs{ "2020-11-02T09:05:34.3Z", "2024-05-10T14:14:14.736763484Z" } do
      local t = assert(core.decode_task(task_json(',"timestamp":"' .. ts .. '"'), MT))
      assert.equal(ts, t.timestamp)
    end
  end)

  it("keeps unknown fields as decoded", function()
    local t = assert(core.decode_task(task_json(',"newField":{"x":[1,2]},"flag":true'), MT))
    assert.same({ x = { 1, 2 } }, t.newField)
    assert.is_true(t.flag)
  end)

  describe("wrong shapes", function()
    local cases = {
      { '{"taskId":"t-1","status":3}', "task t-1: field 'status' must be a string, got number" },
      { '{"taskId":"t-1"}', "task t-1: missing field 'status'" },
      { '{"status":"received"}', "task: missing field 'taskId'" },
      { '{"taskId":42,"status":"received"}', "task: field 'taskId' must be a string, got number" },
      { '[{"taskId":"t-1","status":"received"}]', "task: expected an object, got array" },
      { '"t-1"', "task: expected an object, got string" },
      { "null", "task: expected an object, got null" },
      { task_json(',"links":"self"'), "task t-1: field 'links' must be an array, got string" },
      { task_json(',"links":{"self":{"href":"h"}}'), "task t-1: field 'links' must be an array, got object" },
      { task_json(',"links":["h"]'), "task t-1: field 'links[1]' must be an object, got string" },
      { task_json(',"links":[{"rel":"a","href":"h"},null]'), "task t-1: field 'links[2]' must be an object, got null" },
      { task_json(',"links":[{"rel":1,"href":"h"}]'), "task t-1: field 'links[1].rel' must be a string, got number" },
      { task_json(',"links":[{"rel":"self","href":{"u":1}}]'),
        "task t-1: field 'links[1].href' must be a string, got object" },
      { task_json(',"_links":[{"href":"h"}]'), "task t-1: field '_links' must be an object, got array" },
      { task_json(',"_links":{"self":"h"}'), "task t-1: field '_links.self' must be an object, got string" },
      { task_json(',"_links":{"self":{"href":5}}'), "task t-1: field '_links.self.href' must be a string, got number" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[1]:gsub("%s+", " "):sub(1, 70) .. " naming the field", function()
        local t, err = core.decode_task(c[1], MT)
        assert.is_nil(t)
        assert.equal(c[2], err:sub(1, #c[2]))
      end)
    end

    -- Fields waiting does not need keep what the server sent, whatever its type: a wait must not
    -- end in `decode` because of them (the library reads them with type checks).
    local kept = {
      { ',"commandType":1', "commandType", 1 }, { ',"description":false', "description", false },
      { ',"timestamp":1715350474', "timestamp", 1715350474 }, { ',"commandType":[]', "commandType", {} },
      { ',"response":"done"', "response", "done" }, { ',"response":[1]', "response", { 1 } },
      { ',"response":{"resourceId":"51055029"}', "response", { resourceId = "51055029" } },
      { ',"response":{"additionalResourceId":true}', "response", { additionalResourceId = true } },
      { ',"response":{"additionalInfo":3}', "response", { additionalInfo = 3 } },
      { ',"response":{"resource":[1,"x"]}', "response", { resource = { 1, "x" } } },
      { ',"response":{"resource":"x"}', "response", { resource = "x" } },
      { ',"response":{"error":404}', "response", { error = 404 } },
      { ',"response":{"error":{"type":404}}', "response", { error = { type = 404 } } },
    }
    for _, c in ipairs(kept) do
      it("keeps " .. c[1]:sub(2) .. " as sent: waiting does not need it", function()
        local t = assert(core.decode_task(task_json(c[1]), MT))
        assert.same(c[3], t[c[2]])
        assert.equal("t-1", t.taskId)
        local rid = task_mod.resource_id(t) -- the task functions never hand out a wrong type
        assert.is_true(rid == nil or type(rid) == "number")
      end)
    end

    it("names the task id when a field of a real-looking task is wrong", function()
      local bad = EXAMPLE:gsub('"status": "processing%-completed"', '"status": 3')
      local t, err = core.decode_task(bad, MT)
      assert.is_nil(t)
      assert.equal("task " .. EXAMPLE_ID .. ": field 'status' must be a string, got number", err)
    end)

    it("describes a huge garbage taskId in messages instead of quoting any of it", function()
      local id = ("x"):rep(5000)
      local _, err = core.decode_task(task_json(',"status":1', id), MT)
      assert.is_true(#err < 200)
      assert.equal("task <an id of 5000 bytes>: field 'status' must be a string, got number", err)
    end)

    -- A server may echo a key into any string; a cut piece of it would be a key prefix that the
    -- client's redaction (which matches whole keys) cannot find.
    local KEY = "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4Y5z6A7b8C9d0E1f2G3h4"

    it("quotes a taskId whole up to 64 bytes and describes a longer one: never a cut piece", function()
      local _, err = core.decode_task(task_json(',"status":1', KEY:sub(1, 64)), MT)
      assert.equal("task " .. KEY:sub(1, 64) .. ": field 'status' must be a string, got number", err)
      _, err = core.decode_task(task_json(',"status":1', KEY:sub(1, 65)), MT)
      assert.equal("task <an id of 65 bytes>: field 'status' must be a string, got number", err)
      _, err = core.decode_tasks('{"tasks":[' .. task_json(',"status":1', KEY) .. "]}", MT)
      assert.equal("tasks[1] (task <an id of 68 bytes>): field 'status' must be a string, got number", err)
    end)

    it("never quotes a taskId with a NUL or another control byte (it would be cut or break the line)", function()
      local _, err = core.decode_task(task_json(',"status":1', "ab\\u0000" .. KEY:sub(1, 20)), MT)
      assert.equal("task <an id with control characters>: field 'status' must be a string, got number", err)
      _, err = core.decode_task(task_json(',"status":1', "ab\\n" .. KEY:sub(1, 20)), MT)
      assert.equal("task <an id with control characters>: field 'status' must be a string, got number", err)
    end)

    it("quotes a _links name whole up to 64 bytes and describes a longer one", function()
      local _, err = core.decode_task(task_json(',"_links":{"' .. KEY:sub(1, 64) .. '":"h"}'), MT)
      assert.equal("task t-1: field '_links." .. KEY:sub(1, 64) .. "' must be an object, got string", err)
      _, err = core.decode_task(task_json(',"_links":{"' .. KEY .. '":"h"}'), MT)
      assert.equal("task t-1: field '_links.<a name of 68 bytes>' must be an object, got string", err)
      _, err = core.decode_task(task_json(',"_links":{"' .. KEY .. '":{"href":5}}'), MT)
      assert.equal("task t-1: field '_links.<a name of 68 bytes>.href' must be a string, got number", err)
      _, err = core.decode_task(task_json(',"_links":{"a\\u0000' .. KEY .. '":{"href":5}}'), MT)
      assert.equal("task t-1: field '_links.<a name of 70 bytes>.href' must be a string, got number", err)
      _, err = core.decode_task(task_json(',"_links":{"a\\u0000b":{"href":5}}'), MT)
      assert.equal("task t-1: field '_links.<a name with control characters>.href' must be a string, got number", err)
    end)
  end)

  it("returns the JSON error, with its byte position, for a body that is not JSON", function()
    local t, err = core.decode_task("<html><head><title>401 Authorization Required</title>", MT)
    assert.is_nil(t)
    assert.equal("unexpected character '<' at byte 1", err)
  end)

  it("raises on misuse: a non-string body or a metatable that is not a table", function()
    assert.has_error(function() core.decode_task(task_json(), nil) end)
    assert.has_error(function() core.decode_task(task_json(), "mt") end)
    assert.has_error(function() core.decode_task(nil, MT) end)
    assert.has_error(function() core.decode_task(7, MT) end)
  end)
end)

describe("core.decode_tasks", function()
  local TWO = '{"taskId":"a","status":"received"},' .. EXAMPLE

  it("reads the wrapped {\"tasks\": [...]} list the spec documents", function()
    local list = assert(core.decode_tasks('{"tasks":[' .. TWO .. ']}', MT))
    assert.equal(2, #list)
    assert.equal("a", list[1].taskId)
    assert.equal(EXAMPLE_ID, list[2].taskId)
    assert.equal(51055029, list[2].response.resourceId)
    assert.equal("https://api.redislabs.com/v1/tasks/" .. EXAMPLE_ID, list[2].links.self.href)
    for _, t in ipairs(list) do assert.equal(MT, getmetatable(t)) end
  end)

  it("reads a bare array too", function()
    local list = assert(core.decode_tasks("[" .. TWO .. "]", MT))
    assert.equal(2, #list)
    assert.equal(EXAMPLE_ID, list[2].taskId)
    assert.equal(MT, getmetatable(list[2]))
  end)

  it("gives an empty list for empty or missing tasks", function()
    for _, body in ipairs{ "[]", "{}", '{"tasks":[]}', '{"tasks":null}', ' { "other" : 1 } ' } do
      local list, err = core.decode_tasks(body, MT)
      assert.same({}, list, body .. ": " .. tostring(err))
    end
  end)

  it("normalises HAL links and string errors in every task of a list", function()
    local body = '{"tasks":[' .. task_json(',"_links":{"task":{"href":"h1"}}', "x1") .. ","
      .. task_json(',"response":{"error":"GENERAL_ERROR"}', "x2") .. "]}"
    local list = assert(core.decode_tasks(body, MT))
    assert.equal("h1", list[1].links.task.href)
    assert.is_nil(list[1]._links)
    assert.same({ type = "GENERAL_ERROR" }, list[2].response.error)
  end)

  it("names the list index and the task id of a bad task", function()
    local body = '{"tasks":[' .. task_json(nil, "ok-1") .. "," .. task_json(nil, "ok-2") .. ","
      .. '{"taskId":"bad-3","status":["x"]}]}'
    local list, err = core.decode_tasks(body, MT)
    assert.is_nil(list)
    assert.equal("tasks[3] (task bad-3): field 'status' must be a string, got array", err)
  end)

  it("names the index of a task that is not an object", function()
    local _, err = core.decode_tasks("[" .. task_json() .. ",null]", MT)
    assert.equal("tasks[2]: expected an object, got null", err)
    _, err = core.decode_tasks('{"tasks":[{"status":"received"}]}', MT)
    assert.equal("tasks[1]: missing field 'taskId'", err)
  end)

  it("refuses a tasks member that is not an array, and a body that is neither list shape", function()
    local _, err = core.decode_tasks('{"tasks":{"taskId":"a","status":"received"}}', MT)
    assert.equal("field 'tasks' must be an array, got object", err)
    _, err = core.decode_tasks('{"tasks":"none"}', MT)
    assert.equal("field 'tasks' must be an array, got string", err)
    _, err = core.decode_tasks('"tasks"', MT)
    assert.equal("tasks: expected an object or an array, got string", err)
    _, err = core.decode_tasks("[1,]", MT)
    assert.equal("trailing comma before ']' at byte 4", err)
  end)

  it("decodes a large list of generated tasks in order", function()
    local parts = {}
    for i = 1, 2000 do
      parts[i] = ('{"taskId":"id-%d","status":"processing-completed","response":{"resourceId":%d},'
        .. '"links":[{"rel":"self","type":"GET","href":"https://x/v1/tasks/id-%d"}]}'):format(i, i * 7, i)
    end
    local list = assert(core.decode_tasks('{"tasks":[' .. table.concat(parts, ",") .. "]}", MT))
    assert.equal(2000, #list)
    for i = 1, 2000, 97 do
      assert.equal("id-" .. i, list[i].taskId)
      assert.equal(i * 7, list[i].response.resourceId)
      assert.equal("https://x/v1/tasks/id-" .. i, list[i].links.self.href)
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.decode_tasks("[]", false) end)
    assert.has_error(function() core.decode_tasks({}, MT) end)
  end)
end)

describe("core.decode memory", function()
  it("does not let one large sibling inflate thousands of empty ones", function()
    local keys = {}
    for i = 1, 64 do keys[i] = '"k' .. i .. '":' .. i end
    local doc = "[{" .. table.concat(keys, ",") .. "}" .. string.rep(",{},[]", 20000) .. "]"
    collectgarbage(); collectgarbage()
    local before = collectgarbage("count")
    local v = assert(core.decode(doc))
    local grown = collectgarbage("count") - before
    assert.equal(40001, #v)
    assert.is_true(grown < 8 * 1024, string.format("%.0f KiB for a %d KiB document", grown, math.floor(#doc / 1024)))
  end)
end)
