-- tls_count.lua: one session's TLS counters for its domain (README
-- "NS tls:<domain>"), and the domain added to the tls:domains set.
-- KEYS: tls:<domain>, tls:domains. ARGV: domain, then field, increment...
-- Returns 1.
redis.call('SADD', KEYS[2], ARGV[1])
for i = 2, #ARGV - 1, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
