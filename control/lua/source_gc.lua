-- source_gc.lua: a campaign's jobs stream leaves the set of streams the
-- daemons read once it is empty and the campaign is done or gone. One
-- call, so a batch appended meanwhile (submit --append adds the id back
-- before writing) is never stranded in a stream nobody reads. The
-- stream itself stays (empty, its consumer group in place) and expires
-- with the campaign's other keys.
-- KEYS: active, campaign:<id>:jobs, campaign:<id>. ARGV: id.
-- Returns 1 retired, 0 kept.
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('XLEN', KEYS[2]) > 0 then return 0 end
local st = redis.call('HGET', KEYS[3], 'state')
if st and st ~= 'done' then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
return 1
