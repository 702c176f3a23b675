-- Ends a producer's transaction on one partition: appends its marker (a control record) at the
-- next offset, closes the transaction there, and remembers it if it aborted (see
-- StorageCommand::WriteTxnMarker).
--
-- KEYS[1] stream, KEYS[2] partition hash, KEYS[3] open transactions (hash: producer id -> first
-- offset), KEYS[4] aborted transactions (sorted set: "<producer id>:<first>:<marker offset>"
-- scored by the marker's offset), KEYS[5] time index
-- The marker enters the time index, and the partition's max timestamp, as a record does: so that
-- retention by time never removes a young marker.
-- ARGV[1] producer id, ARGV[2] producer epoch, ARGV[3] "commit" or "abort", ARGV[4] coordinator
-- epoch, ARGV[5] timestamp (ms), ARGV[6] notification channel, ARGV[7] notification message.
-- A marker of a newer epoch than the producer's state on the partition starts that epoch there
-- (with no batches), so that the older epochs' appends are fenced.
-- Returns {status, marker offset, log start}: 0 written, 3 the producer has a newer epoch here,
-- 4 no such partition.
local stream, partition, open_transactions, aborted, timeindex = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local producer, epoch = ARGV[1], tonumber(ARGV[2])
local next_offset = redis.call('HGET', partition, 'next')
if not next_offset then return {4, -1, -1} end
next_offset = tonumber(next_offset)
local start = tonumber(redis.call('HGET', partition, 'start') or '0')
local state = redis.call('HGET', partition, 'producer:' .. producer)
local known = nil
if state then known = tonumber(string.match(state, '^(%-?%d+)')) end
if known and epoch < known then return {3, -1, start} end
if known == nil or epoch > known then
  -- A marker of a newer epoch fences the producer's older epochs on the partition.
  redis.call('HSET', partition, 'producer:' .. producer, ARGV[2])
end

local offset = string.format('%d', next_offset)
redis.call('XADD', stream, offset .. '-1', 'timestamp', ARGV[5], 'control', ARGV[3],
  'txn', producer .. ':' .. ARGV[2], 'coordinator-epoch', ARGV[4])
redis.call('HSET', partition, 'next', string.format('%d', next_offset + 1))
local max_ts = redis.call('HGET', partition, 'max-timestamp')
if not max_ts or tonumber(ARGV[5]) > tonumber(max_ts) then
  redis.call('ZADD', timeindex, ARGV[5], offset)
  redis.call('HSET', partition, 'max-timestamp', ARGV[5], 'max-timestamp-offset', offset)
end
local first = redis.call('HGET', open_transactions, producer)
if first then
  redis.call('HDEL', open_transactions, producer)
  if ARGV[3] == 'abort' then
    redis.call('ZADD', aborted, next_offset, producer .. ':' .. first .. ':' .. offset)
  end
  -- The last stable offset follows the oldest transaction still open, if any.
  local oldest = nil
  for _, f in ipairs(redis.call('HVALS', open_transactions)) do
    f = tonumber(f)
    if oldest == nil or f < oldest then oldest = f end
  end
  if oldest then
    redis.call('HSET', partition, 'open-txn-first', string.format('%d', oldest))
  else
    redis.call('HDEL', partition, 'open-txn-first')
  end
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return {0, next_offset, start}
