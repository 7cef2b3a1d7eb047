-- rcpt_final.lua: finalise or defer recipients of one campaign, one or
-- many in a call (README "Finalising"): ARGV holds a record of 17
-- arguments per recipient, in the order below; each is settled as if
-- alone, and the counters move once per call (their sums).
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
-- Returns an array, one per record: 1 written, 0 already final, -1 no
-- such recipient.
-- @include lib_final_count.lua
-- @include lib_retain.lua
local N = 17
local delta, res, last_ts, any_final = {}, {}, nil, false
local function add(f, n) delta[f] = (delta[f] or 0) + n end
for base = 0, #ARGV - N, N do
  local a = function(i) return ARGV[base + i] end
  local old = redis.call('HGET', KEYS[1], a(1))
  if not old then
    res[#res + 1] = -1
  else
    local ok, j = pcall(cjson.decode, old)
    local st = 'queued'
    if ok and type(j) == 'table' and type(j.state) == 'string' then st = j.state end
    if st == 'delivered' or st == 'bounced' or st == 'failed' or st == 'cancelled' or
       st == 'delivered_fallback' then
      if a(3) ~= 'deferred' and a(3) ~= 'cancelled' then add('dup_deliveries', 1) end
      res[#res + 1] = 0
    else
      redis.call('HSET', KEYS[1], a(1), a(2))
      if st ~= a(3) then
        add(st, -1)
        add(a(3), 1)
      end
      if tonumber(a(12)) > 0 then add('attempts', tonumber(a(12))) end
      redis.call('XADD', KEYS[4], 'MAXLEN', '~', a(11), '*', 'campaign', a(4),
        'rcpt', a(1), 'state', a(3), 'code', a(5), 'esc', a(6),
        'text', a(7), 'tls_version', a(8), 'tls_cipher', a(9), 'ts_ms', a(10),
        'class', a(15))
      if a(3) == 'bounced' and a(17) ~= '' then
        redis.call('HSETNX', KEYS[6], a(16), a(17))
      end
      if a(3) == 'deferred' then
        redis.call('ZADD', KEYS[5], a(13), a(14))
      else
        any_final = true
        last_ts = a(10)
      end
      res[#res + 1] = 1
    end
  end
end
for f, n in pairs(delta) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[2], f, n) end
end
-- total must be present and equal (not >=): a campaign hash that lost
-- its total, or counters that overshoot it, never set done from here
if any_final then
  local n = final_count(KEYS[2])
  local h = redis.call('HMGET', KEYS[3], 'total', 'state')
  if h[1] and tonumber(h[1]) == n and (h[2] == 'running' or h[2] == 'paused') then
    redis.call('HSET', KEYS[3], 'state', 'done', 'done_ms', last_ts)
    retain({KEYS[3], KEYS[1], KEYS[2], KEYS[7]}, last_ts)
  end
end
return res
