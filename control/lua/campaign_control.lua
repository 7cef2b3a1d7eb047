-- campaign_control.lua: pause, resume, cancel. pause: submitting|running
-- -> paused; resume: paused -> running (done at once when every
-- recipient is final) if submitted_ms is set, else submitting; cancel:
-- submitting|running|paused -> cancelled (with cancelled_ms). Repeating
-- an action is a no-op; anything else is refused. set: changes the
-- campaign's priority or window (ARGV[3] field, ARGV[4] value, checked by
-- the caller) while it is not done or cancelled; daemons pick it up with
-- their next campaign refresh.
-- Done or cancelled starts the campaign's retention (lib_retain.lua).
-- KEYS: campaign, counts, rcpt, jobs stream. ARGV: action, now_ms[, field, value].
-- Returns {old, new} (states, or the field's values for set) or an error
-- reply "NOCAMPAIGN" / "REFUSED <why>".
-- @include lib_final_count.lua
-- @include lib_retain.lua
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return redis.error_reply('NOCAMPAIGN') end
local a = ARGV[1]
local new = st
if a == 'set' then
  local f = ARGV[3]
  if f ~= 'priority' and f ~= 'window' then return redis.error_reply('REFUSED cannot set ' .. f) end
  if st == 'done' or st == 'cancelled' then return redis.error_reply('REFUSED campaign is ' .. st) end
  local old = redis.call('HGET', KEYS[1], f) or ''
  if old == '' and f == 'priority' then old = 'normal' end
  redis.call('HSET', KEYS[1], f, ARGV[4])
  return {old, ARGV[4]}
end
if a == 'pause' then
  if st == 'submitting' or st == 'running' then new = 'paused'
  elseif st ~= 'paused' then return redis.error_reply('REFUSED campaign is ' .. st) end
elseif a == 'resume' then
  if st == 'paused' then
    if redis.call('HEXISTS', KEYS[1], 'submitted_ms') == 1 then new = 'running' else new = 'submitting' end
  elseif st ~= 'running' and st ~= 'submitting' then
    return redis.error_reply('REFUSED campaign is ' .. st) end
elseif a == 'cancel' then
  if st == 'submitting' or st == 'running' or st == 'paused' then new = 'cancelled'
  elseif st ~= 'cancelled' then return redis.error_reply('REFUSED campaign is ' .. st) end
else return redis.error_reply('REFUSED unknown action ' .. a) end
if new ~= st then
  if new == 'running' then
    local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
    if final_count(KEYS[2]) >= total then new = 'done'; redis.call('HSET', KEYS[1], 'done_ms', ARGV[2]) end
  end
  redis.call('HSET', KEYS[1], 'state', new)
  if new == 'cancelled' then redis.call('HSET', KEYS[1], 'cancelled_ms', ARGV[2]) end
  if new == 'cancelled' or new == 'done' then retain({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, ARGV[2]) end
end
return {st, new}
