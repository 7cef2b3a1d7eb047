-- job_ack.lua: a jobs entry whose recipients are all final or in the
-- retry ZSET: acknowledge it in the consumer group and delete it.
-- KEYS: jobs. ARGV: group, entry id. Returns 1.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
