-- ARGV: prefix, job, ticket, failed, smaller, refund -> failures, or -1 when the ticket no longer holds the job
local job, ticket = ARGV[2], ARGV[3]
local key = p .. 'job:' .. job
local f = redis.call('HMGET', key, 'state', 'ticket', 'round', 'wkey')
if f[1] ~= 'running' or f[2] ~= ticket then return -1 end
redis.call('HSET', key, 'state', 'queued', 'started_at', '', 'worker', '', 'ticket', '')
local failures = redis.call('HINCRBY', key, 'failures', tonumber(ARGV[4]))
if ARGV[5] == '1' then redis.call('HSET', key, 'smaller', '1') end
if ARGV[6] == '1' then redis.call('HINCRBY', key, 'attempts', -1) end
redis.call('ZADD', p .. 'waiting', tonumber(f[3]) or 0, f[4] or ('0|0|' .. job))
redis.call('HDEL', p .. 'running', job)
release(ticket)
redis.call('XADD', p .. 'jobs', '*', 'job_id', job)
return failures
