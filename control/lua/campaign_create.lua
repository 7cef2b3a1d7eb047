-- campaign_create.lua: submit start. Creates the campaign hash (state
-- submitting, zero counters), its counts hash and its member of the
-- campaigns ZSET; refused if the hash exists. Its jobs stream gets the
-- consumer group here (at ID 0, so batches written before any daemon
-- started are delivered; BUSYGROUP is fine) and its id goes into NS
-- active, the set of streams the daemons read.
-- KEYS: campaign, campaigns, counts, campaign:<id>:jobs, active.
-- ARGV: id, created_ms, consumer group, field, value...
-- Returns 1 created, 0 the campaign exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local f = {}
for i = 4, #ARGV do f[#f + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(f))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], 'queued', 0, 'deferred', 0, 'delivered', 0,
  'bounced', 0, 'failed', 0, 'cancelled', 0, 'delivered_fallback', 0,
  'dup_deliveries', 0, 'attempts', 0)
redis.pcall('XGROUP', 'CREATE', KEYS[4], ARGV[3], '0', 'MKSTREAM')
redis.call('SADD', KEYS[5], ARGV[1])
return 1
