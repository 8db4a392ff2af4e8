-- ARGV: prefix, job, flag_ttl -- /forget for one job, whatever its state: gone now, counts kept true. A running
-- one is told to stop; its worker's finish then finds nothing and releases its ticket (see finish()).
local job = ARGV[2]
local key = p .. 'job:' .. job
local f = redis.call('HMGET', key, 'state', 'wkey', 'user_id', 'guild_id')
if f[1] then
  unlist(job, f[2], f[3], f[4])
  if f[1] == 'running' then redis.call('SET', p .. 'cancel:' .. job, '1', 'EX', ARGV[3]) end
  redis.call('DEL', key)
end
redis.call('SREM', p .. 'undelivered', job)
return f[1] and 1 or 0
