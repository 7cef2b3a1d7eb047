-- lib_retain.lua (snippet, spliced by "-- @include"): retain, called by
-- the scripts that make a campaign done or cancelled. Its keys (the
-- campaign hash, rcpt, counts, its jobs stream: all in the caller's KEYS)
-- expire retention_s seconds later (default 30 days, 0 = never), and
-- the hash says when (expires_ms). NS campaigns keeps the id until a
-- listing finds the hash gone.
local function retain(keys, now_ms)
  local r = tonumber(redis.call('HGET', keys[1], 'retention_s') or '')
  if r == nil then r = 2592000 end
  if r <= 0 then return end
  redis.call('HSET', keys[1], 'expires_ms', tonumber(now_ms) + r * 1000)
  for _, k in ipairs(keys) do redis.call('PEXPIRE', k, r * 1000) end
end
