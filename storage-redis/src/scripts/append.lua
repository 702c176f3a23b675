-- Appends batches of records to one partition atomically, in order: for each batch, checks the
-- idempotent producer's sequence, assigns dense offsets from the partition's `next` counter,
-- writes one stream entry per record with ID "<offset>-1", and maintains the time index and max
-- timestamp. Several batches in one call are the produce requests that queued for the partition
-- while the previous call ran (group commit); each gets its own outcome.
--
-- KEYS[1] stream, KEYS[2] partition hash, KEYS[3] time index (sorted set), KEYS[4] the
-- partition's open transactions (hash: producer id -> first offset)
-- ARGV[1] notification channel, ARGV[2] notification message, ARGV[3] number of batches, then
-- per batch:
--   producer id ("-1" for none), producer epoch, base sequence, "1" for a transaction's batch
--   (its entries carry a `txn` field; the caller adds it) else "0", number of records N, their
--   payload bytes (keys, values, headers; the partition's `bytes` counts what it keeps),
--   fields per record F when every record has the same number (else "-1"; "-2" for a partition
--   of the batch layout, whose batch is one entry: see below),
--   number R of records that raise the batch's running maximum timestamp, then R pairs
--   (position in the batch from 0, timestamp),
--   then per record: timestamp, then F field/value pairs (or, when F is "-1", the record's
--   field count and its pairs); when F is "-2", instead of the records, the batch's bytes: the
--   one entry written, with ID "<last offset>-<record count>" and fields `batch` (the bytes)
--   and `payload` (the payload bytes, for retention.bytes).
-- A batch written for the other layout than the partition's (hash field `layout`, absent for
-- the record layout) answers 4, as for a partition that is gone: the topic was recreated.
-- The caller works out the timestamp raisers and the record shapes, so that the loop below,
-- which runs once per record on Redis's single thread, converts no strings to numbers.
-- After the appends the message is published on the channel, so that long-polling fetches on
-- other brokers wake without polling Redis.
-- Returns {status, base offset} per batch: 0 appended, 1 duplicate, 2 out of order sequence,
-- 3 fenced epoch, 4 no such partition; then the partition's log start offset.
--
-- A partition exists from its topic's creation on, when its hash gets `next` = 0; an append
-- never creates one. Without `next`, the topic was deleted (every batch answers 4) or the hash
-- was lost while records remain (an error: starting again at 0 would give acknowledged offsets
-- to other records).
local stream, partition, timeindex, open_transactions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local next_offset = redis.call('HGET', partition, 'next')
if next_offset then
  next_offset = tonumber(next_offset)
elseif redis.call('EXISTS', stream) == 1 or redis.call('EXISTS', timeindex) == 1 then
  -- Records remain but the counter is gone (evicted, or deleted outside korvet): starting again
  -- at 0 would give acknowledged offsets to other records.
  return redis.error_reply('KORVET_LOST_OFFSETS the partition hash ' .. partition .. ' is missing while its records remain ' ..
    '(evicted by Redis, or deleted outside korvet); refusing to assign offsets again')
else
  local results = {}
  for _ = 1, tonumber(ARGV[3]) do
    results[#results + 1] = 4
    results[#results + 1] = -1
  end
  return results
end
local first_offset = next_offset
local batch_layout = redis.call('HGET', partition, 'layout') == 'batch'
-- HGET answers false, not nil, for a missing field.
local max_ts = redis.call('HGET', partition, 'max-timestamp')
if max_ts then max_ts = tonumber(max_ts) else max_ts = nil end
local max_ts_offset = nil
-- Producer states read or changed by this call: id -> {epoch, history}; written back at the end.
local producers = {}
local results = {}
local appended_bytes = 0

-- state: "epoch|first,last,offset|first,last,offset..." (oldest batch first, at most 5)
local function producer_state(id)
  local known = producers[id]
  if known then return known end
  local state = redis.call('HGET', partition, 'producer:' .. id)
  known = {epoch = nil, history = {}, changed = false}
  if state then
    -- "@<ms>" at the end is the idle stamp of scripts/expire_producers.lua; writing the state
    -- back without it marks the producer active again.
    state = string.gsub(state, '@%d+$', '')
    local parts = {}
    for part in string.gmatch(state, '[^|]+') do parts[#parts + 1] = part end
    known.epoch = tonumber(parts[1])
    for i = 2, #parts do known.history[#known.history + 1] = parts[i] end
  end
  producers[id] = known
  return known
end

-- 0 to append, or the status (and offset) to answer instead.
local function check_sequence(known, epoch, first_seq, last_seq)
  if known.epoch == nil then return 0 end
  if epoch < known.epoch then return 3, -1 end
  if epoch > known.epoch then return 0 end
  for _, entry in ipairs(known.history) do
    local f, l, o = string.match(entry, '(%-?%d+),(%-?%d+),(%-?%d+)')
    if tonumber(f) == first_seq and tonumber(l) == last_seq then return 1, tonumber(o) end
  end
  if #known.history >= 1 then
    local _, l = string.match(known.history[#known.history], '(%-?%d+),(%-?%d+)')
    if first_seq ~= (tonumber(l) + 1) % 2147483648 then return 2, -1 end
  end
  return 0
end

-- Writes `count` records starting at ARGV[i]; returns the index after them.
local function write_records(i, count, uniform, payload)
  if uniform == -2 then
    if count > 0 then
      next_offset = next_offset + count
      redis.call('XADD', stream, string.format('%d-%d', next_offset - 1, count), 'batch', ARGV[i], 'payload', payload)
    end
    return i + 1
  elseif uniform == 1 then
    for _ = 1, count do
      redis.call('XADD', stream, string.format('%d-1', next_offset), 'timestamp', ARGV[i], ARGV[i + 1], ARGV[i + 2])
      next_offset = next_offset + 1
      i = i + 3
    end
  elseif uniform == 2 then
    for _ = 1, count do
      redis.call('XADD', stream, string.format('%d-1', next_offset), 'timestamp', ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
      next_offset = next_offset + 1
      i = i + 5
    end
  elseif uniform >= 0 then
    local last = 2 * uniform
    for _ = 1, count do
      redis.call('XADD', stream, string.format('%d-1', next_offset), 'timestamp', unpack(ARGV, i, i + last))
      next_offset = next_offset + 1
      i = i + 1 + last
    end
  else
    for _ = 1, count do
      local nfields = tonumber(ARGV[i + 1])
      if nfields == 0 then
        redis.call('XADD', stream, string.format('%d-1', next_offset), 'timestamp', ARGV[i])
      else
        redis.call('XADD', stream, string.format('%d-1', next_offset), 'timestamp', ARGV[i], unpack(ARGV, i + 2, i + 1 + 2 * nfields))
      end
      next_offset = next_offset + 1
      i = i + 2 + 2 * nfields
    end
  end
  return i
end

-- The index just past a batch's records, without reading them.
local function skip_records(i, count, uniform)
  if uniform == -2 then return i + 1 end
  if uniform >= 0 then return i + count * (1 + 2 * uniform) end
  for _ = 1, count do i = i + 2 + 2 * tonumber(ARGV[i + 1]) end
  return i
end

local i = 4
for _ = 1, tonumber(ARGV[3]) do
  local producer, epoch, first_seq = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local transactional = ARGV[i + 3] == '1'
  local count, payload_arg = tonumber(ARGV[i + 4]), ARGV[i + 5]
  local payload = tonumber(payload_arg)
  local uniform, raisers = tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7])
  local raisers_at = i + 8
  i = raisers_at + 2 * raisers
  local status, offset, known, last_seq = 0, nil, nil, nil
  if (uniform == -2) ~= batch_layout then
    status, offset = 4, -1
  elseif producer ~= '-1' then
    last_seq = (first_seq + count - 1) % 2147483648
    known = producer_state(producer)
    status, offset = check_sequence(known, epoch, first_seq, last_seq)
  end
  if status ~= 0 then
    results[#results + 1] = status
    results[#results + 1] = offset
    i = skip_records(i, count, uniform)
  else
    local base = next_offset
    for r = 0, raisers - 1 do
      local ts = tonumber(ARGV[raisers_at + 1 + 2 * r])
      if max_ts == nil or ts > max_ts then
        max_ts = ts
        max_ts_offset = base + tonumber(ARGV[raisers_at + 2 * r])
        redis.call('ZADD', timeindex, ts, string.format('%d', max_ts_offset))
      end
    end
    i = write_records(i, count, uniform, payload_arg)
    appended_bytes = appended_bytes + payload
    if known then
      if known.epoch ~= epoch then known.history = {} end
      known.epoch = epoch
      known.history[#known.history + 1] = string.format('%d,%d,%d', first_seq, last_seq, base)
      while #known.history > 5 do table.remove(known.history, 1) end
      known.changed = true
    end
    if transactional and redis.call('HSETNX', open_transactions, producer, string.format('%d', base)) == 1 then
      -- A transaction opened after every one still open: the oldest open one stays the first.
      redis.call('HSETNX', partition, 'open-txn-first', string.format('%d', base))
    end
    results[#results + 1] = 0
    results[#results + 1] = base
  end
end

results[#results + 1] = tonumber(redis.call('HGET', partition, 'start') or '0')
if next_offset ~= first_offset then
  redis.call('HSET', partition, 'next', string.format('%d', next_offset))
  redis.call('HINCRBY', partition, 'bytes', appended_bytes)
  if max_ts_offset then
    redis.call('HSET', partition, 'max-timestamp', string.format('%d', max_ts),
      'max-timestamp-offset', string.format('%d', max_ts_offset))
  end
  redis.call('PUBLISH', ARGV[1], ARGV[2])
end
for id, known in pairs(producers) do
  if known.changed then
    redis.call('HSET', partition, 'producer:' .. id, string.format('%d', known.epoch) .. '|' .. table.concat(known.history, '|'))
  end
end
return results
