"""The Lua scripts that make each step of a job's life one atomic Redis call.

A job moves queued -> processing -> done | failed, and each arrow is one script, so a
crash between two Redis commands cannot leave a half-written job: the record, payload
and stream entry appear together (SUBMIT); the result, XACK and notification land
together (FINISH); a failed attempt is recorded and re-queued together (RETRY).
"""

# Circuit-breaker arithmetic shared by BEGIN, FINISH and RETRY, so the breaker moves in
# the same atomic step as the job. State lives in one hash per extractor family.
BREAKER_LUA = """
local function breaker_gate(key, now, recovery)
  local b = redis.call('HMGET', key, 'state', 'opened_at')
  local state = b[1] or 'closed'
  if state == 'open' then
    local reopen = tonumber(b[2]) + recovery
    if now < reopen then return {'open', reopen} end
    -- OPEN -> HALF_OPEN: the recovery timeout has passed; let trial jobs through
    redis.call('HSET', key, 'state', 'half_open', 'successes', 0, 'changed_at', now)
    return {'half_open', 0, 'open'}
  end
  return {state, 0}
end

local function breaker_record(key, outcome, now, fail_threshold, success_threshold)
  local state = redis.call('HGET', key, 'state') or 'closed'
  if outcome == 'failure' then
    redis.call('HINCRBY', key, 'total_failures', 1)
    local fails = redis.call('HINCRBY', key, 'consecutive_failures', 1)
    if state == 'half_open' or (state == 'closed' and fails >= fail_threshold) then
      -- CLOSED -> OPEN (threshold reached) or HALF_OPEN -> OPEN (a trial failed)
      redis.call('HSET', key, 'state', 'open', 'opened_at', now, 'changed_at', now,
                 'successes', 0)
      redis.call('HINCRBY', key, 'times_opened', 1)
      return {state, 'open'}
    end
  elseif outcome == 'success' then
    if state == 'half_open' then
      local ok = redis.call('HINCRBY', key, 'successes', 1)
      if ok >= success_threshold then
        -- HALF_OPEN -> CLOSED: enough trial jobs succeeded
        redis.call('HSET', key, 'state', 'closed', 'consecutive_failures', 0,
                   'successes', 0, 'changed_at', now)
        return {state, 'closed'}
      end
    elseif state == 'closed' then
      redis.call('HSET', key, 'consecutive_failures', 0)
    end
  end
  return {state, state}
end
"""

# KEYS: job, payload, stream, depth
# ARGV: max_depth, job_id, payload, family, then the job record as field/value pairs
SUBMIT = """
local depth = tonumber(redis.call('GET', KEYS[4]) or '0')
local max_depth = tonumber(ARGV[1])
if max_depth > 0 and depth >= max_depth then return {0, depth} end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('SET', KEYS[2], ARGV[3])
local entry = redis.call('XADD', KEYS[3], '*', 'job', ARGV[2], 'family', ARGV[4])
redis.call('INCR', KEYS[4])
return {1, entry}
"""

# Taking up a delivered job: gone | final | wait(reopen_at, created_at) |
# exhausted(attempts, last error code, message) |
# run(attempts, payload, breaker_transition, ext, method, request_id, tenant)
BEGIN_LUA = BREAKER_LUA + """
local function begin_job(job_key, payload_key, breaker_key, history_key, consumer, at,
                         max_attempts, recovery)
  local job = redis.call('HMGET', job_key, 'state', 'attempts', 'created_at', 'error_code',
                        'error_message', 'ext', 'method', 'request_id', 'tenant')
  local state = job[1]
  if not state then return {'gone'} end
  if state == 'done' or state == 'failed' then return {'final'} end
  local gate = breaker_gate(breaker_key, tonumber(at), tonumber(recovery))
  if gate[1] == 'open' then return {'wait', tostring(gate[2]), job[3] or '0'} end
  local attempts = tonumber(job[2] or '0') + 1
  if attempts > tonumber(max_attempts) then
    return {'exhausted', attempts - 1, job[4] or '', job[5] or ''}
  end
  redis.call('HSET', job_key, 'state', 'processing', 'attempts', attempts,
             'started_at', at, 'consumer', consumer)
  -- the delivery history a dead letter carries: who took the job, when, which attempt
  redis.call('RPUSH', history_key, cjson.encode({event = 'delivered', at = at,
             consumer = consumer, attempt = attempts}))
  local payload = redis.call('GET', payload_key)
  if not payload then return {'gone'} end
  return {'run', attempts, payload, gate[3] or '', job[6] or '', job[7] or '', job[8] or '',
          job[9] or ''}
end
"""

# KEYS: job, payload, breaker, history
# ARGV: consumer, now, max_attempts, breaker recovery seconds
BEGIN = BEGIN_LUA + """
return begin_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

# The next new entry for this consumer, taken up in the same call: one round trip per job
# instead of XREADGROUP + BEGIN while work is queued (the blocking read is for when none
# is). The job's keys follow from the entry, so they are built here from the prefixes in
# ARGV: standalone Redis and Sentinel allow it; Redis Cluster would not.
# KEYS: stream
# ARGV: group, consumer, now, max_attempts, breaker recovery seconds, then the key
#       prefixes of job, payload, breaker and history
# Returns {} when nothing is waiting, else {entry_id, job_id, family, BEGIN's reply...}
TAKE = BEGIN_LUA + """
local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                        'STREAMS', KEYS[1], '>')
if not read then return {} end
local entry = read[1][2][1]
local fields = {}
for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
local job_id, family = fields['job'], fields['family'] or 'python'
if not job_id then
  redis.call('XACK', KEYS[1], ARGV[1], entry[1])  -- not one of ours: nothing to run
  return {}
end
local begun = begin_job(ARGV[6] .. job_id, ARGV[7] .. job_id, ARGV[8] .. family,
                        ARGV[9] .. job_id, ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return {entry[1], job_id, family, unpack(begun)}
"""

# KEYS: job, payload, text, stream, depth, breaker, dead, history, job counters
# ARGV: group, entry_id, ttl, now, channel, job_id, outcome('success'|'none'|'failure'),
#       fail_threshold, success_threshold, dead(0|1), the longest text (bytes) the done
#       message may carry, then result fields as pairs
#       (state, error_code, ... ; a 'text' pair is stored under KEYS[3], not in the hash)
# The done message is the job id, or "<job id>\n" + JSON {record, text} when the text is
# short: a waiting api then answers from the message without reading the job back.
FINISH = BREAKER_LUA + """
local function record_of(key)
  local flat = redis.call('HGETALL', key)
  local record = {}
  for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
  return record
end

local state = redis.call('HGET', KEYS[1], 'state')
redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
if (not state) or state == 'done' or state == 'failed' then return {0, '', ''} end
local ttl = tonumber(ARGV[3])
local fields = {}
local text = nil
for i = 12, #ARGV, 2 do
  if ARGV[i] == 'text' then
    text = ARGV[i + 1]
    redis.call('SET', KEYS[3], text, 'EX', ttl)
  else
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
end
redis.call('HSET', KEYS[1], 'finished_at', ARGV[4], unpack(fields))
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[8], ttl)
local record = record_of(KEYS[1])  -- final from here on: the counters, dead letter, message
if ARGV[10] == '1' then
  -- keep the payload so an operator can replay the dead letter; the record and the
  -- history go in as JSON an operator can read (an object, and a list of objects)
  local history = '['
  for i, step in ipairs(redis.call('LRANGE', KEYS[8], 0, -1)) do
    history = history .. (i > 1 and ',' or '') .. step
  end
  redis.call('XADD', KEYS[7], '*', 'job', ARGV[6], 'entry', ARGV[2],
             'record', cjson.encode(record), 'history', history .. ']')
else
  redis.call('DEL', KEYS[2])
end
if tonumber(redis.call('DECR', KEYS[5])) < 0 then redis.call('SET', KEYS[5], 0) end
redis.call('HINCRBY', KEYS[9], 'finished', 1)
redis.call('HINCRBY', KEYS[9],
           record.state == 'done' and 'done' or ('failed:' .. (record.error_code or '')), 1)
local transition = {'', ''}
if ARGV[7] ~= 'none' then
  transition = breaker_record(KEYS[6], ARGV[7], tonumber(ARGV[4]), tonumber(ARGV[8]),
                              tonumber(ARGV[9]))
end
local message = ARGV[6]
if (not text) or #text <= tonumber(ARGV[11]) then
  message = message .. '\\n' .. cjson.encode({record = record, text = text})
end
redis.call('PUBLISH', ARGV[5], message)
return {1, transition[1], transition[2]}
"""

# A failed attempt (machinery error, death of the child, open breaker): acknowledge the
# old entry and queue the job again, now or at ready_at, in one step. Only a delivery
# still pending is re-queued: a second RETRY of the same entry (the master re-queueing
# for a child that had just re-queued it itself, or redis-py re-sending the call after a
# dropped reply) must not put the job on the stream twice.
# KEYS: job, stream, deferred, breaker, history
# ARGV: group, entry_id, job_id, now, ready_at (0: now), outcome('failure'|'none'),
#       fail_threshold, success_threshold, error_code, error_message, consumer, family
RETRY = BREAKER_LUA + """
local state = redis.call('HGET', KEYS[1], 'state')
local acked = redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
if acked == 0 or (not state) or state == 'done' or state == 'failed' then
  return {0, '', ''}
end
local fields = {'state', 'queued'}
if ARGV[9] ~= '' then
  fields = {'state', 'queued', 'error_code', ARGV[9], 'error_message', ARGV[10]}
  redis.call('RPUSH', KEYS[5], cjson.encode({event = 'failed', at = ARGV[4],
             consumer = ARGV[11], code = ARGV[9], message = ARGV[10]}))
end
redis.call('HSET', KEYS[1], unpack(fields))
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[12] .. '|' .. ARGV[3])
else
  redis.call('XADD', KEYS[2], '*', 'job', ARGV[3], 'family', ARGV[12])
end
local transition = {'', ''}
if ARGV[6] ~= 'none' then
  transition = breaker_record(KEYS[4], ARGV[6], tonumber(ARGV[4]), tonumber(ARGV[7]),
                              tonumber(ARGV[8]))
end
return {1, transition[1], transition[2]}
"""

# Move deferred jobs whose time has come back onto the stream.
# KEYS: deferred, stream   ARGV: now, limit
PROMOTE = """
local ready = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(ready) do
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '|', 1, true)
  redis.call('XADD', KEYS[2], '*', 'job', string.sub(member, sep + 1),
             'family', string.sub(member, 1, sep - 1))
end
return #ready
"""

# KEYS: job, payload, text, depth, history   ARGV: channel, job_id
# A job deleted before it finished ends 'cancelled' for anyone waiting on it.
DELETE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
if state ~= 'done' and state ~= 'failed' then
  if tonumber(redis.call('DECR', KEYS[4])) < 0 then redis.call('SET', KEYS[4], 0) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""
