"""The Redis store's Lua for Celery mode: starting one named record, and taking the
dispatch plan's due entries (see :mod:`.dispatch`). The shared part is in
:mod:`.redis_lua`; the plan is the sorted set ``P dispatch`` (task id, by the time its
message must be sent)."""

from __future__ import annotations

# ARGV[4]: task id; [5]: the message's generation (attempts when it was sent); [6]: worker;
# [7]: now; [8]: the lease's end; [9]: the most of its name that may run at once, or '';
# [10], [11]: its rate limit's starts and window, or ''; [12]: seconds before a name at its
# concurrency limit is looked at again; [13]: when a handed-on message is sent again if no
# worker starts its record. Answers {verdict} or {verdict, flat hash}; for a rate that
# holds it back, the N-th newest start too; for a start that hands on, the next record's
# flat hash (verdicts: see dispatch.ClaimVerdict).
# A record started here, ended or gone leaves the dispatch plan: its message did its work.
# The rate log is the one the claim script keeps (P rate:<name>).
#
# The gate of a limited name (P gates, name -> when to wake it): once a limit holds back
# one of its records, the records of that name start in the order of its ready lane
# (priority, then first in first out), one message at a time. A limited or out-of-turn
# record's message is dropped (its entry leaves the dispatch plan: the gate stands for
# it). A start that leaves room for another now hands on: the claimer sends the next
# head's message (planned here, in case it never does). Else the start sets the gate's
# time to when the next start may be allowed, and the dispatch take (or a worker whose
# task of that name ended: OPEN_GATE) wakes the lane's head. The gate goes with the lane.
CLAIM_BY_ID = r"""
local id, gen, worker, now, expires, cap = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7],
                                           ARGV[8], ARGV[9]
local starts, window, recheck = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local again = ARGV[13]
local function after(t) return string.format('%.17g', t) end  -- a score, exactly
local function allowed_from(nth)  -- RateLimit.next_start, within an ulp or two
  local at = nth + window
  while at - nth < window do at = at + at * 2 ^ -52 end
  return at
end
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
  if tonumber(h.lease_expires or '0') >= tonumber(now) then return {'held', flatten(h)} end
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
if s == 'scheduled' and tonumber(h.scheduled_at) > tonumber(now) then
  return {'not_due', flatten(h)}
end
if s == 'scheduled' then  -- due: in its name's ready lane from now on, started or not
  change(h, 'queued', {})
  feed(id, 'status')
end
local lane, gates = P .. 'ready:' .. h.name, P .. 'gates'
local gated = redis.call('ZSCORE', gates, h.name)
if gated and redis.call('ZRANGE', lane, 0, 0)[1] ~= lane_member(h) then
  redis.call('ZREM', P .. 'dispatch', id)
  return {'gated', flatten(h)}
end
local running = P .. 'n:running:' .. h.name
if cap ~= '' and redis.call('ZCARD', running) >= tonumber(cap) then
  redis.call('ZADD', gates, after(tonumber(now) + recheck), h.name)
  redis.call('ZREM', P .. 'dispatch', id)
  return {'limited', flatten(h)}
end
local rate_log = P .. 'rate:' .. h.name
if starts and redis.call('ZCARD', rate_log) >= starts then
  local nth = redis.call('ZREVRANGE', rate_log, starts - 1, starts - 1, 'WITHSCORES')
  -- RateLimit.holds_back, on the same doubles as the claim script
  if tonumber(now) - tonumber(nth[2]) < window then
    redis.call('ZADD', gates, after(allowed_from(tonumber(nth[2]))), h.name)
    redis.call('ZREM', P .. 'dispatch', id)
    return {'limited', flatten(h), nth[2]}
  end
end
change(h, 'running', {attempts = int(a + 1), started_at = now, lease_owner = worker,
                      lease_expires = expires, progress = false})
feed(id, 'status')
local wake = tonumber(now)
if starts then  -- logged, keeping the newest N
  redis.call('ZADD', rate_log, now, id .. ':' .. h.attempts)
  redis.call('ZREMRANGEBYRANK', rate_log, 0, -starts - 1)
  local nth = redis.call('ZREVRANGE', rate_log, starts - 1, starts - 1, 'WITHSCORES')
  if #nth > 0 then wake = math.max(wake, allowed_from(tonumber(nth[2]))) end
end
if cap ~= '' and redis.call('ZCARD', running) >= tonumber(cap) then
  wake = math.max(wake, tonumber(now) + recheck)
end
redis.call('ZREM', P .. 'dispatch', id)
local head = gated and redis.call('ZRANGE', lane, 0, 0)[1]
if not gated then return {'claimed', flatten(h)} end
if not head then  -- no lane, no gate
  redis.call('ZREM', gates, h.name)
  return {'claimed', flatten(h)}
end
if wake > tonumber(now) then  -- the next in the lane, when a start may be allowed
  redis.call('ZADD', gates, after(wake), h.name)
  return {'claimed', flatten(h)}
end
local next_id = string.sub(head, 18)  -- room for another start now: handed on
redis.call('ZADD', P .. 'dispatch', 'LT', again, next_id)
redis.call('ZADD', gates, again, h.name)
return {'claimed', flatten(h), flatten(load(next_id))}
"""

# ARGV[4]: now; [5]: most ids; [6]: the time each taken id is planned again for. Answers
# the ids whose time came, oldest first. First wakes the gates whose time came: each
# lane's head is due now (its gate looks again at [6] if no claim sets it sooner).
DISPATCH_TAKE = r"""
local key, gates = P .. 'dispatch', P .. 'gates'
for _, name in ipairs(redis.call('ZRANGEBYSCORE', gates, '-inf', ARGV[4])) do
  local head = redis.call('ZRANGE', P .. 'ready:' .. name, 0, 0)[1]
  if head then
    redis.call('ZADD', key, 'LT', ARGV[4], string.sub(head, 18))
    redis.call('ZADD', gates, ARGV[6], name)
  else
    redis.call('ZREM', gates, name)
  end
end
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do redis.call('ZADD', key, ARGV[6], id) end
return ids
"""

# ARGV[4]: a name; [5]: when the woken head's message is sent again if no worker starts
# its record. A task of that name ended: if its gate is closed, its lane's head is woken
# now (answers its flat hash, for the caller to send; planned here in case it never does).
OPEN_GATE = r"""
local gates, name = P .. 'gates', ARGV[4]
if not redis.call('ZSCORE', gates, name) then return false end
local head = redis.call('ZRANGE', P .. 'ready:' .. name, 0, 0)[1]
if not head then
  redis.call('ZREM', gates, name)
  return false
end
local id = string.sub(head, 18)
redis.call('ZADD', P .. 'dispatch', 'LT', ARGV[5], id)
redis.call('ZADD', gates, ARGV[5], name)
return flatten(load(id))
"""
