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
    if redis.call('EXISTS', lane) == 0 then redis.call('SREM', P .. 'names', h.name) end
  elseif s == 'scheduled' then redis.call('ZREM', P .. 'due', h.id)
  elseif s == 'running' then redis.call('ZREM', P .. 'leases', h.id)
  else redis.call('ZREM', P .. 'done', h.id) end
end

local function index(h)
  local s = h.status
  for _, k in ipairs(listed_in(h, s)) do redis.call('ZADD', k, h.seq, h.id) end
  if s == 'queued' then
    redis.call('ZADD', P .. 'ready:' .. h.name, -tonumber(h.priority), lane_member(h))
    redis.call('SADD', P .. 'names', h.name)
  elseif s == 'scheduled' then redis.call('ZADD', P .. 'due', h.scheduled_at, h.id)
  elseif s == 'running' then redis.call('ZADD', P .. 'leases', h.lease_expires or '0', h.id)
  else redis.call('ZADD', P .. 'done', h.finished_at or '0', h.id) end
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

local function feed(id, kind)
  local n = redis.call('INCR', P .. 'feed:n')
  redis.call('XADD', P .. 'feed', 'MAXLEN', '~', FEED_MAX, int(n) .. '-0',
             't', id, 'k', kind, 'w', WRITER)
end
"""

# ARGV[4]: the queue bound or ''; ARGV[5]: how many records; then for each record the
# number of its fields and the fields (name, value, ...). Answers {0} when the bound is
# reached, else {1, answers}: per record its new seq, the stored record that holds its
# idempotency key (a flat hash), or '=i' for the same key as record i of this batch.
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
  if pending + #fresh > tonumber(max_pending) then return {0} end
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

# ARGV[4]: task id; [5]: now. Answers false (no such record), or {changed, flat hash}.
CANCEL = r"""
local h = load(ARGV[4])
if not h then return false end
if TERMINAL[h.status] then return {0, flatten(h)} end
if h.status == 'running' then
  redis.call('HSET', record_key(h.id), 'cancel', '1')
  h.cancel = '1'
else
  change(h, 'cancelled', {cancel = '1', finished_at = ARGV[5]})
end
feed(h.id, 'status')
return {1, flatten(h)}
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
