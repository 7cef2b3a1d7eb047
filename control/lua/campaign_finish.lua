-- campaign_finish.lua: submit end. Sets submitted_ms, adds the invalid
-- lines, and moves submitting to running, or straight to done (with
-- done_ms) when every recipient is already final (or there are none);
-- done starts the campaign's retention (lib_retain.lua).
-- KEYS: campaign, counts, rcpt, jobs stream. ARGV: now_ms, invalid delta.
-- Returns the state after the call, false if the campaign is gone.
-- @include lib_final_count.lua
-- @include lib_retain.lua
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'submitted_ms', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'invalid', ARGV[2])
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'submitting' then
  st = 'running'
  local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
  if final_count(KEYS[2]) >= total then
    st = 'done'
    redis.call('HSET', KEYS[1], 'done_ms', ARGV[1])
  end
  redis.call('HSET', KEYS[1], 'state', st)
  if st == 'done' then retain({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, ARGV[1]) end
end
return st
