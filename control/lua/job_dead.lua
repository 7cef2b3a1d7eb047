-- job_dead.lua: a jobs entry that cannot be delivered as it stands (a
-- poison entry: README "Dead letters"). Copies its fields to the dead
-- letter stream, adds why and where it came from, counts it, then
-- acknowledges and deletes it like job_ack. Run again after a lost reply
-- it finds the entry neither in the stream nor pending and does nothing.
-- KEYS: jobs, jobs:dead, jobs:dead:count.
-- ARGV: group, entry id, maxlen, reason, consumer, ts_ms.
-- Returns 1 dead-lettered, 0 already done.
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if #e == 0 and acked == 0 then return 0 end
local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*'}
if #e > 0 then
  for _, v in ipairs(e[1][2]) do args[#args + 1] = v end
end
for _, v in ipairs({'reason', ARGV[4], 'entry_id', ARGV[2], 'consumer', ARGV[5],
    'dead_ms', ARGV[6]}) do
  args[#args + 1] = v
end
redis.call(unpack(args))
redis.call('INCR', KEYS[3])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
