-- submit_batch.lua: one batch of recipients of one domain. Stops if the
-- campaign is cancelled or gone; skips each address in the sender
-- domain's suppression list (HEXISTS on its lower-cased form: not queued,
-- not in total, counted in the campaign's suppressed), queues each other
-- address not yet in the campaign (HSETNX) and writes the kept ones as
-- one jobs entry, raising total and queued by as many in the same call,
-- so the counters stay consistent, a crash never leaves a recipient
-- queued in no batch, and no suppression written before the call is
-- missed.
-- KEYS: campaign, rcpt, counts, campaign:<id>:jobs, suppress:<sender domain>.
-- ARGV: id, domain, rcpt value, invalid delta, (address, entry)...
-- Returns {status, index...}: status 0 ok, -1 cancelled, -2 no
-- campaign; an index k is the 1-based position of a skipped address,
-- k > 0 a duplicate, -k suppressed.
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {-2} end
if st == 'cancelled' then return {-1} end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'invalid', ARGV[4]) end
local acc, res, dups, sup = {}, {0}, 0, 0
for i = 5, #ARGV, 2 do
  local k = (i - 3) / 2
  if redis.call('HEXISTS', KEYS[5], string.lower(ARGV[i])) == 1 then
    res[#res + 1] = -k
    sup = sup + 1
  elseif redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[3]) == 1 then
    acc[#acc + 1] = ARGV[i + 1]
  else
    res[#res + 1] = k
    dups = dups + 1
  end
end
if #acc > 0 then
  redis.call('XADD', KEYS[4], '*', 'campaign', ARGV[1], 'domain', ARGV[2],
    'attempt', '0', 'rcpts', '[' .. table.concat(acc, ',') .. ']')
  redis.call('HINCRBY', KEYS[1], 'total', #acc)
  redis.call('HINCRBY', KEYS[3], 'queued', #acc)
end
if dups > 0 then redis.call('HINCRBY', KEYS[1], 'duplicates_skipped', dups) end
if sup > 0 then redis.call('HINCRBY', KEYS[1], 'suppressed', sup) end
return res
