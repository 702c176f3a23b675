-- Removes single records of a partition (those compaction found superseded), leaving gaps: the
-- other entries keep their IDs, and the start and high watermark stay.
--
-- KEYS[1] stream, KEYS[2] partition hash; ARGV the offsets (at most a few hundred per call, so
-- that one call holds Redis for about a millisecond).
-- Allowed when Redis is over maxmemory (allow-oom), like the trim script: it only frees room.
-- Returns how many of the entries were there and are now removed.
local stream, partition = KEYS[1], KEYS[2]
if redis.call('EXISTS', partition) == 0 then return 0 end
local removed, removed_bytes = 0, 0
for _, offset in ipairs(ARGV) do
  local id = offset .. '-1'
  local found = redis.call('XRANGE', stream, id, id)
  if #found == 1 then
    removed_bytes = removed_bytes + payload_bytes(found[1][2])
    redis.call('XDEL', stream, id)
    removed = removed + 1
  end
end
if removed_bytes > 0 then
  local left = tonumber(redis.call('HGET', partition, 'bytes') or '0') - removed_bytes
  if left < 0 then left = 0 end
  redis.call('HSET', partition, 'bytes', string.format('%d', left))
end
return removed
