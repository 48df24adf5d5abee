"""The Redis store's Lua for Celery mode: starting one named record, and taking the
dispatch plan's due entries (see :mod:`.dispatch`). The shared part is in
:mod:`.redis_lua`; the plan is the sorted set ``P dispatch`` (task id, by the time its
message must be sent)."""

from __future__ import annotations

# ARGV[4]: task id; [5]: the message's generation (attempts when it was sent); [6]: worker;
# [7]: now; [8]: the lease's end; [9]: the most of its name that may run at once, or '';
# [10], [11]: its rate limit's starts and window, or ''. Answers {verdict} or {verdict,
# flat hash}, and for a rate that holds it back, the N-th newest start too (verdicts: see
# dispatch.ClaimVerdict). A record started here, ended or gone leaves the dispatch plan:
# its message did its work. The rate log is the one the claim script keeps (P rate:<name>).
CLAIM_BY_ID = r"""
local id, gen, worker, now, expires, cap = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7],
                                           ARGV[8], ARGV[9]
local starts, window = tonumber(ARGV[10]), tonumber(ARGV[11])
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
if cap ~= '' and redis.call('ZCARD', P .. 'n:running:' .. h.name) >= tonumber(cap) then
  return {'limited', flatten(h)}
end
local rate_log = P .. 'rate:' .. h.name
if starts and redis.call('ZCARD', rate_log) >= starts then
  local nth = redis.call('ZREVRANGE', rate_log, starts - 1, starts - 1, 'WITHSCORES')
  -- RateLimit.holds_back, on the same doubles as the claim script
  if tonumber(now) - tonumber(nth[2]) < window then return {'limited', flatten(h), nth[2]} end
end
if s == 'scheduled' then
  change(h, 'queued', {})
  feed(id, 'status')
end
change(h, 'running', {attempts = int(a + 1), started_at = now, lease_owner = worker,
                      lease_expires = expires, progress = false})
feed(id, 'status')
if starts then  -- logged, keeping the newest N
  redis.call('ZADD', rate_log, now, id .. ':' .. h.attempts)
  redis.call('ZREMRANGEBYRANK', rate_log, 0, -starts - 1)
end
redis.call('ZREM', P .. 'dispatch', id)
return {'claimed', flatten(h)}
"""

# ARGV[4]: now; [5]: most ids; [6]: the time each taken id is planned again for. Answers
# the ids whose time came, oldest first.
DISPATCH_TAKE = r"""
local key = P .. 'dispatch'
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[4], 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(ids) do redis.call('ZADD', key, ARGV[6], id) end
return ids
"""
