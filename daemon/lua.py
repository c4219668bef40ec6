"""The Lua scripts that make each step of a job's life one atomic Redis call.

A job moves queued -> processing -> done | failed, and each arrow is one script, so a
crash between two Redis commands cannot leave a half-written job: the record, payload
and stream entry appear together (SUBMIT, or SUBMIT_MANY for a batch); the result, XACK,
notification and callback delivery land together (FINISH); a failed attempt is recorded
and re-queued together (RETRY). A scan sent for OCR is cut into page tasks and put back
together the same way (FAN_OUT, begin_page, FINISH_PAGE), inside the job's one
processing state.
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

-- The document a failure is evidence from: its hash (copies of one upload are one
-- document), else the job (its retries are one document).
local function document_of(job_key, job_id)
  local sha = redis.call('HGET', job_key, 'sha256')
  if sha and sha ~= '' then return string.sub(sha, 1, 16) end
  return job_id
end

local MAX_DOCS_KEPT = 32  -- failing documents remembered: a few past the threshold

-- The job's document (document_of) is read only for a failure.
local function breaker_record(key, outcome, now, fail_threshold, success_threshold, job_key,
                              job_id)
  local b = redis.call('HMGET', key, 'state', 'consecutive_failures', 'failing_docs')
  local state = b[1] or 'closed'
  if outcome == 'failure' then
    -- A failure counts once per distinct document until the next success: one hostile
    -- document (or its retries, or its copies) is one piece of evidence, not three.
    local doc = document_of(job_key, job_id)
    local docs = b[3] or ''
    if string.find(',' .. docs .. ',', ',' .. doc .. ',', 1, true) then
      redis.call('HINCRBY', key, 'repeat_failures', 1)
      return {state, state}
    end
    local listed = {}
    for d in string.gmatch(docs, '[^,]+') do listed[#listed + 1] = d end
    listed[#listed + 1] = doc
    while #listed > MAX_DOCS_KEPT do table.remove(listed, 1) end
    redis.call('HSET', key, 'failing_docs', table.concat(listed, ','))
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
        redis.call('HDEL', key, 'failing_docs')
        return {state, 'closed'}
      end
    elseif state == 'closed' and ((tonumber(b[2]) or 0) ~= 0 or b[3]) then
      -- (most jobs succeed with nothing to reset: no write, nothing for the AOF)
      redis.call('HSET', key, 'consecutive_failures', 0)
      redis.call('HDEL', key, 'failing_docs')
    end
  end
  return {state, state}
end
"""

# A child died mid-job (deadline, memory, signal): count the death against the
# document's hash, and once it has killed MAX_ATTEMPTS workers, quarantine the hash for
# QUARANTINE_TTL (a sorted set scored by expiry, details in a hash beside it), so neither
# a queued copy nor a new upload of the same bytes risks another worker.
NOTE_DEATH_LUA = """
local function note_death(job_key, job_id, now, max_attempts, ttl, deaths_prefix,
                          quarantine, details, code)
  local sha = redis.call('HGET', job_key, 'sha256')
  if (not sha) or sha == '' then return 0 end
  local deaths_key = deaths_prefix .. sha
  local deaths = redis.call('INCR', deaths_key)
  redis.call('EXPIRE', deaths_key, ttl)
  if deaths < max_attempts then return 0 end
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', quarantine, '-inf', now)) do
    redis.call('ZREM', quarantine, old)
    redis.call('HDEL', details, old)
  end
  redis.call('ZADD', quarantine, now + ttl, sha)
  redis.call('HSET', details, sha, cjson.encode({
    sha256 = sha, quarantined_at = now, expires_at = now + ttl, deaths = deaths,
    job_id = job_id, error_code = code,
    format = redis.call('HGET', job_key, 'ext') or ''}))
  return 1
end
"""

# Each script names its KEYS and ARGV slots in locals at its top, so no body reads a slot
# by number (dramatiq's habit).

# Whether a document's hash is quarantined now: SUBMIT refuses it inside the call that
# would store it (no ZSCORE before it), and a delivery queued before the quarantine is
# failed without running (begin_job).
QUARANTINED_LUA = """
local function quarantined(quarantine, sha256, now)
  if sha256 == '' then return false end
  local expires = redis.call('ZSCORE', quarantine, sha256)
  return expires ~= false and tonumber(expires) > tonumber(now)
end
"""

# KEYS: job, payload, stream, depth, text, job counters, quarantine
# ARGV: max_depth, job_id, payload, family, cache key to look up ('' for none), now,
#       result_ttl, the key prefixes of job and text, the document's sha256, then the
#       job record as field/value pairs
# Returns {0, depth} (queue full), {1, entry id} (queued), {2, source job id} (served
# from the result cache: the job is stored done with a copy of the source's result and
# nothing is queued, so a full queue does not refuse it) or {3, ''} (the document is
# quarantined: nothing is stored).
SUBMIT = QUARANTINED_LUA + """
local job_key = KEYS[1]
local payload_key = KEYS[2]
local stream = KEYS[3]
local depth_key = KEYS[4]
local text_key = KEYS[5]
local counters_key = KEYS[6]
local quarantine = KEYS[7]
local max_depth = tonumber(ARGV[1])
local job_id = ARGV[2]
local payload = ARGV[3]
local family = ARGV[4]
local cache_key = ARGV[5]
local now = ARGV[6]
local ttl = tonumber(ARGV[7])
local job_prefix = ARGV[8]
local text_prefix = ARGV[9]
local sha256 = ARGV[10]
local RECORD_FROM = 11  -- the record's field/value pairs fill ARGV from here

if quarantined(quarantine, sha256, now) then return {3, ''} end

-- The source's keys follow from the id the cache key names, so they are built here from
-- the prefixes: standalone Redis and Sentinel allow it; Redis Cluster would not.
local function serve_from_cache()
  local source = redis.call('GET', cache_key)
  if not source then return nil end
  local src = redis.call('HMGET', job_prefix .. source, 'state', 'chars', 'metadata',
                         'page_ends')
  if src[1] ~= 'done' or redis.call('EXISTS', text_prefix .. source) == 0 then
    redis.call('DEL', cache_key)  -- its job expired: the entry serves no one any more
    return nil
  end
  redis.call('HSET', job_key, unpack(ARGV, RECORD_FROM))
  redis.call('HSET', job_key, 'state', 'done', 'cached', '1', 'chars', src[2],
             'metadata', src[3] or '{}', 'page_ends', src[4] or 'null', 'started_at', now,
             'finished_at', now, 'duration_ms', '0')
  redis.call('EXPIRE', job_key, ttl)
  -- a copy, not a reference: deleting either job leaves the other's text whole
  redis.call('COPY', text_prefix .. source, text_key, 'REPLACE')
  redis.call('EXPIRE', text_key, ttl)
  return source
end

if cache_key ~= '' then
  local source = serve_from_cache()
  redis.call('HINCRBY', counters_key, source and 'cache_hits' or 'cache_misses', 1)
  if source then return {2, source} end
end
local depth = tonumber(redis.call('GET', depth_key) or '0')
if max_depth > 0 and depth >= max_depth then return {0, depth} end
redis.call('HSET', job_key, unpack(ARGV, RECORD_FROM))
redis.call('SET', payload_key, payload)
local entry = redis.call('XADD', stream, '*', 'job', job_id, 'family', family)
redis.call('INCR', depth_key)
return {1, entry}
"""

# Several uploads of one request (POST /v1/batches) stored in one call: every record,
# payload and stream entry, or none when the queue has no room for them all or some
# documents are quarantined.
# KEYS: stream, depth, quarantine, then per job: its record key, its payload key
# ARGV: max_depth, jobs, now, then per job: job_id, family, sha256, payload, the
#       record's field count n, then n field/value pairs... (so each job takes 5 + 2n
#       slots)
# Returns {0, depth} (queue full), {1, entry ids} (queued) or {3, the 1-based numbers of
# the quarantined jobs} (nothing is stored: the caller refuses those and sends the rest).
SUBMIT_MANY = QUARANTINED_LUA + """
local stream = KEYS[1]
local depth_key = KEYS[2]
local quarantine = KEYS[3]
local max_depth = tonumber(ARGV[1])
local jobs = tonumber(ARGV[2])
local now = ARGV[3]
local JOB_KEYS_FROM = 4  -- KEYS: job_1, payload_1, job_2, payload_2, ...
local JOBS_FROM = 4  -- ARGV: job_1's id, family, sha256, payload, field count, its fields...
local FIXED = 5  -- the slots of each job before its fields

local poison = {}
local at = JOBS_FROM
for n = 1, jobs do
  if quarantined(quarantine, ARGV[at + 2], now) then poison[#poison + 1] = n end
  at = at + FIXED + 2 * tonumber(ARGV[at + 4])
end
if #poison > 0 then return {3, poison} end
local depth = tonumber(redis.call('GET', depth_key) or '0')
if max_depth > 0 and depth + jobs > max_depth then return {0, depth} end
local entries = {}
at = JOBS_FROM
for n = 1, jobs do
  local job_key = KEYS[JOB_KEYS_FROM + 2 * (n - 1)]
  local payload_key = KEYS[JOB_KEYS_FROM + 2 * (n - 1) + 1]
  local job_id, family, payload = ARGV[at], ARGV[at + 1], ARGV[at + 3]
  local fields = tonumber(ARGV[at + 4])
  redis.call('HSET', job_key, unpack(ARGV, at + FIXED, at + FIXED - 1 + 2 * fields))
  redis.call('SET', payload_key, payload)
  entries[n] = redis.call('XADD', stream, '*', 'job', job_id, 'family', family)
  at = at + FIXED + 2 * fields
end
redis.call('INCRBY', depth_key, jobs)
return {1, entries}
"""

# Taking up a delivered job: gone | final | wait(reopen_at, created_at) |
# exhausted(attempts, last error code, message) |
# run(attempts, payload, breaker_transition, ext, method, request_id, tenant, sha256)
BEGIN_LUA = BREAKER_LUA + QUARANTINED_LUA + """
local function begin_job(job_key, payload_key, breaker_key, history_key, quarantine,
                         consumer, at, max_attempts, recovery)
  local job = redis.call('HMGET', job_key, 'state', 'attempts', 'created_at', 'error_code',
                        'error_message', 'ext', 'method', 'request_id', 'tenant', 'sha256')
  local state = job[1]
  if not state then return {'gone'} end
  if state == 'done' or state == 'failed' then return {'final'} end
  local gate = breaker_gate(breaker_key, tonumber(at), tonumber(recovery))
  if gate[1] == 'open' then return {'wait', tostring(gate[2]), job[3] or '0'} end
  local attempts = tonumber(job[2] or '0') + 1
  if attempts > tonumber(max_attempts) then
    return {'exhausted', attempts - 1, job[4] or '', job[5] or ''}
  end
  if quarantined(quarantine, job[10] or '', at) then
    -- queued before its hash was quarantined: fail it without risking a worker
    return {'exhausted', attempts - 1, 'poison_document',
            'the document is quarantined: it killed its worker on every attempt'}
  end
  redis.call('HSET', job_key, 'state', 'processing', 'attempts', attempts,
             'started_at', at, 'consumer', consumer)
  -- the delivery history a dead letter carries: who took the job, when, which attempt
  redis.call('RPUSH', history_key, cjson.encode({event = 'delivered', at = at,
             consumer = consumer, attempt = attempts}))
  local payload = redis.call('GET', payload_key)
  if not payload then return {'gone'} end
  return {'run', attempts, payload, gate[3] or '', job[6] or '', job[7] or '', job[8] or '',
          job[9] or '', job[10] or ''}
end

-- Taking up one page task of a scan fanned out by FAN_OUT: gone | final |
-- exhausted(attempts, last error code, message) | run(...) | assemble(...), where run and
-- assemble answer as begin_job's run, then the page, the pages in all, when the job
-- began and its attempts. Attempts are counted per page (assemble answers the job's own);
-- the breaker gate was the job's, when it began. A page whose text is stored already is
-- a second delivery: skipped, unless every page is in, when it is the
-- delivery that was to assemble the job and died before it did (FINISH_PAGE leaves the
-- last page's entry pending for that).
local function begin_page(job_key, pages_key, payload_key, consumer, at, max_attempts,
                          page)
  local job = redis.call('HMGET', job_key, 'state', 'ext', 'method', 'request_id', 'tenant',
                         'started_at', 'attempts', 'sha256')
  local state = job[1]
  if not state then return {'gone'} end
  if state == 'done' or state == 'failed' then return {'final'} end
  local p = redis.call('HMGET', pages_key, 'total', 'done', 'text:' .. page,
                       'error:' .. page, 'message:' .. page)
  if not p[1] then return {'gone'} end  -- no fan-out in progress: nothing to run
  local verdict = 'run'
  local attempts
  if p[3] then
    if tonumber(p[2]) < tonumber(p[1]) then return {'final'} end
    verdict = 'assemble'
    attempts = tonumber(job[7] or '1')
  else
    attempts = redis.call('HINCRBY', pages_key, 'attempts:' .. page, 1)
    if attempts > tonumber(max_attempts) then
      return {'exhausted', attempts - 1, p[4] or '', p[5] or ''}
    end
  end
  local payload = redis.call('GET', payload_key)
  if not payload then return {'gone'} end
  -- the delivery that began last: the master asks who it was when a FINISH's answer is lost
  redis.call('HSET', job_key, 'consumer', consumer)
  return {verdict, attempts, payload, '', job[2] or '', job[3] or '', job[4] or '',
          job[5] or '', job[8] or '', page, p[1], job[6] or '0', job[7] or '1'}
end
"""

# KEYS: job, payload, breaker, history, quarantine
# ARGV: consumer, now, max_attempts, breaker recovery seconds
BEGIN = BEGIN_LUA + """
local job_key = KEYS[1]
local payload_key = KEYS[2]
local breaker_key = KEYS[3]
local history_key = KEYS[4]
local quarantine = KEYS[5]
local consumer = ARGV[1]
local now = ARGV[2]
local max_attempts = ARGV[3]
local recovery = ARGV[4]

return begin_job(job_key, payload_key, breaker_key, history_key, quarantine, consumer,
                 now, max_attempts, recovery)
"""

# KEYS: job, pages, payload
# ARGV: consumer, now, max_attempts, page
BEGIN_PAGE = BEGIN_LUA + """
local job_key = KEYS[1]
local pages_key = KEYS[2]
local payload_key = KEYS[3]
local consumer = ARGV[1]
local now = ARGV[2]
local max_attempts = ARGV[3]
local page = ARGV[4]

return begin_page(job_key, pages_key, payload_key, consumer, now, max_attempts, page)
"""

# The next new entry for this consumer, taken up in the same call: one round trip per job
# instead of XREADGROUP + BEGIN while work is queued (the blocking read is for when none
# is). The job's keys follow from the entry, so they are built here from the prefixes in
# ARGV: standalone Redis and Sentinel allow it; Redis Cluster would not.
# An entry with a `page` field is a page task of a fanned-out scan (begin_page).
# KEYS: stream, quarantine
# ARGV: group, consumer, now, max_attempts, breaker recovery seconds, then the key
#       prefixes of job, payload, breaker, history and pages
# Returns {} when nothing is waiting, else {entry_id, job_id, family, page ('0': the
# job itself), BEGIN's or BEGIN_PAGE's reply...}
TAKE = BEGIN_LUA + """
local stream = KEYS[1]
local quarantine = KEYS[2]
local group = ARGV[1]
local consumer = ARGV[2]
local now = ARGV[3]
local max_attempts = ARGV[4]
local recovery = ARGV[5]
local job_prefix = ARGV[6]
local payload_prefix = ARGV[7]
local breaker_prefix = ARGV[8]
local history_prefix = ARGV[9]
local pages_prefix = ARGV[10]

local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1,
                        'STREAMS', stream, '>')
if not read then return {} end
local entry = read[1][2][1]
local fields = {}
for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
local job_id, family = fields['job'], fields['family'] or 'python'
if not job_id then
  redis.call('XACK', stream, group, entry[1])  -- not one of ours: nothing to run
  return {}
end
local page = fields['page']
local begun
if page then
  begun = begin_page(job_prefix .. job_id, pages_prefix .. job_id, payload_prefix .. job_id,
                     consumer, now, max_attempts, page)
else
  begun = begin_job(job_prefix .. job_id, payload_prefix .. job_id,
                    breaker_prefix .. family, history_prefix .. job_id, quarantine,
                    consumer, now, max_attempts, recovery)
end
return {entry[1], job_id, family, page or '0', unpack(begun)}
"""

# KEYS: job, payload, text, stream, depth, breaker, dead, history, job counters,
#       callbacks due, this finish's callback delivery, the job's pages (FAN_OUT)
# ARGV: group, entry_id, ttl, now, channel, job_id, outcome('success'|'none'|'failure'),
#       fail_threshold, success_threshold, dead(0|1), the longest text (bytes) the done
#       message may carry, result cache seconds (0: none), the callback delivery's id,
#       then result fields as pairs
#       (state, error_code, ... ; a 'text' pair is stored under the text key, not in the
#       hash)
# The done message is the job id, or "<job id>\n" + JSON {record, text} when the text is
# short: a waiting api then answers from the message without reading the job back.
# A done job whose record names a `cache_key` (set by the api) becomes that key's result.
FINISH = BREAKER_LUA + """
local job_key = KEYS[1]
local payload_key = KEYS[2]
local text_key = KEYS[3]
local stream = KEYS[4]
local depth_key = KEYS[5]
local breaker_key = KEYS[6]
local dead_letters = KEYS[7]
local history_key = KEYS[8]
local counters_key = KEYS[9]
local callbacks_due = KEYS[10]
local callback_key = KEYS[11]
local pages_key = KEYS[12]
local group = ARGV[1]
local entry_id = ARGV[2]
local ttl = tonumber(ARGV[3])
local now = ARGV[4]
local channel = ARGV[5]
local job_id = ARGV[6]
local outcome = ARGV[7]
local fail_threshold = tonumber(ARGV[8])
local success_threshold = tonumber(ARGV[9])
local dead = ARGV[10] == '1'
local message_text_max = tonumber(ARGV[11])
local cache_ttl = tonumber(ARGV[12])
local callback_id = ARGV[13]
local RESULT_FROM = 14  -- the result's field/value pairs fill ARGV from here

local function record_of(key)
  local flat = redis.call('HGETALL', key)
  local record = {}
  for i = 1, #flat, 2 do record[flat[i]] = flat[i + 1] end
  return record
end

local state = redis.call('HGET', job_key, 'state')
redis.call('XACK', stream, group, entry_id)
if (not state) or state == 'done' or state == 'failed' then return {0, '', ''} end
redis.call('DEL', pages_key)  -- a scan's page texts: the job's text holds them now
local fields = {}
local text = nil
for i = RESULT_FROM, #ARGV, 2 do
  if ARGV[i] == 'text' then
    text = ARGV[i + 1]
    redis.call('SET', text_key, text, 'EX', ttl)
  else
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
  end
end
redis.call('HSET', job_key, 'finished_at', now, unpack(fields))
redis.call('EXPIRE', job_key, ttl)
redis.call('EXPIRE', history_key, ttl)
local record = record_of(job_key)  -- final from here on: the counters, dead letter, message
if dead then
  -- keep the payload so an operator can replay the dead letter; the record and the
  -- history go in as JSON an operator can read (an object, and a list of objects)
  local history = '['
  for i, step in ipairs(redis.call('LRANGE', history_key, 0, -1)) do
    history = history .. (i > 1 and ',' or '') .. step
  end
  redis.call('XADD', dead_letters, '*', 'job', job_id, 'entry', entry_id,
             'record', cjson.encode(record), 'history', history .. ']')
else
  redis.call('DEL', payload_key)
end
if tonumber(redis.call('DECR', depth_key)) < 0 then redis.call('SET', depth_key, 0) end
if record.state == 'done' and cache_ttl > 0 and (record.cache_key or '') ~= '' then
  -- never longer than the result it names lives
  redis.call('SET', record.cache_key, job_id, 'EX', math.min(cache_ttl, ttl))
end
redis.call('HINCRBY', counters_key, 'finished', 1)
redis.call('HINCRBY', counters_key,
           record.state == 'done' and 'done' or ('failed:' .. (record.error_code or '')), 1)
local transition = {'', ''}
if outcome ~= 'none' then
  transition = breaker_record(breaker_key, outcome, tonumber(now), fail_threshold,
                              success_threshold, job_key, job_id)
end
-- The upload's signed callback, queued in the step that ends the job, so no restart
-- between the two can lose it; daemon.pool.callbacks sends it.
if record.callback_url and record.callback_url ~= '' then
  redis.call('HSET', callback_key, 'url', record.callback_url, 'job_id', job_id,
             'record', cjson.encode(record), 'attempts', 0, 'created_at', now)
  redis.call('ZADD', callbacks_due, now, callback_id)
end
local message = job_id
if (not text) or #text <= message_text_max then
  message = message .. '\\n' .. cjson.encode({record = record, text = text})
end
redis.call('PUBLISH', channel, message)
return {1, transition[1], transition[2]}
"""

# A failed attempt (machinery error, death of the child, open breaker): acknowledge the
# old entry and queue the job again, now or at ready_at, in one step. Only a delivery
# still pending is re-queued: a second RETRY of the same entry (the master re-queueing
# for a child that had just re-queued it itself, or redis-py re-sending the call after a
# dropped reply) must not put the job on the stream twice.
# A death of the child (`died` = 1) also counts toward the document's quarantine.
# A page task (page > 0) goes back on the stream as that page, its error kept in the
# job's pages hash for the delivery that gives up on it; the job stays processing.
# KEYS: job, stream, deferred, breaker, history, quarantine, quarantine details, pages
# ARGV: group, entry_id, job_id, now, ready_at (0: now), outcome('failure'|'none'),
#       fail_threshold, success_threshold, error_code, error_message, consumer, family,
#       died (0|1), max_attempts, quarantine ttl, the death counters' key prefix, page
# Returns {written, breaker before, breaker after, quarantined (0|1)}
RETRY = BREAKER_LUA + NOTE_DEATH_LUA + """
local job_key = KEYS[1]
local stream = KEYS[2]
local deferred = KEYS[3]
local breaker_key = KEYS[4]
local history_key = KEYS[5]
local quarantine = KEYS[6]
local quarantine_details = KEYS[7]
local pages_key = KEYS[8]
local group = ARGV[1]
local entry_id = ARGV[2]
local job_id = ARGV[3]
local now = ARGV[4]
local ready_at = ARGV[5]  -- a score, passed on as written
local outcome = ARGV[6]
local fail_threshold = tonumber(ARGV[7])
local success_threshold = tonumber(ARGV[8])
local error_code = ARGV[9]
local error_message = ARGV[10]
local consumer = ARGV[11]
local family = ARGV[12]
local died = ARGV[13] == '1'
local max_attempts = tonumber(ARGV[14])
local quarantine_ttl = tonumber(ARGV[15])
local deaths_prefix = ARGV[16]
local page = ARGV[17]

local state = redis.call('HGET', job_key, 'state')
local acked = redis.call('XACK', stream, group, entry_id)
if acked == 0 or (not state) or state == 'done' or state == 'failed' then
  return {0, '', '', 0}
end
local is_page = page ~= '0'
if is_page and redis.call('EXISTS', pages_key) == 0 then return {0, '', '', 0} end
local fields = {'state', 'queued'}
if error_code ~= '' then
  fields = {'state', 'queued', 'error_code', error_code, 'error_message', error_message}
  local step = {event = 'failed', at = now, consumer = consumer, code = error_code,
                message = error_message}
  if is_page then
    step.page = tonumber(page)
    redis.call('HSET', pages_key, 'error:' .. page, error_code, 'message:' .. page,
               error_message)
  end
  redis.call('RPUSH', history_key, cjson.encode(step))
end
local member = family .. '|' .. job_id
local entry = {'job', job_id, 'family', family}
if is_page then
  member = member .. '|' .. page
  entry = {'job', job_id, 'page', page, 'family', family}
else
  redis.call('HSET', job_key, unpack(fields))
end
if tonumber(ready_at) > 0 then
  redis.call('ZADD', deferred, ready_at, member)
else
  redis.call('XADD', stream, '*', unpack(entry))
end
local transition = {'', ''}
if outcome ~= 'none' then
  transition = breaker_record(breaker_key, outcome, tonumber(now), fail_threshold,
                              success_threshold, job_key, job_id)
end
local quarantined = 0
if died then
  quarantined = note_death(job_key, job_id, tonumber(now), max_attempts, quarantine_ttl,
                           deaths_prefix, quarantine, quarantine_details, error_code)
end
return {1, transition[1], transition[2], quarantined}
"""

# A scanned PDF sent with method=tesseract, cut into page tasks: the job's pages hash
# (total, next page to queue, pages done, then per page its attempts, last error and OCR
# output) and the first `in_flight` page entries appear, and the job's own entry is
# acknowledged, in one step. The job stays processing and keeps its one place in the
# depth count until the FINISH that ends it. Each page stored queues the next one
# (FINISH_PAGE), so a scan never has more than `in_flight` page entries on the stream.
# Only a delivery still pending fans out, and only once: a second delivery of the job's
# entry finds it acknowledged, or the pages hash there.
# KEYS: job, pages, stream
# ARGV: group, entry_id, job_id, family, pages in all, pages in flight at most
# Returns {1, pages queued} or {0} (nothing done: not this delivery's to fan out)
FAN_OUT = """
local job_key = KEYS[1]
local pages_key = KEYS[2]
local stream = KEYS[3]
local group = ARGV[1]
local entry_id = ARGV[2]
local job_id = ARGV[3]
local family = ARGV[4]
local total = tonumber(ARGV[5])
local in_flight = tonumber(ARGV[6])

local state = redis.call('HGET', job_key, 'state')
if state ~= 'processing' or redis.call('EXISTS', pages_key) == 1 then return {0} end
if redis.call('XACK', stream, group, entry_id) == 0 then return {0} end
local first = math.min(in_flight, total)
redis.call('HSET', pages_key, 'total', total, 'next', first + 1, 'done', 0,
           'family', family)
for page = 1, first do
  redis.call('XADD', stream, '*', 'job', job_id, 'page', page, 'family', family)
end
return {1, first}
"""

# One page task's OCR output stored, and the next page queued, in one step. The entry is
# acknowledged, except the one that stores the last page: that delivery assembles the
# job and ends it with FINISH (which acknowledges it), so a death in between leaves it
# pending and its next delivery assembles instead (begin_page's `assemble`). A page
# stored already (a second delivery) changes nothing.
# KEYS: job, pages, stream
# ARGV: group, entry_id, job_id, page, the page's OCR output
# Returns {0} (the job is final or gone: nothing stored), {1, pages done} or
# {2, pages done} (every page is in: assemble the job now)
FINISH_PAGE = """
local job_key = KEYS[1]
local pages_key = KEYS[2]
local stream = KEYS[3]
local group = ARGV[1]
local entry_id = ARGV[2]
local job_id = ARGV[3]
local page = ARGV[4]
local output = ARGV[5]

local state = redis.call('HGET', job_key, 'state')
local p = redis.call('HMGET', pages_key, 'total', 'next', 'family', 'done')
if state ~= 'processing' or not p[1] then
  redis.call('XACK', stream, group, entry_id)
  return {0}
end
local total, next_page, done = tonumber(p[1]), tonumber(p[2]), tonumber(p[4])
if redis.call('HSETNX', pages_key, 'text:' .. page, output) == 1 then
  done = redis.call('HINCRBY', pages_key, 'done', 1)
  if next_page <= total then
    redis.call('XADD', stream, '*', 'job', job_id, 'page', next_page, 'family', p[3])
    redis.call('HSET', pages_key, 'next', next_page + 1)
  end
end
if done >= total then return {2, done} end
redis.call('XACK', stream, group, entry_id)
return {1, done}
"""

# Move deferred jobs (members `family|job_id`) and page tasks (`family|job_id|page`)
# whose time has come back onto the stream.
# KEYS: deferred, stream   ARGV: now, limit
PROMOTE = """
local deferred = KEYS[1]
local stream = KEYS[2]
local now = ARGV[1]
local limit = ARGV[2]

local ready = redis.call('ZRANGEBYSCORE', deferred, '-inf', now, 'LIMIT', 0, limit)
for _, member in ipairs(ready) do
  redis.call('ZREM', deferred, member)
  local sep = string.find(member, '|', 1, true)
  local family, rest = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  local page_sep = string.find(rest, '|', 1, true)
  if page_sep then
    redis.call('XADD', stream, '*', 'job', string.sub(rest, 1, page_sep - 1),
               'page', string.sub(rest, page_sep + 1), 'family', family)
  else
    redis.call('XADD', stream, '*', 'job', rest, 'family', family)
  end
end
return #ready
"""

# KEYS: job, payload, text, depth, history, pages   ARGV: channel, job_id
# A job deleted before it finished ends 'cancelled' for anyone waiting on it. Its
# document's result cache entry goes too, whichever job it names: after a DELETE the
# result is served to no one, and the next upload of the bytes is extracted afresh.
DELETE = """
local job_key = KEYS[1]
local payload_key = KEYS[2]
local text_key = KEYS[3]
local depth_key = KEYS[4]
local history_key = KEYS[5]
local pages_key = KEYS[6]
local channel = ARGV[1]
local job_id = ARGV[2]

local job = redis.call('HMGET', job_key, 'state', 'cache_key')
local state, cache_key = job[1], job[2]
if not state then return 0 end
if state ~= 'done' and state ~= 'failed' then
  if tonumber(redis.call('DECR', depth_key)) < 0 then redis.call('SET', depth_key, 0) end
end
if cache_key and cache_key ~= '' then redis.call('DEL', cache_key) end
-- a scan's page tasks still queued find the job gone and are skipped
redis.call('DEL', job_key, payload_key, text_key, history_key, pages_key)
redis.call('PUBLISH', channel, job_id)
return 1
"""

# --- dead-letter administration (daemon.store.DeadLetters) ----------------------------
# An operator's replay: the job goes back on the stream with a fresh attempt count, its
# history kept (and a 'replayed' step added), and its dead letter leaves the stream, all
# in one step, so a replay can neither be lost half-way nor queue the job twice. The job's
# keys follow from the letter, so they are built here from the prefixes in ARGV (as TAKE
# does). A record or history that expired since the job died is restored from the letter.
# A document still quarantined (it killed its worker on every attempt) is refused: the
# worker would fail it at once as poison_document; the operator lifts it first.
# KEYS: dead letters, stream, depth, quarantine
# ARGV: dead letter id, now, actor (the tenant name), then the key prefixes of job,
#       payload and history
# Returns {1, job_id} | {0, 'gone'} | {0, 'no_payload', job_id} | {0, 'busy', job_id} |
#         {0, 'quarantined', job_id, sha256}
REPLAY_DEAD = """
local dead_letters = KEYS[1]
local stream = KEYS[2]
local depth_key = KEYS[3]
local quarantine = KEYS[4]
local dead_id = ARGV[1]
local now = ARGV[2]
local actor = ARGV[3]
local job_prefix = ARGV[4]
local payload_prefix = ARGV[5]
local history_prefix = ARGV[6]

local found = redis.call('XRANGE', dead_letters, dead_id, dead_id)
if #found == 0 then return {0, 'gone'} end
local letter = {}
for i = 1, #found[1][2], 2 do letter[found[1][2][i]] = found[1][2][i + 1] end
local job_id = letter['job']
local job_key = job_prefix .. job_id
local history_key = history_prefix .. job_id
if redis.call('EXISTS', payload_prefix .. job_id) == 0 then
  return {0, 'no_payload', job_id}
end
local state = redis.call('HGET', job_key, 'state')
if state and state ~= 'failed' then return {0, 'busy', job_id} end
local record = cjson.decode(letter['record'] or '{}')
local sha = record['sha256']
if sha and sha ~= '' then
  local expires = redis.call('ZSCORE', quarantine, sha)
  if expires and tonumber(expires) > tonumber(now) then
    return {0, 'quarantined', job_id, sha}
  end
end
if not state then
  -- the record expired (RESULT_TTL) while the payload waited: the letter has it
  for field, value in pairs(record) do redis.call('HSET', job_key, field, value) end
end
if redis.call('EXISTS', history_key) == 0 then
  for _, step in ipairs(cjson.decode(letter['history'] or '[]')) do
    redis.call('RPUSH', history_key, cjson.encode(step))
  end
end
redis.call('HDEL', job_key, 'error_code', 'error_message', 'finished_at', 'started_at',
           'duration_ms', 'chars', 'consumer')
redis.call('HSET', job_key, 'state', 'queued', 'attempts', 0, 'replayed_at', now)
redis.call('PERSIST', job_key)  -- FINISH set the result TTL; it is unfinished again
redis.call('PERSIST', history_key)
redis.call('RPUSH', history_key, cjson.encode({event = 'replayed', at = now, by = actor,
           dead_letter = dead_id}))
redis.call('XADD', stream, '*', 'job', job_id, 'family', record['family'] or 'python')
redis.call('INCR', depth_key)
redis.call('XDEL', dead_letters, dead_id)
return {1, job_id}
"""

# An operator's purge: the dead letter and the payload kept for its replay go together
# (the job's record keeps its TTL, so a client still reads why it failed).
# KEYS: dead letters   ARGV: dead letter id, the key prefixes of job and payload
# Returns {1, job_id} | {0, 'gone'}
PURGE_DEAD = """
local dead_letters = KEYS[1]
local dead_id = ARGV[1]
local job_prefix = ARGV[2]
local payload_prefix = ARGV[3]

local found = redis.call('XRANGE', dead_letters, dead_id, dead_id)
if #found == 0 then return {0, 'gone'} end
local job_id = ''
for i = 1, #found[1][2], 2 do
  if found[1][2][i] == 'job' then job_id = found[1][2][i + 1] end
end
local state = redis.call('HGET', job_prefix .. job_id, 'state')
-- a job queued again since (replayed, then dead again) still needs its payload
if not state or state == 'failed' then redis.call('DEL', payload_prefix .. job_id) end
redis.call('XDEL', dead_letters, dead_id)
return {1, job_id}
"""

# The sender's lease on due callbacks: each one taken is pushed `lease` seconds into the
# future, so a sender that dies mid-send leaves it due again after the lease (at least
# once), and two senders (one per host) never send the same one at the same time.
# KEYS: callbacks due   ARGV: now, lease, limit, the delivery key prefix
# Returns {id, url, record, attempts, ...} per delivery taken
CLAIM_CALLBACKS = """
local due_key = KEYS[1]
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = ARGV[3]
local delivery_prefix = ARGV[4]

local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)) do
  local d = redis.call('HMGET', delivery_prefix .. id, 'url', 'record', 'attempts')
  if d[1] then
    redis.call('ZADD', due_key, now + lease, id)
    taken[#taken + 1] = id
    taken[#taken + 1] = d[1]
    taken[#taken + 1] = d[2]
    taken[#taken + 1] = d[3] or '0'
  else
    redis.call('ZREM', due_key, id)  -- its hash is gone: nothing left to send
  end
end
return taken
"""
