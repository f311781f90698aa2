-- scripts/layers.lua: the require graph of lua/rctasks, checked against the layer order below.
--   lua5.4 scripts/layers.lua [--graph]
-- A module may require modules of lower layers only (and of its own layer when the order within
-- the layer is given by LAYERS); a require cycle or an upward edge fails (exit 1). --graph prints
-- every edge with its layers. `make lint` runs it.
-- Layers, top to bottom: data flows from the script down to the C core, never back up.
local LAYERS = {
  { "app", { "rctasks.cli", "rctasks.cli.journal", "rctasks.cli.out" } },
  { "facade", { "rctasks", "rctasks.background", "rctasks.client" } },
  { "workflow", { "rctasks.workflow", "rctasks.guard", "rctasks.journal", "rctasks.resource",
                  "rctasks.families" } },
  { "poll", { "rctasks.poll", "rctasks.board" } },
  { "executor", { "rctasks.executor" } },
  { "policy", { "rctasks.retry", "rctasks.limiter" } },
  { "store", { "rctasks.store.memory", "rctasks.store.shdict", "rctasks.store.file", "rctasks.store.redis",
              "rctasks.redis" } },
  { "transport", { "rctasks.transport.curl", "rctasks.transport.ngx", "rctasks.transport.http1" } },
  { "base", { "rctasks.check", "rctasks.url", "rctasks.env", "rctasks.errors", "rctasks.task",
              "rctasks.defaults", "rctasks.core" } },
}

local layer_of, rank_in = {}, {}
for i, l in ipairs(LAYERS) do
  for j, m in ipairs(l[2]) do layer_of[m], rank_in[m] = i, j end
end

local root = arg[0]:match("^(.*)/scripts/[^/]*$") or "."
local show = arg[1] == "--graph"

local function module_name(path)
  local rel = path:sub(#root + #"/lua/" + 1):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  return rel
end

local files = {}
local p = assert(io.popen("find " .. root .. "/lua -name '*.lua' | sort"))
for f in p:lines() do files[#files + 1] = f end
p:close()

local edges, modules, problems = {}, {}, {}
for _, f in ipairs(files) do
  local m = module_name(f)
  modules[m] = true
  local src = assert(io.open(f)):read("*a"):gsub("%-%-[^\n]*", "") -- comments name modules too
  edges[m] = {}
  for dep in src:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do
    if dep == "rctasks" or dep:find("^rctasks%.") then
      edges[m][#edges[m] + 1] = dep
    end
  end
end
-- A computed require ("rctasks.transport." .. name) may load any module under that prefix.
for m, deps in pairs(edges) do
  local out = {}
  for _, dep in ipairs(deps) do
    if dep:sub(-1) == "." then
      for other in pairs(modules) do
        if other:sub(1, #dep) == dep then out[#out + 1] = other end
      end
    else
      out[#out + 1] = dep
    end
  end
  table.sort(out)
  edges[m] = out
end

local names = {}
for m in pairs(modules) do names[#names + 1] = m end
table.sort(names)

for _, m in ipairs(names) do
  if not layer_of[m] then problems[#problems + 1] = m .. ": not in any layer (add it to scripts/layers.lua)" end
  for _, dep in ipairs(edges[m]) do
    local lm, ld = layer_of[m], layer_of[dep]
    local ok = lm and ld and (ld > lm or (ld == lm and rank_in[dep] > rank_in[m]))
    if show then
      print(("%-26s -> %-26s %s"):format(m, dep, ok and "" or "UPWARD"))
    end
    if lm and ld and not ok then
      problems[#problems + 1] = ("%s (%s) requires %s (%s): upward or sideways"):format(
        m, LAYERS[lm][1], dep, LAYERS[ld][1])
    end
  end
end

-- Cycles: depth-first search over the edges.
local state = {}
local function visit(m, stack)
  if state[m] == "done" then return end
  if state[m] == "open" then
    local i = #stack
    while stack[i] ~= m do i = i - 1 end
    local cyc = {}
    for k = i, #stack do cyc[#cyc + 1] = stack[k] end
    cyc[#cyc + 1] = m
    problems[#problems + 1] = "require cycle: " .. table.concat(cyc, " -> ")
    return
  end
  state[m] = "open"
  stack[#stack + 1] = m
  for _, dep in ipairs(edges[m] or {}) do visit(dep, stack) end
  stack[#stack] = nil
  state[m] = "done"
end
for _, m in ipairs(names) do visit(m, {}) end

local big = {}
for _, f in ipairs(files) do
  local n = 0
  for _ in io.lines(f) do n = n + 1 end
  if n > 500 then big[#big + 1] = f:sub(#root + 2) .. " has " .. n .. " lines (at most 500)" end
end
for _, b in ipairs(big) do problems[#problems + 1] = b end

for _, pr in ipairs(problems) do print("layers: " .. pr) end
print(("layers: %d modules, %d problems"):format(#names, #problems))
os.exit(#problems == 0 and 0 or 1)
