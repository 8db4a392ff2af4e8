-- ARGV: prefix, job, expect, ticket, state, event, reason, now, ttl, maxlen, add_failure, results
-- -> 1 stored / 0 not
return finish(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12])
