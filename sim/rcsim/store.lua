-- Resource records and their status timelines. A record's whole life is scheduled by the tasks
-- that change it (appear, provisioned, changing, deleting, gone); its status is read lazily.
local M = {}

local counters = {}

-- Ids are integers, per sequence, never reused (not even after /sim/reset).
function M.next_id(name, first)
  local n = counters[name] or first
  counters[name] = n + 1
  return n
end

-- The account's records of `kind`: by id (for kinds without a parent, whose ids are unique) and
-- in creation order.
function M.all(acct, kind)
  local s = acct.records[kind]
  if not s then s = { by_id = {}, list = {} }; acct.records[kind] = s end
  return s
end

-- A new record of `kind` (a family's kind table) that appears at `at` and is provisioned
-- `provision` seconds later, ending in `final`.
function M.add(acct, kind, id, parent, at, provision, final, fields)
  local s = M.all(acct, kind.name)
  local r = { id = id, kind = kind, parent = parent, appear = at, ready = at + provision, final = final,
              fields = fields or {}, changes = {} }
  s.by_id[id] = r
  s.list[#s.list + 1] = r
  return r
end

function M.get(acct, kindname, id)
  local s = acct.records[kindname]
  return s and s.by_id[id] or nil
end

-- Status at `now`, or nil while the record is not visible (not yet, or no more).
function M.status(r, now)
  local w = r.kind.words
  if now < r.appear then return nil end
  if r.gone and now >= r.gone then return w.gone end
  if r.deleting and now >= r.deleting then return w.deleting end
  for i = #r.changes, 1, -1 do
    local c = r.changes[i]
    if now >= c.from and now < c.to then return c.word end
  end
  if now < r.ready then
    local p = w.pending
    local i = math.floor((now - r.appear) / (r.ready - r.appear) * #p) + 1
    return p[math.min(i, #p)]
  end
  return r.final
end

-- Alive at `now`: visible and not on its way out (a change naming it finds it).
function M.alive(r, now)
  if not r or not M.status(r, now) then return false end
  return not (r.deleting and now >= r.deleting)
end

-- Ready at `now`: provisioned, in its ready word, not changing.
function M.ready(r, now) return M.status(r, now) == r.kind.words.ready end

-- `r` reads `word` from `from` to `to` (an update in flight, a child's change).
function M.change(r, from, to, word)
  r.changes[#r.changes + 1] = { from = from, to = to, word = word }
end

-- `r` reads its deleting word from `from`, and is gone from `to`.
function M.remove(r, from, to)
  r.deleting, r.gone = from, to
end

-- Alive records of `kind` whose parent is `parent` (any parent when nil), in creation order.
function M.children(acct, kindname, parent, now)
  local s, l = acct.records[kindname], {}
  if not s then return l end
  for _, r in ipairs(s.list) do
    if (parent == nil or r.parent == parent) and M.status(r, now) and not (r.gone and now >= r.gone) then
      l[#l + 1] = r
    end
  end
  return l
end

return M
