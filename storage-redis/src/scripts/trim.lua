-- Trims one partition: moves its log start forward and removes the stream entries below it, at
-- most ARGV[3] of them per call, so that no call holds Redis for more than about a millisecond;
-- the caller calls again while the reply says that more remain. The start is moved at once
-- (readers and appenders through every broker see the new start from then on) and the entries
-- below it go over as many calls as it takes.
--
-- KEYS[1] stream, KEYS[2] partition hash, KEYS[3] time index
-- ARGV[1] where to: 'offset' (ARGV[2] the new start), 'end' (the high watermark), 'time'
--   (ARGV[2] a timestamp: past the records whose running maximum timestamp is older), 'bytes'
--   (ARGV[2] a payload size: past the oldest records until the rest is at most that large)
-- ARGV[3] the most entries one call removes
-- ARGV[4] '1' when every offset from the start on has its entry (not compacted): if entries
--   are missing from the front (trimmed outside korvet, with XTRIM say), the start moves up to
--   the first entry left, so that nothing is ever served as present that is gone.
-- Allowed when Redis is over maxmemory (allow-oom): trimming is how room is made, and the few
-- bytes it writes must not fail half-way after entries were removed.
-- Returns {status, log start, records removed (the offsets their entries held), more}: status 0 trimmed, 1 offset past the high
-- watermark (the second value is the high watermark; nothing changed), -1 no such partition.
local stream, partition, timeindex = KEYS[1], KEYS[2], KEYS[3]
local mode, budget, dense = ARGV[1], tonumber(ARGV[3]), ARGV[4] == '1'
local next_offset = redis.call('HGET', partition, 'next')
if not next_offset then return {-1, 0, 0, 0} end
next_offset = tonumber(next_offset)
local start = tonumber(redis.call('HGET', partition, 'start') or '0')
local kept = tonumber(redis.call('HGET', partition, 'bytes') or '0')

-- The last offset an entry holds: its ID is "<last offset>-<count>" ("<offset>-1" for a
-- record, a batch of the batch layout holds `count` offsets).
local function entry_offset(entry) return tonumber(string.match(entry[1], '^(%d+)')) end

-- How many offsets an entry holds.
local function entry_count(entry) return tonumber(string.match(entry[1], '-(%d+)$')) end

-- The first offset an entry holds.
local function entry_first_offset(entry) return entry_offset(entry) - entry_count(entry) + 1 end

-- Payload bytes of an entry (`payload_bytes` comes from payload.lua).
local function entry_bytes(entry) return payload_bytes(entry[2]) end

local target = start
if mode == 'offset' then
  target = tonumber(ARGV[2])
  if target > next_offset then return {1, next_offset, 0, 0} end
elseif mode == 'end' then
  target = next_offset
elseif mode == 'time' then
  local reached = redis.call('ZRANGEBYSCORE', timeindex, ARGV[2], '+inf', 'LIMIT', 0, 1)
  if #reached > 0 then target = tonumber(reached[1]) else target = next_offset end
end
if target > start then start = target end

-- Entries wholly below the start, from the oldest on (a batch holding the start stays).
-- `removed` counts entries (the budget), `removed_records` the offsets they held.
local removed, removed_records, removed_bytes, last_removed = 0, 0, 0, nil
for _, entry in ipairs(redis.call('XRANGE', stream, '-', string.format('%d-0', start), 'COUNT', budget)) do
  removed, removed_bytes, last_removed = removed + 1, removed_bytes + entry_bytes(entry), entry_offset(entry)
  removed_records = removed_records + entry_count(entry)
end
local more = removed >= budget

-- Retention by size: the oldest entries from the start on, while the rest is over the limit.
if mode == 'bytes' and not more then
  local limit, left = tonumber(ARGV[2]), kept - removed_bytes
  if left > limit then
    local entries = redis.call('XRANGE', stream, string.format('%d-0', start), '+', 'COUNT', budget - removed)
    for _, entry in ipairs(entries) do
      if left <= limit then break end
      local size = entry_bytes(entry)
      left = left - size
      removed, removed_bytes, last_removed = removed + 1, removed_bytes + size, entry_offset(entry)
      removed_records = removed_records + entry_count(entry)
      start = last_removed + 1
    end
    more = left > limit and removed >= budget
  end
end

if last_removed then
  -- Exactly the entries counted above: every entry before the last one removed.
  redis.call('XTRIM', stream, 'MINID', string.format('%d-0', last_removed + 1))
end
if dense and not more then
  local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
  local present = next_offset
  if #first > 0 then present = entry_first_offset(first[1]) end
  if present > start then start = present end
end
if start > next_offset then start = next_offset end

-- The time index keeps the entry that covers the start (the last one at or below it).
local index = redis.call('ZRANGE', timeindex, 0, budget - 1)
local at_or_below = 0
for _, member in ipairs(index) do
  if tonumber(member) <= start then at_or_below = at_or_below + 1 else break end
end
if at_or_below > 1 then
  redis.call('ZREM', timeindex, unpack(index, 1, at_or_below - 1))
  if at_or_below == #index then more = true end
end

redis.call('HSET', partition, 'start', string.format('%d', start))
if removed_bytes > 0 then
  local left = kept - removed_bytes
  if left < 0 then left = 0 end
  redis.call('HSET', partition, 'bytes', string.format('%d', left))
end
local more_flag = 0
if more then more_flag = 1 end
return {0, start, removed_records, more_flag}
