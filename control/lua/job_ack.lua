-- job_ack.lua: a jobs entry whose recipients are all final or in the
-- retry ZSET: acknowledge it in the consumer group and delete it, unless
-- another consumer owns it now (it claimed the entry while this one was
-- cut off; it finishes the entry and acks it itself).
-- KEYS: jobs. ARGV: group, entry id, consumer. Returns 1 acked, 0 not ours.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 1 and p[1][2] ~= ARGV[3] then
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
