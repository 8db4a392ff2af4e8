-- ARGV: prefix, ticket, worker, now -> {job, spec, attempts, smaller, failures} or nil
local ticket, worker, now = ARGV[2], ARGV[3], ARGV[4]
local function reply(job)
  local f = redis.call('HMGET', p .. 'job:' .. job, 'spec', 'attempts', 'smaller', 'failures')
  return {job, f[1] or '', f[2] or '0', f[3] or '0', f[4] or '0'}
end
local held = redis.call('HGET', p .. 'claims', ticket)
if held then  -- the same claim, asked again after a lost reply
  local f = redis.call('HMGET', p .. 'job:' .. held, 'state', 'ticket')
  if f[1] == 'running' and f[2] == ticket then return reply(held) end
  return false
end
local pending = redis.call('XPENDING', p .. 'jobs', 'workers', ticket, ticket, 1)
if #pending == 0 or pending[1][2] ~= worker then return false end
for _ = 1, 1000 do
  local first = redis.call('ZRANGE', p .. 'waiting', 0, 0, 'WITHSCORES')
  if #first == 0 then return false end
  redis.call('ZREM', p .. 'waiting', first[1])
  local job = string.match(first[1], '^[^|]*|[^|]*|(.+)$')
  local key = job and (p .. 'job:' .. job)
  if key and redis.call('HGET', key, 'state') == 'queued' then
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'state', 'running', 'started_at', now, 'worker', worker, 'ticket', ticket)
    redis.call('HSET', p .. 'running', job, worker)
    redis.call('HSET', p .. 'claims', ticket, job)
    local round = tonumber(first[2]) or 0
    if round > (tonumber(redis.call('GET', p .. 'round')) or 0) then redis.call('SET', p .. 'round', round) end
    return reply(job)
  end
end
return false
