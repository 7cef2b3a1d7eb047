-- consumer_lock.lua: one consumer name, one daemon. The lock key holds
-- the token of the daemon that uses the name and expires by itself, so a
-- crashed daemon's name is free again after the TTL.
-- KEYS: lock. ARGV: token, ttl_ms, mode:
--   take   set it if free (or ours already): 1, else {0, holder, pttl}
--   renew  extend ours, or take it again if it expired meanwhile: 1, else
--          {0, holder, pttl} (another daemon took the name)
--   drop   delete it if ours: 1, else 0
--   steal  take it from the holder named in ARGV[4] (a process of this
--          host that is gone): 1, else {0, holder, pttl}
local cur = redis.call('GET', KEYS[1])
if ARGV[3] == 'steal' and cur == ARGV[4] then
  cur = false
end
if ARGV[3] == 'drop' then
  if cur == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return {0, cur, redis.call('PTTL', KEYS[1])}
