-- Appends a batch of records to one partition atomically: checks the idempotent producer's
-- sequence, assigns dense offsets from the partition's `next` counter, writes one stream entry
-- per record with ID "<offset>-1", and maintains the time index and max timestamp.
--
-- KEYS[1] stream, KEYS[2] partition hash, KEYS[3] time index (sorted set)
-- ARGV[1] producer id ("-1" for none), ARGV[2] producer epoch, ARGV[3] base sequence,
-- ARGV[4] number of records, ARGV[5] notification channel, ARGV[6] notification message,
-- ARGV[7] fields per record F when every record has the same number (else "-1"),
-- ARGV[8] number R of records that raise the batch's running maximum timestamp, then R pairs
-- (position in the batch from 0, timestamp),
-- then per record: timestamp, then F field/value pairs (or, when ARGV[7] is "-1", the record's
-- field count and its pairs).
-- The caller works out the timestamp raisers and the record shapes, so that the loop below,
-- which runs once per record on Redis's single thread, converts no strings to numbers.
-- After an append the message is published on the channel, so that long-polling fetches on
-- other brokers wake without polling Redis.
-- Returns {status, base offset}: 0 appended, 1 duplicate, 2 out of order sequence, 3 fenced epoch.
local stream, partition, timeindex = KEYS[1], KEYS[2], KEYS[3]
local producer = ARGV[1]
local count = tonumber(ARGV[4])
local history = {}
local epoch, first_seq, last_seq
if producer ~= '-1' then
  epoch = tonumber(ARGV[2])
  first_seq = tonumber(ARGV[3])
  last_seq = (first_seq + count - 1) % 2147483648
  -- state: "epoch|first,last,offset|first,last,offset..." (oldest batch first, at most 5)
  local state = redis.call('HGET', partition, 'producer:' .. producer)
  if state then
    local parts = {}
    for part in string.gmatch(state, '[^|]+') do parts[#parts + 1] = part end
    local known_epoch = tonumber(parts[1])
    if epoch < known_epoch then return {3, -1} end
    if epoch == known_epoch then
      for i = 2, #parts do
        local f, l, o = string.match(parts[i], '(%-?%d+),(%-?%d+),(%-?%d+)')
        history[#history + 1] = parts[i]
        if tonumber(f) == first_seq and tonumber(l) == last_seq then
          return {1, tonumber(o)}
        end
      end
      if #parts >= 2 then
        local _, l = string.match(parts[#parts], '(%-?%d+),(%-?%d+)')
        if first_seq ~= (tonumber(l) + 1) % 2147483648 then return {2, -1} end
      end
    end
  end
end
local next_offset = tonumber(redis.call('HGET', partition, 'next') or '0')
local base = next_offset
-- HGET answers false, not nil, for a missing field.
local max_ts = redis.call('HGET', partition, 'max-timestamp')
if max_ts then max_ts = tonumber(max_ts) else max_ts = nil end
local max_ts_offset = nil
local raisers = tonumber(ARGV[8])
for r = 0, raisers - 1 do
  local ts = tonumber(ARGV[10 + 2 * r])
  if max_ts == nil or ts > max_ts then
    max_ts = ts
    max_ts_offset = base + tonumber(ARGV[9 + 2 * r])
    redis.call('ZADD', timeindex, ts, string.format('%d', max_ts_offset))
  end
end
local i = 9 + 2 * raisers
local uniform = tonumber(ARGV[7])
if uniform == 1 then
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
redis.call('HSET', partition, 'next', string.format('%d', next_offset))
if max_ts_offset then
  redis.call('HSET', partition, 'max-timestamp', string.format('%d', max_ts),
    'max-timestamp-offset', string.format('%d', max_ts_offset))
end
if producer ~= '-1' then
  history[#history + 1] = string.format('%d,%d,%d', first_seq, last_seq, base)
  while #history > 5 do table.remove(history, 1) end
  redis.call('HSET', partition, 'producer:' .. producer, string.format('%d', epoch) .. '|' .. table.concat(history, '|'))
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {0, base}
