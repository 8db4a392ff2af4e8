-- ARGV: prefix, ticket, rearm -> a ticket read but not used: ack it, and hand the wake-up on if asked
release(ARGV[2])
if ARGV[3] == '1' and redis.call('ZCARD', p .. 'waiting') > 0 then
  redis.call('XADD', p .. 'jobs', '*', 'job_id', '-')
end
return 1
