-- ARGV: prefix, job -- the bot has the portraits: Redis keeps how the job ended, not them
local key = p .. 'job:' .. ARGV[2]
redis.call('SREM', p .. 'undelivered', ARGV[2])
if redis.call('EXISTS', key) == 1 then
  redis.call('HSET', key, 'delivered', '1')
  redis.call('HDEL', key, 'results')
end
return 1
