-- submit_batch.lua: one batch of recipients of one domain. Stops if the
-- campaign is cancelled or gone; queues each address not yet in the
-- campaign (HSETNX) and writes the kept ones as one jobs entry, raising
-- total and queued by as many in the same call, so the counters stay
-- consistent and a crash never leaves a recipient queued in no batch.
-- KEYS: campaign, rcpt, counts, jobs.
-- ARGV: id, domain, rcpt value, invalid delta, (address, entry)...
-- Returns {status, dup index...}: status 0 ok, -1 cancelled, -2 no
-- campaign; a dup index is the 1-based position of a skipped address.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {-2} end
if st == 'cancelled' then return {-1} end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'invalid', ARGV[4]) end
local acc, res = {}, {0}
for i = 5, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[3]) == 1 then
    acc[#acc + 1] = ARGV[i + 1]
  else
    res[#res + 1] = (i - 3) / 2
  end
end
if #acc > 0 then
  redis.call('XADD', KEYS[4], '*', 'campaign', ARGV[1], 'domain', ARGV[2],
    'attempt', '0', 'rcpts', '[' .. table.concat(acc, ',') .. ']')
  redis.call('HINCRBY', KEYS[1], 'total', #acc)
  redis.call('HINCRBY', KEYS[3], 'queued', #acc)
end
if #res > 1 then redis.call('HINCRBY', KEYS[1], 'duplicates_skipped', #res - 1) end
return res
