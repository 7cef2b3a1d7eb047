-- lib_final_count.lua (snippet, spliced by "-- @include"): final_count,
-- how many of a campaign's recipients are final: delivered + bounced +
-- failed + cancelled + delivered_fallback in its counts hash, a missing
-- field counting 0.
-- The scripts that may set a campaign done compare it with the total.
local function final_count(counts_key)
  local c = redis.call('HMGET', counts_key, 'delivered', 'bounced', 'failed', 'cancelled',
    'delivered_fallback')
  local n = 0
  for i = 1, 5 do n = n + (tonumber(c[i]) or 0) end
  return n
end
