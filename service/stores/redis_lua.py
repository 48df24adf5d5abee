"""The Redis store's Lua: what every script shares, and the front's scripts.

Each script runs atomically on the server: it reads, checks and writes the record, its
indexes (see :mod:`.redis_keys`) and the change feed in one step, so no other process sees
half a change and no two claims can grant one record. Every script gets the same three
leading arguments: the key prefix, the writer id of the store object (so a reader can skip
its own changes) and the feed's approximate length bound. Values are passed and stored as
text: a float's ``repr`` is never turned into a Lua number and back.

The scripts touch keys they build from the prefix rather than keys passed in ``KEYS``:
fine on a single Redis server (or a replicated one), not on Redis Cluster.
"""

from __future__ import annotations

PRELUDE = r"""
local P, WRITER, FEED_MAX = ARGV[1], ARGV[2], ARGV[3]
local TERMINAL = {succeeded = true, failed = true, cancelled = true}

local function int(n) return string.format('%d', n) end
local function record_key(id) return P .. 't:' .. id end

local function load(id)
  local flat = redis.call('HGETALL', record_key(id))
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

local function flatten(h)
  local flat = {}
  for f, v in pairs(h) do flat[#flat + 1] = f; flat[#flat + 1] = v end
  return flat
end

local function idem_field(owner, key)
  if not owner then return '-:' .. key end
  return string.len(owner) .. ':' .. owner .. key
end

-- the sorted sets (by seq) a record of status s is listed in
local function listed_in(h, s)
  local keys = {P .. 's:' .. s, P .. 'n:' .. s .. ':' .. h.name}
  if h.owner then
    keys[3] = P .. 'o:' .. s .. ':' .. h.owner
    keys[4] = P .. 'on:' .. s .. ':' .. string.len(h.owner) .. ':' .. h.owner .. h.name
  end
  return keys
end

local function lane_member(h) return string.format('%016d', tonumber(h.seq)) .. ':' .. h.id end

local function unindex(h)
  local s = h.status
  for _, k in ipairs(listed_in(h, s)) do redis.call('ZREM', k, h.id) end
  if s == 'queued' then
    local lane = P .. 'ready:' .. h.name
    redis.call('ZREM', lane, lane_member(h))
    -- a closed gate (Celery mode) may have woken this record: the next in line is looked
    -- at now (a start sets the gate again in the same script)
    redis.call('ZADD', P .. 'gates', 'XX', 'LT', 0, h.name)
    if redis.call('EXISTS', lane) == 0 then redis.call('SREM', P .. 'names', h.name) end
  elseif s == 'scheduled' then redis.call('ZREM', P .. 'due', h.id)
  elseif s == 'running' then redis.call('ZREM', P .. 'leases', h.id)
  elseif s ~= 'waiting' then redis.call('ZREM', P .. 'done', h.id) end
end

local function index(h)
  local s = h.status
  for _, k in ipairs(listed_in(h, s)) do redis.call('ZADD', k, h.seq, h.id) end
  if s == 'queued' then
    redis.call('ZADD', P .. 'ready:' .. h.name, -tonumber(h.priority), lane_member(h))
    redis.call('SADD', P .. 'names', h.name)
  elseif s == 'scheduled' then redis.call('ZADD', P .. 'due', h.scheduled_at, h.id)
  elseif s == 'running' then redis.call('ZADD', P .. 'leases', h.lease_expires or '0', h.id)
  elseif s ~= 'waiting' then redis.call('ZADD', P .. 'done', h.finished_at or '0', h.id) end
end

-- move a record to status `to`, setting `fields` (a value of false removes the field)
local function change(h, to, fields)
  unindex(h)
  h.status = to
  local set, gone = {'status', to}, {}
  for f, v in pairs(fields) do
    if v then h[f] = v; set[#set + 1] = f; set[#set + 1] = v
    else h[f] = nil; gone[#gone + 1] = f end
  end
  redis.call('HSET', record_key(h.id), unpack(set))
  if #gone > 0 then redis.call('HDEL', record_key(h.id), unpack(gone)) end
  index(h)
end

local function forget(h)
  unindex(h)
  redis.call('DEL', record_key(h.id))
  if h.ikey then redis.call('HDEL', P .. 'idem', idem_field(h.owner, h.ikey)) end
end

-- an entry carries the record's state as of the change (the fields SNAPSHOT names, as
-- field, value, ... after t, k, w), except a terminal record's: that never changes again
local SNAPSHOT = {'status', 'attempts', 'started_at', 'scheduled_at', 'finished_at', 'error',
                  'cancel', 'lease_owner', 'progress'}
local function feed(id, kind)
  local n = redis.call('INCR', P .. 'feed:n')
  local entry = {'t', id, 'k', kind, 'w', WRITER}
  local now = redis.call('HMGET', record_key(id), unpack(SNAPSHOT))
  if now[1] and not TERMINAL[now[1]] then
    for i, f in ipairs(SNAPSHOT) do
      if now[i] then entry[#entry + 1] = f; entry[#entry + 1] = now[i] end
    end
  end
  redis.call('XADD', P .. 'feed', 'MAXLEN', '~', FEED_MAX, int(n) .. '-0', unpack(entry))
end

-- depends_on (stores/dependencies.py has the rules): a waiting record's field deps holds
-- the ids it depends on (space-separated) and awaiting how many have not succeeded yet;
-- P dr:<id> the results of those that have (field: position); P deps:<id> the records
-- waiting for <id>. Results and arguments are JSON text, joined but never parsed.
local function split(ids)
  local found = {}
  for id in string.gmatch(ids or '', '[^ ]+') do found[#found + 1] = id end
  return found
end

local function dependency_error(d)
  local why = d.status
  if d.error then
    local e = cjson.decode(d.error)
    why = why .. ' (' .. e.type .. ': ' .. e.message .. ')'
  end
  return cjson.encode({type = 'DependencyFailed',
                       message = 'dependency ' .. d.id .. ' (' .. d.name .. ') ' .. why})
end

local function released_args(receives, results, args)
  local head
  if receives == 'result' then head = results[1]
  elseif receives == 'results' then head = '[' .. table.concat(results, ',') .. ']'
  else return args end
  if args == '[]' then return '[' .. head .. ']' end
  return '[' .. head .. ',' .. string.sub(args, 2)
end

local function stop_waiting(w)
  for _, dep in ipairs(split(w.deps)) do redis.call('SREM', P .. 'deps:' .. dep, w.id) end
  redis.call('DEL', P .. 'dr:' .. w.id)
end

-- h has just become terminal: release or cancel what waits for it, and so on down;
-- each record changed so is appended to `out` as a flat hash
local function ended(h, now, out)
  local todo = {h}
  while #todo > 0 do
    local d = table.remove(todo)
    local key = P .. 'deps:' .. d.id
    local waiters = redis.call('SMEMBERS', key)
    redis.call('DEL', key)
    for _, wid in ipairs(waiters) do
      local w = load(wid)
      if w and w.status == 'waiting' and d.status == 'succeeded' then
        local ids, results = split(w.deps), {}
        for pos, dep in ipairs(ids) do
          if dep == d.id then redis.call('HSET', P .. 'dr:' .. wid, pos, d.result or 'null') end
        end
        if redis.call('HINCRBY', record_key(wid), 'awaiting', -1) <= 0 then
          for pos = 1, #ids do results[pos] = redis.call('HGET', P .. 'dr:' .. wid, pos) end
          redis.call('DEL', P .. 'dr:' .. wid)
          change(w, 'queued', {args = released_args(w.receives, results, w.args),
                               awaiting = false})
          feed(wid, 'status')
          out[#out + 1] = flatten(w)
        end
      elseif w and w.status == 'waiting' then
        stop_waiting(w)
        change(w, 'cancelled', {error = dependency_error(d), finished_at = now,
                                awaiting = false})
        feed(wid, 'status')
        out[#out + 1] = flatten(w)
        todo[#todo + 1] = w
      end
    end
  end
end
"""

# ARGV[4]: the queue bound or ''; ARGV[5]: how many records; then for each record the
# number of its fields and the fields (name, value, ...); then, in Celery mode, for each
# record the time of its dispatch plan entry (P dispatch) or ''. Answers {0} when the bound is
# reached, {2, i, j} when record i's (from 0) j-th dependency is unknown, else {1,
# answers}: per record its new seq, the stored record that holds its idempotency key or,
# for a record with dependencies, the record as added (a flat hash), or '=i' for the same
# key as record i of this batch.
ADD = r"""
local max_pending, count = ARGV[4], tonumber(ARGV[5])
local records, at = {}, 6
for i = 1, count do
  local n = tonumber(ARGV[at]); at = at + 1
  local h, flat = {}, {}
  for j = at, at + 2 * n - 1, 2 do
    h[ARGV[j]] = ARGV[j + 1]; flat[#flat + 1] = ARGV[j]; flat[#flat + 1] = ARGV[j + 1]
  end
  at = at + 2 * n
  records[i] = {h, flat}
end
local answer, fresh, first = {}, {}, {}
for i = 1, count do
  local h = records[i][1]
  if not h.ikey then fresh[#fresh + 1] = i
  else
    local field = idem_field(h.owner, h.ikey)
    local known = redis.call('HGET', P .. 'idem', field)
    if first[field] then answer[i] = '=' .. first[field]
    elseif known then answer[i] = redis.call('HGETALL', record_key(known))
    else first[field] = i; fresh[#fresh + 1] = i end
  end
end
if max_pending ~= '' then
  local pending = redis.call('ZCARD', P .. 's:queued') + redis.call('ZCARD', P .. 's:scheduled')
    + redis.call('ZCARD', P .. 's:waiting')
  if pending + #fresh > tonumber(max_pending) then return {0} end
end
-- every id a fresh record depends on: one of this call's, or a stored one, same owner
local in_call, stored = {}, {}
for _, i in ipairs(fresh) do in_call[records[i][1].id] = records[i][1] end
for _, i in ipairs(fresh) do
  local h = records[i][1]
  for pos, dep in ipairs(split(h.deps)) do
    local d = in_call[dep]
    if not d then
      d = stored[dep] or load(dep)
      stored[dep] = d
    end
    if not d or d.owner ~= h.owner then return {2, i - 1, pos - 1} end
  end
end
-- a waiting record: queued at once if every dependency has succeeded, cancelled if one
-- ended otherwise, else booked
local cancelled_now = {}
for _, i in ipairs(fresh) do
  local h = records[i][1]
  if h.status == 'waiting' then
    local ids, results, pending, err = split(h.deps), {}, {}, nil
    for pos, dep in ipairs(ids) do
      local d = stored[dep]
      if not d or not TERMINAL[d.status] then pending[dep] = true
      elseif d.status == 'succeeded' then results[pos] = d.result or 'null'
      elseif not err then err = dependency_error(d) end
    end
    local awaiting = 0
    for _ in pairs(pending) do awaiting = awaiting + 1 end
    if err then
      h.status, h.error, h.finished_at = 'cancelled', err, h.created_at
      cancelled_now[#cancelled_now + 1] = h
    elseif awaiting == 0 then
      h.status, h.args = 'queued', released_args(h.receives, results, h.args)
    else
      h.awaiting = int(awaiting)
      for dep, _ in pairs(pending) do redis.call('SADD', P .. 'deps:' .. dep, h.id) end
      for pos, result in pairs(results) do redis.call('HSET', P .. 'dr:' .. h.id, pos, result) end
    end
    records[i][2] = flatten(h)
  end
end
local seq = redis.call('INCRBY', P .. 'seq', #fresh) - #fresh
for _, i in ipairs(fresh) do
  local h, flat = records[i][1], records[i][2]
  seq = seq + 1
  h.seq = int(seq)
  redis.call('HSET', record_key(h.id), 'seq', h.seq, unpack(flat))
  index(h)
  if h.ikey then redis.call('HSET', P .. 'idem', idem_field(h.owner, h.ikey), h.id) end
  feed(h.id, 'status')
  answer[i] = seq
  local plan = ARGV[at + i - 1]
  if plan and plan ~= '' then redis.call('ZADD', P .. 'dispatch', plan, h.id) end
end
local cascade = {}
for _, h in ipairs(cancelled_now) do ended(h, h.created_at, cascade) end
for _, i in ipairs(fresh) do  -- a record with dependencies as it is now: queued or not
  if records[i][1].deps then answer[i] = redis.call('HGETALL', record_key(records[i][1].id)) end
end
return {1, answer}
"""

# ARGV[4]: limit; [5]: before_seq or ''; [6], [7]: '=' .. owner and '=' .. name, or '';
# then the statuses. Per status, the newest `limit` ids of the narrowest index below
# before_seq; the newest `limit` of them all, as flat hashes.
PAGE = r"""
local limit, before = tonumber(ARGV[4]), ARGV[5]
local owner, name = string.sub(ARGV[6], 2), string.sub(ARGV[7], 2)
local max = before == '' and '+inf' or '(' .. before
local found = {}
for i = 8, #ARGV do
  local s, key = ARGV[i], nil
  if ARGV[6] ~= '' and ARGV[7] ~= '' then
    key = P .. 'on:' .. s .. ':' .. string.len(owner) .. ':' .. owner .. name
  elseif ARGV[6] ~= '' then key = P .. 'o:' .. s .. ':' .. owner
  elseif ARGV[7] ~= '' then key = P .. 'n:' .. s .. ':' .. name
  else key = P .. 's:' .. s end
  local got = redis.call('ZREVRANGEBYSCORE', key, max, '-inf', 'WITHSCORES', 'LIMIT', 0, limit)
  for j = 1, #got, 2 do found[#found + 1] = {tonumber(got[j + 1]), got[j]} end
end
table.sort(found, function(a, b) return a[1] > b[1] end)
local page = {}
for j = 1, math.min(limit, #found) do
  page[j] = redis.call('HGETALL', record_key(found[j][2]))
end
return page
"""

# ARGV[4]: task id; [5]: now. Answers false (no such record), or {changed, flat hash,
# flat hashes of the records this released or cancelled (those waiting for it)}.
CANCEL = r"""
local h = load(ARGV[4])
if not h then return false end
if TERMINAL[h.status] then return {0, flatten(h)} end
local cascade = {}
if h.status == 'running' then
  redis.call('HSET', record_key(h.id), 'cancel', '1')
  h.cancel = '1'
  feed(h.id, 'status')
else
  if h.status == 'waiting' then stop_waiting(h) end
  change(h, 'cancelled', {cancel = '1', finished_at = ARGV[5], awaiting = false})
  feed(h.id, 'status')
  ended(h, ARGV[5], cascade)
end
return {1, flatten(h), cascade}
"""

# ARGV[4]: task id. Answers 1 if a terminal record was forgotten, else 0.
DELETE = r"""
local h = load(ARGV[4])
if not h or not TERMINAL[h.status] then return 0 end
forget(h)
return 1
"""

# ARGV[4]: the key (after the prefix's 'meta:'); [5]: '=' .. the expected value, or '' for
# none; [6]: the new value. Answers 1 if stored, else 0.
META_CAS = r"""
local key = P .. 'meta:' .. ARGV[4]
local now = redis.call('GET', key)
if ARGV[5] == '' then
  if now then return 0 end
elseif now ~= string.sub(ARGV[5], 2) then
  return 0
end
redis.call('SET', key, ARGV[6])
return 1
"""
