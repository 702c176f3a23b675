#!lua flags=allow-oom
-- Removes single records of a partition (those compaction found superseded), leaving gaps: the
-- other entries keep their IDs, and the start and high watermark stay.
--
-- KEYS[1] stream, KEYS[2] partition hash; ARGV the offsets (at most a few hundred per call, so
-- that one call holds Redis for well under a millisecond).
-- Allowed when Redis is over maxmemory (allow-oom), like the trim script: it only frees room.
-- Returns how many of the entries were there and are now removed.
local stream, partition = KEYS[1], KEYS[2]
if redis.call('EXISTS', partition) == 0 then return 0 end
local removed, removed_bytes = 0, 0
for _, offset in ipairs(ARGV) do
  local id = offset .. '-1'
  local found = redis.call('XRANGE', stream, id, id)
  if #found == 1 then
    local fields = found[1][2]
    for f = 1, #fields, 2 do
      local name = fields[f]
      if name == 'key' or name == 'value' then
        removed_bytes = removed_bytes + #fields[f + 1]
      elseif string.sub(name, 1, 7) == 'header:' then
        removed_bytes = removed_bytes + #name - 7 + #fields[f + 1]
      elseif string.sub(name, 1, 11) == 'nullheader:' then
        removed_bytes = removed_bytes + #name - 11
      end
    end
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
