-- apply.lua: applies one summary event to the app summaries of one cluster, atomically.
--
-- KEYS[1]  the cluster's key base, <prefix>{<cluster>}:
-- ARGV[1]  operation: obj | app | cluster
-- ARGV[2]  cluster name, ARGV[3] the channel summary changes are published on
-- ARGV[4]  kind of object: p (pods), w (workflows) or a (Argo CD Applications)
-- ARGV[5]  now: the store's clock, Unix milliseconds
-- ARGV[6]  cut (snapshots): Unix milliseconds; what was stored before it claiming to be
--          newer than the snapshot is forged (below). 0: none
--   obj      ARGV[7..10] namespace, app, uid, entry
--   app      ARGV[7..9] namespace, app, revision; then uid, entry pairs
--   cluster  ARGV[7] revision; then "namespace/app" of every app listed
--
-- Keys under the base:
--   o:<ns>/<app>  hash: "<kind>:<uid>" -> entry, the app's objects (tombstones included)
--   s:<ns>        hash: app -> summary JSON
--   apps          set of "<ns>/<app>" that have objects
--   f             hash: floors. "<kind>" -> revision of the newest cluster snapshot,
--                 "<kind>:<ns>/<app>" -> revision of the app's newest app snapshot
--   l:<kind>      set of "<ns>/<app>" listed in the newest cluster snapshot
--   t:<ns>/<app>  hash: "<kind>:<uid>" -> when the entry was stored (now), for each entry
--   ft            hash: floor field -> when the floor was set
--
-- An entry is the object's ordering key (20 digits), a flag (L live, T tombstone), then,
-- for a live object, its state as JSON, times written as YYYYMMDDhhmmss numbers. Of two
-- entries of one object the greater wins: the newer ordering key, a tombstone over a live
-- state of the same key, then the greater state compared byte by byte, so that the result
-- never depends on arrival order. Ordering keys are at most 2^53, exact as Lua numbers.
-- An object not yet known whose key is at or below the floor covering its app is ignored:
-- a snapshot at that revision found it gone.
--
-- Rounds are authoritative. A snapshot at revision R whose listing began at time L (its
-- cut is L less the clocks' skew) covers everything stored before the cut: an entry or a
-- floor stored then with a key above R is from the future, since every change the cluster
-- made before L has a revision at or below R; no cluster produces it, so it was forged
-- (or is left from another cluster's revisions) and the snapshot replaces it like an older
-- one. An entry above R stored after the cut may be a real change that raced the round's
-- events, and is kept.
--
-- Returns the number of summaries that changed.

local base, op, cluster, channel, kind = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, cut = ARGV[5], tonumber(ARGV[6])
local FLOORS = base .. 'f'
local FSTAMPS = base .. 'ft'
local APPS = base .. 'apps'
local LISTED = base .. 'l:' .. kind
local KP = kind .. ':'

-- bytecmp compares byte strings (-1, 0, 1). Lua's own string comparison follows the
-- server's collation locale; states and names must compare as bytes. It is only needed
-- to break ties, which are rare.
local function bytecmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  for k = 1, n do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then
      if x < y then return -1 end
      return 1
    end
  end
  if #a < #b then return -1 end
  return 1
end

local function ord(entry) return tonumber(string.sub(entry, 1, 20)) end
local function live(entry) return string.byte(entry, 21) == 76 end -- 'L'

-- newer says whether entry a wins over entry b of the same object.
local function newer(a, b)
  local oa, ob = ord(a), ord(b)
  if oa ~= ob then return oa > ob end
  local fa, fb = string.byte(a, 21), string.byte(b, 21)
  if fa ~= fb then return fa > fb end -- 'T' (tombstone) > 'L'
  return bytecmp(a, b) > 0
end

local function floor(field) return tonumber(redis.call('HGET', FLOORS, field) or '0') end

-- future says whether a key above rev stored at stamp (nil: unknown, as before stamps
-- were kept) is one the snapshot at rev covers: stored before its cut.
local function future(key, stamp, rev)
  return cut > 0 and key > rev and tonumber(stamp or '0') < cut
end

-- stale says whether a floor is no bar to a snapshot at rev: below it, or from the
-- future. A snapshot at the floor's own revision is applied again when it has a cut: the
-- cluster may not have moved since the last round, and what was forged since must still
-- go; for everything else applying it again changes nothing.
local function stale(field, rev)
  local f = floor(field)
  return f < rev or (f == rev and cut > 0) or future(f, redis.call('HGET', FSTAMPS, field), rev)
end

local function setFloor(field, rev)
  redis.call('HSET', FLOORS, field, rev)
  redis.call('HSET', FSTAMPS, field, now)
end
local function enc(s) return cjson.encode(s) end

-- stamp writes a YYYYMMDDhhmmss number as RFC 3339.
local function stamp(n)
  local s = string.format('%014.0f', n)
  return string.sub(s, 1, 4) .. '-' .. string.sub(s, 5, 6) .. '-' .. string.sub(s, 7, 8) .. 'T' ..
    string.sub(s, 9, 10) .. ':' .. string.sub(s, 11, 12) .. ':' .. string.sub(s, 13, 14) .. 'Z'
end

-- summarize derives the app's summary from its live objects, stores it (or removes it
-- when none is left) and publishes it when it changed. Returns 1 when it changed.
local function summarize(ns, app)
  local all = redis.call('HGETALL', base .. 'o:' .. ns .. '/' .. app)
  local pods, ready, restarts, succeeded, failing = 0, 0, 0, 0, 0
  local any, rev, updated = false, 0, 0
  local wf, cd, cdf = nil, nil, nil
  for i = 1, #all, 2 do
    local f, v = all[i], all[i + 1]
    if live(v) then
      any = true
      local o = ord(v)
      if o > rev then rev = o end
      local d = cjson.decode(string.sub(v, 22))
      local k = string.byte(f, 1)
      if k == 112 then -- 'p'
        pods = pods + 1
        restarts = restarts + d.rs
        if d.ph == 'Succeeded' then
          succeeded = succeeded + 1
        elseif d.ph == 'Failed' or d.pb ~= '' then
          failing = failing + 1
        end
        if d.r and not d.t and d.ph ~= 'Succeeded' then ready = ready + 1 end
        if d.at > updated then updated = d.at end
      elseif k == 97 then -- 'a'
        -- the Application shown: the least name, then uid (an app normally has one)
        if cd == nil or bytecmp(d.n, cd.n) < 0 or (d.n == cd.n and bytecmp(f, cdf) < 0) then cd, cdf = d, f end
        if d.of > updated then updated = d.of end
      else
        -- the newest workflow: by creation time, then name
        if wf == nil or d.c > wf.c or (d.c == wf.c and bytecmp(d.n, wf.n) > 0) then wf = d end
        if d.c > updated then updated = d.c end
        if d.s > updated then updated = d.s end
        if d.f > updated then updated = d.f end
      end
    end
  end

  local skey = base .. 's:' .. ns
  local old = redis.call('HGET', skey, app)
  local new = false
  if any then
    local active = pods - succeeded
    local state
    if active == 0 then
      state = 'Stopped'
    elseif failing > 0 then
      if ready > 0 then state = 'Degraded' else state = 'Failed' end
    elseif ready == active then
      state = 'Running'
    else
      state = 'Progressing'
    end
    local p = {'{"cluster":', enc(cluster), ',"namespace":', enc(ns), ',"app":', enc(app),
      ',"run":{"state":"', state, '","pods":', string.format('%d', pods),
      ',"ready":', string.format('%d', ready), ',"restarts":', string.format('%d', restarts), '}'}
    if wf then
      local ph = wf.ph
      if ph == '' then ph = 'Pending' end
      p[#p + 1] = ',"cicd":{"workflow":' .. enc(wf.n) .. ',"phase":' .. enc(ph)
      if wf.k ~= '' then p[#p + 1] = ',"task":' .. enc(wf.k) end
      if wf.m ~= '' then p[#p + 1] = ',"message":' .. enc(wf.m) end
      p[#p + 1] = ',"createdAt":"' .. stamp(wf.c) .. '"'
      if wf.s > 0 then p[#p + 1] = ',"startedAt":"' .. stamp(wf.s) .. '"' end
      if wf.f > 0 then p[#p + 1] = ',"finishedAt":"' .. stamp(wf.f) .. '"' end
      p[#p + 1] = '}'
    end
    if cd then
      local sy, h = cd.sy, cd.h
      if sy == '' then sy = 'Unknown' end
      if h == '' then h = 'Unknown' end
      p[#p + 1] = ',"cd":{"application":' .. enc(cd.n) .. ',"sync":' .. enc(sy) .. ',"health":' .. enc(h)
      if cd.hm ~= '' then p[#p + 1] = ',"healthMessage":' .. enc(cd.hm) end
      if cd.r ~= '' then p[#p + 1] = ',"revision":' .. enc(cd.r) end
      if cd.op ~= '' then
        p[#p + 1] = ',"operation":{"phase":' .. enc(cd.op)
        if cd.om ~= '' then p[#p + 1] = ',"message":' .. enc(cd.om) end
        if cd.of > 0 then p[#p + 1] = ',"finishedAt":"' .. stamp(cd.of) .. '"' end
        p[#p + 1] = '}'
      end
      p[#p + 1] = '}'
    end
    if updated > 0 then p[#p + 1] = ',"updatedAt":"' .. stamp(updated) .. '"' end
    p[#p + 1] = ',"revision":"' .. string.format('%.0f', rev) .. '"}'
    new = table.concat(p)
  end
  if new == old then return 0 end
  if new then
    redis.call('HSET', skey, app, new)
  else
    redis.call('HDEL', skey, app)
  end
  redis.call('PUBLISH', channel, '{"cluster":' .. enc(cluster) .. ',"namespace":' .. enc(ns) ..
    ',"app":' .. enc(app) .. ',"summary":' .. (new or 'null') .. '}')
  return 1
end

if op == 'obj' then
  local ns, app, uid, entry = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
  local na = ns .. '/' .. app
  local okey = base .. 'o:' .. na
  local field = KP .. uid
  local cur = redis.call('HGET', okey, field)
  if cur then
    if not newer(entry, cur) then return 0 end
  else
    local eff = floor(KP .. na)
    if redis.call('SISMEMBER', LISTED, na) == 0 then eff = math.max(eff, floor(kind)) end
    if ord(entry) <= eff then return 0 end
  end
  redis.call('HSET', okey, field, entry)
  redis.call('HSET', base .. 't:' .. na, field, now)
  redis.call('SADD', APPS, na)
  return summarize(ns, app)

elseif op == 'app' then
  local ns, app, rev = ARGV[7], ARGV[8], tonumber(ARGV[9])
  local na = ns .. '/' .. app
  local ffield = KP .. na
  if not stale(ffield, rev) then return 0 end
  -- hf: the floor of the newest cluster snapshot, when it found the app gone
  local hf = 0
  if redis.call('SISMEMBER', LISTED, na) == 0 then
    if not stale(kind, rev) then return 0 end
    hf = floor(kind)
    if hf > rev then hf = 0 end -- from the future: no bar
  end
  setFloor(ffield, ARGV[9])
  local okey, tkey = base .. 'o:' .. na, base .. 't:' .. na
  local cur, stamps = {}, {}
  local all = redis.call('HGETALL', okey)
  for i = 1, #all, 2 do cur[all[i]] = all[i + 1] end
  all = redis.call('HGETALL', tkey)
  for i = 1, #all, 2 do stamps[all[i]] = all[i + 1] end
  local listed, changed = {}, false
  for i = 10, #ARGV - 1, 2 do
    local field, entry = KP .. ARGV[i], ARGV[i + 1]
    listed[field] = true
    local c = cur[field]
    if (c and (newer(entry, c) or future(ord(c), stamps[field], rev))) or (not c and ord(entry) > hf) then
      redis.call('HSET', okey, field, entry)
      redis.call('HSET', tkey, field, now)
      cur[field] = entry
      changed = true
    end
  end
  for field, v in pairs(cur) do
    if string.sub(field, 1, 2) == KP and not listed[field] and (ord(v) <= rev or future(ord(v), stamps[field], rev)) then
      redis.call('HDEL', okey, field)
      redis.call('HDEL', tkey, field)
      cur[field] = nil
      changed = true
    end
  end
  if next(cur) == nil then
    redis.call('SREM', APPS, na)
  else
    redis.call('SADD', APPS, na)
  end
  if changed then return summarize(ns, app) end
  return 0

elseif op == 'cluster' then
  local rev = tonumber(ARGV[7])
  if not stale(kind, rev) then return 0 end
  setFloor(kind, ARGV[7])
  redis.call('DEL', LISTED)
  local listed = {}
  for i = 8, #ARGV do listed[ARGV[i]] = true end
  for i = 8, #ARGV, 1000 do
    redis.call('SADD', LISTED, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  -- An app found gone is covered by the cluster floor from now on: its own floor, when
  -- not newer (or from the future), is forgotten, so that floors do not pile up as apps
  -- come and go.
  local floors = redis.call('HGETALL', FLOORS)
  for i = 1, #floors, 2 do
    local f = floors[i]
    local v = tonumber(floors[i + 1])
    if string.sub(f, 1, 2) == KP and not listed[string.sub(f, 3)] and
        (v <= rev or future(v, redis.call('HGET', FSTAMPS, f), rev)) then
      redis.call('HDEL', FLOORS, f)
      redis.call('HDEL', FSTAMPS, f)
    end
  end
  local n = 0
  for _, na in ipairs(redis.call('SMEMBERS', APPS)) do
    if not listed[na] then
      local okey, tkey = base .. 'o:' .. na, base .. 't:' .. na
      local all = redis.call('HGETALL', okey)
      local changed, left = false, 0
      for i = 1, #all, 2 do
        if string.sub(all[i], 1, 2) == KP and
            (ord(all[i + 1]) <= rev or future(ord(all[i + 1]), redis.call('HGET', tkey, all[i]), rev)) then
          redis.call('HDEL', okey, all[i])
          redis.call('HDEL', tkey, all[i])
          changed = true
        else
          left = left + 1
        end
      end
      if left == 0 then redis.call('SREM', APPS, na) end
      if changed then
        local slash = string.find(na, '/', 1, true)
        n = n + summarize(string.sub(na, 1, slash - 1), string.sub(na, slash + 1))
      end
    end
  end
  return n
end
return redis.error_reply('unknown operation ' .. tostring(op))
