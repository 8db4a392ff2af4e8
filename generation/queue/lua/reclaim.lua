-- ARGV: prefix, ticket, owner, force -> {'gone'} | {'alive'} | {'released'} | {'dead', job, attempts}
local ticket, owner = ARGV[2], ARGV[3]
local pending = redis.call('XPENDING', p .. 'jobs', 'workers', ticket, ticket, 1)
if #pending == 0 or pending[1][2] ~= owner then return {'gone'} end
if ARGV[4] ~= '1' and redis.call('EXISTS', p .. 'worker:' .. owner) == 1 then return {'alive'} end
local job = redis.call('HGET', p .. 'claims', ticket)
if job then
  local f = redis.call('HMGET', p .. 'job:' .. job, 'state', 'ticket', 'attempts')
  if f[1] == 'running' and f[2] == ticket then return {'dead', job, f[3] or '0'} end
end
release(ticket)
if redis.call('ZCARD', p .. 'waiting') > 0 then redis.call('XADD', p .. 'jobs', '*', 'job_id', '-') end
return {'released'}
