-- Shared by every script, prepended at load (redis_store.load_script): the prefix, and the steps that
-- release a ticket, take a job off every count, and record a job's end.
local p = ARGV[1]
local function release(ticket)
  redis.call('XACK', p .. 'jobs', 'workers', ticket)
  redis.call('XDEL', p .. 'jobs', ticket)
  redis.call('HDEL', p .. 'claims', ticket)
end
-- The job leaves the line and every count of active jobs (waiting set, active map, per-person and
-- per-server counts, running map): what finishing and forgetting a job share.
local function unlist(job, wkey, user, guild)
  if wkey then redis.call('ZREM', p .. 'waiting', wkey) end
  redis.call('HDEL', p .. 'active', job)
  if user and redis.call('HDEL', p .. 'uactive:' .. user, job) == 1 and guild then
    redis.call('HINCRBY', p .. 'gactive', guild, -1)
  end
  redis.call('HDEL', p .. 'running', job)
end
local function finish(job, expect, ticket, state, event, reason, now, ttl, maxlen, add_failure, results)
  local key = p .. 'job:' .. job
  local f = redis.call('HMGET', key, 'state', 'ticket', 'wkey', 'user_id', 'guild_id')
  if not f[1] then
    -- Forgotten (/forget) while it ran: its outcome has nowhere to go, and its ticket is of no use.
    if ticket ~= '' and redis.call('HGET', p .. 'claims', ticket) == job then release(ticket) end
    redis.call('DEL', p .. 'cancel:' .. job)
    return 0
  end
  if ticket ~= '' and f[1] == state and f[2] == ticket then return 1 end
  if f[1] ~= expect or (expect == 'running' and f[2] ~= ticket) then return 0 end
  redis.call('HSET', key, 'state', state, 'reason', reason, 'final_event', event, 'delivered', '0',
             'finished_at', now)
  -- The portraits wait here, once, until the bot's ack; the event (stream and hash) carries none.
  if results and results ~= '' then redis.call('HSET', key, 'results', results) end
  -- A finished job never runs again: drop its reference photos (base64, hundreds of KB) from memory.
  local spec = redis.call('HGET', key, 'spec')
  if spec then
    redis.call('HSET', key, 'spec', (string.gsub(spec, '"references":%b[]', '"references":[]', 1)))
  end
  if add_failure == '1' then redis.call('HINCRBY', key, 'failures', 1) end
  unlist(job, f[3], f[4], f[5])
  redis.call('SADD', p .. 'undelivered', job)
  redis.call('XADD', p .. 'events', 'MAXLEN', '~', maxlen, '*', 'event', event)
  redis.call('EXPIRE', key, ttl)
  redis.call('DEL', p .. 'cancel:' .. job)
  if ticket ~= '' then release(ticket) end
  return 1
end
