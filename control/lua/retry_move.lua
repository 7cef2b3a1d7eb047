-- retry_move.lua: due members of the retry ZSET become jobs entries of
-- their campaign's stream (NS campaign:<id>:jobs, its id put back in NS
-- active), grouped by campaign and domain, at most batch size recipients
-- an entry, each entry's attempt the highest of its recipients'.
-- ZRANGEBYSCORE, ZREM and XADD in one call, so two daemons never move a
-- member twice; members that do not parse are dropped. A paused
-- campaign's retries wait in its stream, which is not read while paused.
-- KEYS: retry, active. ARGV: now_ms, limit, batch size, namespace.
-- Returns {moved, dropped}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local groups, order, bad, bmax = {}, {}, 0, tonumber(ARGV[3])
local function flush(g)
  if #g.r == 0 then return end
  redis.call('SADD', KEYS[2], g.c)
  redis.call('XADD', ARGV[4] .. 'campaign:' .. g.c .. ':jobs', '*', 'campaign', g.c, 'domain', g.d,
    'attempt', tostring(g.a), 'rcpts', cjson.encode(g.r))
  g.r = {}
  g.a = 0
end
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  local ok, j = pcall(cjson.decode, m)
  if ok and type(j) == 'table' and type(j.c) == 'string' and type(j.d) == 'string'
     and type(j.to) == 'string' then
    local k = j.c .. '|' .. j.d
    local g = groups[k]
    if not g then g = {c = j.c, d = j.d, a = 0, r = {}}; groups[k] = g; table.insert(order, g) end
    local a = tonumber(j.a) or 1
    if a > g.a then g.a = a end
    table.insert(g.r, {to = j.to, f = j.f, a = a, first = j.first})
    if #g.r >= bmax then flush(g) end
  else
    bad = bad + 1
  end
end
for _, g in ipairs(order) do flush(g) end
return {#due - bad, bad}
