"""The Redis store's Lua for Celery mode: starting one named record, and taking the
dispatch plan's due entries (see :mod:`.dispatch`). The shared part is in
:mod:`.redis_lua`; the plan is the sorted set ``P dispatch`` (task id, by the time its
message must be sent)."""

from __future__ import annotations

# The gate of a limited name (P gates, name -> when a dispatch take looks at it): once a
# limit holds back one of its records, the records of that name start in the order of its
# ready lane (priority, then first in first out). While it is closed, a record starts only
# if fewer records are ahead of it in the lane than may start now (its *room*), so the
# first `room` records of the lane may start, in any order among them. Any other record's
# message is dropped (its entry leaves the dispatch plan: the gate stands for it). A gate
# sends messages itself (`wake`): to those of the first `room` records of the lane that
# have no message out. Every message sent has a plan entry, planned before it is sent and
# gone once a worker starts or drops it, so an entry due later than now is a message out.
# A start that leaves room wakes the next ones (its claimer sends them), as does a message
# dropped while there is room; a start that leaves none sets the gate's time to when one
# may be allowed; a task of that name that ends, or a cancel of a queued one, opens the
# gate (OPEN_GATE). The gate goes with the lane.
GATE = r"""
local HAND_ON_MOST = 32  -- the most messages one call sends (the rest follow on)
local function after(t) return string.format('%.17g', t) end  -- a score, exactly
local function allowed_from(nth, window)  -- RateLimit.next_start, within an ulp or two
  local at = nth + window
  while at - nth < window do at = at + at * 2 ^ -52 end
  return at
end
-- how many more of `name` may start at `now` (HAND_ON_MOST if it has no limit); whether
-- its concurrency limit is reached; if its rate holds a start back, the N-th newest start.
-- rate: {starts, window} or nil
local function room(name, now, cap, rate)
  local n, full, nth = HAND_ON_MOST, false, nil
  if cap then
    n = math.min(n, cap - redis.call('ZCARD', P .. 'n:running:' .. name))
    full = n <= 0
  end
  if rate then
    local log = P .. 'rate:' .. name
    local oldest = redis.call('ZREVRANGE', log, rate[1] - 1, rate[1] - 1, 'WITHSCORES')[2]
    if oldest and now - tonumber(oldest) < rate[2] then  -- RateLimit.holds_back
      n, nth = 0, oldest
    else  -- the starts within the window, roughly (the claim decides exactly)
      -- a microsecond wide of the window's edge: never fewer than the exact test counts
      local used = redis.call('ZCOUNT', log, after(now - rate[2] - 1e-6), '+inf')
      n = math.min(n, math.max(1, rate[1] - used))
    end
  end
  return n, full, nth
end
-- when a gate whose name has no room looks again
local function look_again(now, full, nth, rate, recheck)
  local at = now
  if nth then at = allowed_from(tonumber(nth), rate[2]) end
  if full then at = math.max(at, now + recheck) end
  return after(at)
end
-- the first n records of the lane with no message out, each planned for `due` (its
-- message is sent then, or again then if the caller's is lost); answers their flat hashes
local function wake(name, n, now, due)
  local woken = {}
  for _, member in ipairs(redis.call('ZRANGE', P .. 'ready:' .. name, 0, n - 1)) do
    local id = string.sub(member, 18)
    local out = redis.call('ZSCORE', P .. 'dispatch', id)
    if not out or tonumber(out) <= now then
      redis.call('ZADD', P .. 'dispatch', due, id)
      woken[#woken + 1] = flatten(load(id))
    end
  end
  return woken
end
"""

# ARGV[4]: task id; [5]: the message's generation (attempts when it was sent); [6]: worker;
# [7]: now; [8]: the lease's end; [9]: the most of its name that may run at once, or '';
# [10], [11]: its rate limit's starts and window, or ''; [12]: seconds before a name at its
# concurrency limit is looked at again; [13]: when a woken record's message is sent again
# if no worker starts it. Answers {verdict} or {verdict, flat hash}; for a rate that holds
# it back, the N-th newest start too; for a start that wakes others, their flat hashes
# (verdicts: see dispatch.ClaimVerdict). A record started here, ended or gone leaves the
# dispatch plan: its message did its work. The rate log is the one the claim script keeps
# (P rate:<name>).
CLAIM_BY_ID = GATE + r"""
local id, gen, worker, now, expires = ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]),
                                      ARGV[8]
local cap, rate, recheck, again = tonumber(ARGV[9]), nil, tonumber(ARGV[12]), ARGV[13]
if ARGV[10] ~= '' then rate = {tonumber(ARGV[10]), tonumber(ARGV[11])} end
local h = load(id)
if not h then
  redis.call('ZREM', P .. 'dispatch', id)
  return {'missing'}
end
local s, a = h.status, tonumber(h.attempts)
if TERMINAL[s] then
  redis.call('ZREM', P .. 'dispatch', id)
  return {'ended', flatten(h)}
end
if s == 'running' then
  -- the message's own attempt (gen + 1), or the one that sent it (gen) still settling
  if a ~= gen and a ~= gen + 1 then return {'stale', flatten(h)} end
  if tonumber(h.lease_expires or '0') >= now then return {'held', flatten(h)} end
  redis.call('HSET', record_key(id), 'lease_owner', worker, 'lease_expires', expires)
  redis.call('ZADD', P .. 'leases', expires, id)
  h.lease_owner, h.lease_expires = worker, expires
  return {'taken_over', flatten(h)}
end
if (s ~= 'queued' and s ~= 'scheduled') or a ~= gen then return {'stale', flatten(h)} end
if h.cancel == '1' then
  redis.call('ZREM', P .. 'dispatch', id)
  return {'ended', flatten(h)}
end
if s == 'scheduled' and tonumber(h.scheduled_at) > now then
  return {'not_due', flatten(h)}
end
if s == 'scheduled' then  -- due: in its name's ready lane from now on, started or not
  change(h, 'queued', {})
  feed(id, 'status')
end
local name, lane, gates = h.name, P .. 'ready:' .. h.name, P .. 'gates'
local gated = redis.call('ZSCORE', gates, name)
local free, full, nth = room(name, now, cap, rate)
if free <= 0 then  -- the gate closes (or stays): looked at again when a start may be
  redis.call('ZADD', gates, look_again(now, full, nth, rate, recheck), name)
  redis.call('ZREM', P .. 'dispatch', id)
  return {'limited', flatten(h), nth}
end
if gated and (redis.call('ZRANK', lane, lane_member(h)) or 0) >= free then
  redis.call('ZREM', P .. 'dispatch', id)  -- those in the room start first: woken if idle
  return {'gated', flatten(h), unpack(wake(name, free, now, again))}
end
change(h, 'running', {attempts = int(a + 1), started_at = ARGV[7], lease_owner = worker,
                      lease_expires = expires, progress = false})
feed(id, 'status')
redis.call('ZREM', P .. 'dispatch', id)
if rate then  -- logged, keeping the newest N
  redis.call('ZADD', P .. 'rate:' .. name, ARGV[7], id .. ':' .. h.attempts)
  redis.call('ZREMRANGEBYRANK', P .. 'rate:' .. name, 0, -rate[1] - 1)
end
if not gated then return {'claimed', flatten(h)} end
if redis.call('EXISTS', lane) == 0 then
  redis.call('ZREM', gates, name)
  return {'claimed', flatten(h)}
end
free, full, nth = room(name, now, cap, rate)
if free <= 0 then
  redis.call('ZADD', gates, look_again(now, full, nth, rate, recheck), name)
  return {'claimed', flatten(h)}
end
redis.call('ZADD', gates, again, name)
return {'claimed', flatten(h), unpack(wake(name, free, now, again))}
"""

# ARGV[4]: now; [5]: most ids; [6]: the time each taken id is planned again for. Answers
# {the ids whose time came, oldest first; then the flat hashes of the records the gates
# woke}. First wakes the gates whose time came: each lane's first record with no message
# out, planned for [6] (so a lost message is sent again after the resend, not after the
# longer wait of a message sent again), its gate looking again at [6] if no claim sets it
# sooner.
DISPATCH_TAKE = GATE + r"""
local key, gates, now = P .. 'dispatch', P .. 'gates', tonumber(ARGV[4])
local woken = {}
for _, name in ipairs(redis.call('ZRANGEBYSCORE', gates, '-inf', ARGV[4])) do
  if redis.call('EXISTS', P .. 'ready:' .. name) == 1 then
    for _, flat in ipairs(wake(name, 1, now, ARGV[6])) do woken[#woken + 1] = flat end
    redis.call('ZADD', gates, ARGV[6], name)
  else
    redis.call('ZREM', gates, name)
  end
end
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do redis.call('ZADD', key, ARGV[6], id) end
return {ids, unpack(woken)}
"""

# ARGV[4]: a name; [5]: now; [6]: when a woken record's message is sent again if no worker
# starts it; [7]: the most of that name that may run at once, or ''; [8], [9]: its rate
# limit's starts and window, or ''. A task of that name ended, or a queued one was
# cancelled: if its gate is closed, the records in its room with no message out are woken
# (answers their flat hashes, for the caller to send).
OPEN_GATE = GATE + r"""
local name, now = ARGV[4], tonumber(ARGV[5])
if not redis.call('ZSCORE', P .. 'gates', name) then return {} end
if redis.call('EXISTS', P .. 'ready:' .. name) == 0 then
  redis.call('ZREM', P .. 'gates', name)
  return {}
end
local rate = nil
if ARGV[8] ~= '' then rate = {tonumber(ARGV[8]), tonumber(ARGV[9])} end
local free = room(name, now, tonumber(ARGV[7]), rate)
if free <= 0 then return {} end
return wake(name, free, now, ARGV[6])
"""
