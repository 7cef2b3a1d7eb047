-- lease_refresh.lua: reset the idle time of the jobs entries this
-- consumer still owns, and only those. An entry another consumer claimed
-- meanwhile (this one was cut off from Redis for longer than
-- claim_min_idle) stays with it: a plain XCLAIM with min-idle 0 would
-- take it back and both would send it.
-- KEYS: jobs. ARGV: group, consumer, entry id... Returns the ids that are
-- still ours (now refreshed); the others are lost.
local out = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    out[#out + 1] = ARGV[i]
  end
end
return out
