"""The Redis store's Lua for the runner and the feed (the shared part is in :mod:`.redis_lua`).

Every change of an attempt is conditional, as in the SQLite store: it applies only while
the record is running, at the same attempt, under the caller's lease.
"""

from __future__ import annotations

PROMOTE_MAX = 1000  # due records queued by one claim (the next claim queues the rest)
CLAIM_SLACK = 8  # extra heads read per name, beyond the claim's limit

# ARGV[4]: now; [5]: the lease's end; [6]: worker; [7]: limit; then the per-name caps
# (count, then name, cap, ...), the excluded names (count, names), the pools (count,
# then for each: free slots, count, names), and the rates (count, then name, starts,
# window, ...). Answers {claimed, promoted}: flat hashes of the records started here and
# of the scheduled records this claim queued (or cancelled).
CLAIM = rf"""
local now, expires, worker, limit = ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local claimed, promoted = {{}}, {{}}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'due', '-inf', now,
                               'LIMIT', 0, {PROMOTE_MAX})) do
  local h = load(id)
  if h.cancel == '1' then change(h, 'cancelled', {{finished_at = now}})
  else change(h, 'queued', {{}}) end
  feed(id, 'status')
  promoted[#promoted + 1] = flatten(h)
  if h.status == 'cancelled' then ended(h, now, promoted) end
end
if limit <= 0 then return {{claimed, promoted}} end
local at, caps, excluded, pool_of, room = 8, {{}}, {{}}, {{}}, {{}}
for _ = 1, tonumber(ARGV[at]) do caps[ARGV[at + 1]] = tonumber(ARGV[at + 2]); at = at + 2 end
at = at + 1
for _ = 1, tonumber(ARGV[at]) do excluded[ARGV[at + 1]] = true; at = at + 1 end
at = at + 1
local pools = tonumber(ARGV[at]); at = at + 1
for p = 1, pools do
  room[p] = tonumber(ARGV[at])
  local k = tonumber(ARGV[at + 1]); at = at + 2
  for i = 0, k - 1 do pool_of[ARGV[at + i]] = p end
  at = at + k
end
local rates, budget = {{}}, {{}}
for _ = 1, tonumber(ARGV[at]) do
  rates[ARGV[at + 1]] = {{tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])}}; at = at + 3
end
-- How many more starts a rate allows now (at most the claim's limit): the k-th is allowed
-- if the N-th newest start before it, the log's (N - k)-th newest, is missing or at least
-- a window before now (the test of RateLimit.holds_back, on the same doubles).
local function rate_budget(key, starts, window)
  local logged = redis.call('ZCARD', key)
  local free, rank = math.max(starts - logged, 0), math.min(logged, starts) - 1
  while free < limit and rank >= 0 do
    local start = redis.call('ZREVRANGE', key, rank, rank, 'WITHSCORES')
    if tonumber(now) - tonumber(start[2]) < window then break end
    free, rank = free + 1, rank - 1
  end
  return free
end
-- left[name]: how many more may start, its cap less those running in every process;
-- budget[name]: how many more its rate allows now (its log: P rate:<name>, newest N)
local left, heads = {{}}, {{}}
for _, name in ipairs(redis.call('SMEMBERS', P .. 'names')) do
  local pool, cap, rate = pool_of[name], caps[name], rates[name]
  if not excluded[name] and (not pool or room[pool] > 0) then
    if cap then left[name] = cap - redis.call('ZCARD', P .. 'n:running:' .. name) end
    if rate then budget[name] = rate_budget(P .. 'rate:' .. name, rate[1], rate[2]) end
    if (not cap or left[name] > 0) and (not rate or budget[name] > 0) then
      local lane = redis.call('ZRANGE', P .. 'ready:' .. name, 0, limit + {CLAIM_SLACK} - 1,
                              'WITHSCORES')
      for j = 1, #lane, 2 do heads[#heads + 1] = {{tonumber(lane[j + 1]), lane[j], name}} end
    end
  end
end
table.sort(heads, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
for _, head in ipairs(heads) do
  if #claimed >= limit then break end
  local name = head[3]
  local pool = pool_of[name]
  if (not left[name] or left[name] > 0) and (not pool or room[pool] > 0)
      and (not budget[name] or budget[name] > 0) then
    local h = load(string.sub(head[2], string.find(head[2], ':', 1, true) + 1))
    if h.cancel ~= '1' then  -- never so while queued; never started if so
      if left[name] then left[name] = left[name] - 1 end
      if pool then room[pool] = room[pool] - 1 end
      change(h, 'running', {{attempts = int(tonumber(h.attempts) + 1), started_at = now,
                             lease_owner = worker, lease_expires = expires, progress = false}})
      if budget[name] then
        budget[name] = budget[name] - 1
        redis.call('ZADD', P .. 'rate:' .. name, now, h.id .. ':' .. h.attempts)
      end
      feed(h.id, 'status')
      claimed[#claimed + 1] = flatten(h)
    end
  end
end
for name, rate in pairs(rates) do  -- keep the newest N starts of each name
  if budget[name] then redis.call('ZREMRANGEBYRANK', P .. 'rate:' .. name, 0, -rate[1] - 1) end
end
return {{claimed, promoted}}
"""

# ARGV[4]: worker; then task id, attempts, ... of records claimed for a caller that stopped
# waiting: back to queued, the attempt undone. Answers the flat hashes handed back.
UNCLAIM = r"""
local back = {}
for i = 5, #ARGV, 2 do
  local h = load(ARGV[i])
  if h and h.status == 'running' and h.attempts == ARGV[i + 1] and h.lease_owner == ARGV[4] then
    change(h, 'queued', {attempts = int(tonumber(h.attempts) - 1), lease_owner = false,
                         lease_expires = false})
    feed(h.id, 'status')
    back[#back + 1] = flatten(h)
  end
end
return back
"""

# ARGV[4..]: task id, attempts, worker, status, at, result, error, scheduled_at ('' for
# none). Answers {the flat hash after, flat hashes of the records waiting for it that this
# released or cancelled}, or false if the worker no longer holds the attempt.
SETTLE = r"""
local id, attempts, worker, status, at = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local result, err, scheduled_at = ARGV[9], ARGV[10], ARGV[11]
local h = load(id)
if not h or h.status ~= 'running' or h.attempts ~= attempts or h.lease_owner ~= worker then
  return false
end
if not TERMINAL[status] and h.cancel == '1' then status = 'cancelled' end
local fields = {error = err ~= '' and err, lease_owner = false, lease_expires = false}
if TERMINAL[status] then
  fields.result = result ~= '' and result
  fields.finished_at = at
elseif status == 'scheduled' then
  fields.scheduled_at = scheduled_at
end
change(h, status, fields)
feed(id, 'status')
local cascade = {}
if TERMINAL[status] then ended(h, at, cascade) end
return {flatten(h), cascade}
"""

# ARGV[4..]: task id, attempts, worker, progress (JSON). Answers 1 if written, else 0.
PROGRESS = r"""
local key = record_key(ARGV[4])
local f = redis.call('HMGET', key, 'status', 'attempts', 'lease_owner')
if f[1] ~= 'running' or f[2] ~= ARGV[5] or f[3] ~= ARGV[6] then return 0 end
redis.call('HSET', key, 'progress', ARGV[7])
feed(ARGV[4], 'progress')
return 1
"""

# ARGV[4]: worker; [5]: the lease's new end; then task ids. Answers id, cancel (0 or 1),
# ... for each record the worker still holds.
RENEW = r"""
local worker, expires, held = ARGV[4], ARGV[5], {}
for i = 6, #ARGV do
  local id = ARGV[i]
  local f = redis.call('HMGET', record_key(id), 'status', 'lease_owner', 'cancel')
  if f[1] == 'running' and f[2] == worker then
    redis.call('HSET', record_key(id), 'lease_expires', expires)
    redis.call('ZADD', P .. 'leases', expires, id)
    held[#held + 1] = id
    held[#held + 1] = f[3] == '1' and 1 or 0
  end
end
return held
"""

# ARGV[4]: worker; [5]: now; [6]: the lease's new end. Takes over every running record
# whose lease ended before now; answers their flat hashes.
RECLAIM = r"""
local worker, now, expires, taken = ARGV[4], ARGV[5], ARGV[6], {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', '(' .. now)) do
  redis.call('HSET', record_key(id), 'lease_owner', worker, 'lease_expires', expires)
  redis.call('ZADD', P .. 'leases', expires, id)
  taken[#taken + 1] = redis.call('HGETALL', record_key(id))
end
return taken
"""

# ARGV[4]: finished before; [5]: keep at most; [6]: most to drop now. Drops terminal
# records finished before the time, then the oldest beyond the count; answers how many.
EVICT = r"""
local before, keep, chunk = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local old = redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', '(' .. before, 'LIMIT', 0, chunk)
for _, id in ipairs(old) do forget(load(id)) end
local dropped = #old
if dropped < chunk then
  local excess = math.min(redis.call('ZCARD', P .. 'done') - keep, chunk - dropped)
  if excess > 0 then
    for _, id in ipairs(redis.call('ZRANGE', P .. 'done', 0, excess - 1)) do
      forget(load(id))
    end
    dropped = dropped + excess
  end
end
return dropped
"""

# ARGV[4]: the reader's cursor ('' for none: start now); [5]: most entries to read.
# Answers {cursor to pass next, gap, records, changes}: gap is 1 when entries after the
# cursor were trimmed away, 2 when the feed restarted (its counter is behind the cursor:
# the data was lost); records are the flat hashes, as they are now, of the records changed;
# changes are {kind, index into records, the entry's state (field, value, ...; empty for
# a terminal record)}, every change in order, others' changes only, deleted records left
# out.
FEED = r"""
local last = tonumber(redis.call('GET', P .. 'feed:n') or '0')
if ARGV[4] == '' then return {last, 0, {}, {}} end
local cursor, batch, gap = tonumber(ARGV[4]), tonumber(ARGV[5]), 0
if cursor > last then cursor = 0; gap = 2 end
local entries = redis.call('XRANGE', P .. 'feed', int(cursor + 1), '+', 'COUNT', batch)
local function n_of(entry) return tonumber(string.match(entry[1], '^%d+')) end
if gap == 0 and last > cursor and (#entries == 0 or n_of(entries[1]) > cursor + 1) then
  gap = 1
end
local upto = last
if #entries == batch then upto = n_of(entries[#entries]) end
local records, at, changes = {}, {}, {}
for _, entry in ipairs(entries) do
  local f = entry[2]
  if f[6] ~= WRITER then
    local id = f[2]
    if at[id] == nil then
      local flat = redis.call('HGETALL', record_key(id))
      at[id] = #flat > 0 and #records + 1
      if at[id] then records[at[id]] = flat end
    end
    if at[id] then
      local state = {}
      for i = 7, #f do state[#state + 1] = f[i] end
      changes[#changes + 1] = {f[4], at[id], state}
    end
  end
end
return {upto, gap, records, changes}
"""
