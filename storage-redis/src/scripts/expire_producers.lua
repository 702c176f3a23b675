-- Forgets idle producers' idempotence state in one partition hash, a few hundred fields per call
-- (HSCAN). A state without an idle stamp gets "@<now>" appended; the append script writes the
-- state back without it whenever the producer appends; a state stamped at least the expiration
-- ago is deleted.
--
-- KEYS[1] partition hash; ARGV[1] now (ms), ARGV[2] expiration (ms), ARGV[3] HSCAN cursor.
-- Returns {next cursor ("0" when done), states deleted}.
local partition = KEYS[1]
local now, expiration = tonumber(ARGV[1]), tonumber(ARGV[2])
local scanned = redis.call('HSCAN', partition, ARGV[3], 'MATCH', 'producer:*', 'COUNT', 200)
local fields, deleted = scanned[2], 0
for f = 1, #fields, 2 do
  local field, state = fields[f], fields[f + 1]
  local stamp = string.match(state, '@(%d+)$')
  if not stamp then
    redis.call('HSET', partition, field, state .. '@' .. string.format('%d', now))
  elseif now - tonumber(stamp) >= expiration then
    redis.call('HDEL', partition, field)
    deleted = deleted + 1
  end
end
return {scanned[1], deleted}
