-- ARGV: prefix, job, user, event, now, ttl, maxlen, flag_ttl -> 'removed' (was queued) | 'stopping' (was running)
-- | 'no' (unknown, someone else's, or already finished)
local job = ARGV[2]
local f = redis.call('HMGET', p .. 'job:' .. job, 'state', 'user_id')
if not f[1] or (ARGV[3] ~= '' and f[2] ~= ARGV[3]) then return 'no' end
if f[1] == 'queued' then
  finish(job, 'queued', '', 'cancelled', ARGV[4], 'Cancelled.', ARGV[5], ARGV[6], ARGV[7], '0', '')
  return 'removed'
end
if f[1] == 'running' then
  redis.call('SET', p .. 'cancel:' .. job, '1', 'EX', ARGV[8])
  return 'stopping'
end
return 'no'
