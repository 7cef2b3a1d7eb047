-- rcpt_final.lua: finalise or defer one recipient (README "Finalising").
-- Idempotent: a recipient already final is left alone (a final state
-- reported again counts dup_deliveries). Otherwise writes its JSON, moves
-- the counters (old state -1, new +1), adds the attempts, appends to the
-- events stream; a deferred one joins the retry ZSET, and a final one
-- that was the campaign's last sets it done (with done_ms), only from
-- running or paused: never during submitting, never over cancelled.
-- A bounce given a suppression entry (the caller gives one only for an
-- address class: invalid_recipient, bad_domain) adds the address to the
-- sender domain's suppression list in the same call, unless it is listed
-- already (an unsubscribe keeps its reason). Done starts the campaign's
-- retention (lib_retain.lua).
-- KEYS: rcpt hash, counts, campaign, events, retry, suppress:<sender domain>,
--       the campaign's jobs stream.
-- ARGV: addr, json, state, campaign, code, esc, text, tls_version,
--       tls_cipher, ts_ms, maxlen, attempts delta, due_ms, retry member,
--       bounce class ("" for a delivery), suppression field (the address
--       lower-cased), suppression entry JSON ("" = none).
-- Returns 1 written, 0 already final, -1 no such recipient.
-- @include lib_final_count.lua
-- @include lib_retain.lua
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return -1 end
local ok, j = pcall(cjson.decode, old)
local st = 'queued'
if ok and type(j) == 'table' and type(j.state) == 'string' then st = j.state end
if st == 'delivered' or st == 'bounced' or st == 'failed' or st == 'cancelled' or
   st == 'delivered_fallback' then
  if ARGV[3] ~= 'deferred' and ARGV[3] ~= 'cancelled' then
    redis.call('HINCRBY', KEYS[2], 'dup_deliveries', 1)
  end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if st ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[2], st, -1)
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
if tonumber(ARGV[12]) > 0 then redis.call('HINCRBY', KEYS[2], 'attempts', ARGV[12]) end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[11], '*', 'campaign', ARGV[4],
  'rcpt', ARGV[1], 'state', ARGV[3], 'code', ARGV[5], 'esc', ARGV[6],
  'text', ARGV[7], 'tls_version', ARGV[8], 'tls_cipher', ARGV[9], 'ts_ms', ARGV[10],
  'class', ARGV[15])
if ARGV[3] == 'bounced' and ARGV[17] ~= '' then
  redis.call('HSETNX', KEYS[6], ARGV[16], ARGV[17])
end
if ARGV[3] == 'deferred' then
  redis.call('ZADD', KEYS[5], ARGV[13], ARGV[14])
else
  -- total must be present and equal (not >=): a campaign hash that lost
  -- its total, or counters that overshoot it, never set done from here
  local n = final_count(KEYS[2])
  local h = redis.call('HMGET', KEYS[3], 'total', 'state')
  if h[1] and tonumber(h[1]) == n and (h[2] == 'running' or h[2] == 'paused') then
    redis.call('HSET', KEYS[3], 'state', 'done', 'done_ms', ARGV[10])
    retain({KEYS[3], KEYS[1], KEYS[2], KEYS[7]}, ARGV[10])
  end
end
return 1
