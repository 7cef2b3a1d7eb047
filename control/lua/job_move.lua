-- job_move.lua: an entry of the shared NS jobs stream whose campaign may
-- not send now (paused, outside its window) moves to the campaign's own
-- stream, which is not read until it may: held, it would take room from
-- every other campaign. The same fields, a new id; the id goes into NS
-- active; the shared entry is acknowledged and deleted. Nothing moves if
-- another consumer owns the entry now (as job_ack.lua).
-- KEYS: jobs, campaign:<id>:jobs, active. ARGV: group, entry id,
-- consumer, campaign id. Returns 1 moved, 0 not ours or gone.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 1 and p[1][2] ~= ARGV[3] then
  return 0
end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #e == 1 then
  redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[1], '0', 'MKSTREAM')
  redis.call('XADD', KEYS[2], '*', unpack(e[1][2]))
  redis.call('SADD', KEYS[3], ARGV[4])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return #e
