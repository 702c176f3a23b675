-- Reads records of one partition from an offset: at least one record if any exists there, then
-- more while their payload fits in the byte budget. Reads the stream in growing chunks so that a
-- large budget does not mean one huge XRANGE.
--
-- KEYS[1] stream, KEYS[2] partition hash
-- ARGV[1] first offset, ARGV[2] byte budget
-- Returns {next offset, log start, max timestamp, max timestamp offset, entries}.
local stream, partition = KEYS[1], KEYS[2]
local meta = redis.call('HMGET', partition, 'next', 'start', 'max-timestamp', 'max-timestamp-offset')
local high_watermark = tonumber(meta[1] or '0')
local offset = tonumber(ARGV[1])
local budget = tonumber(ARGV[2])
local out = {}
if offset < high_watermark then
  local used = 0
  local cursor = string.format('%d-1', offset)
  local chunk = 16
  local full = false
  while not full do
    local entries = redis.call('XRANGE', stream, cursor, '+', 'COUNT', chunk)
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      local size = 0
      for k = 1, #fields, 2 do
        local name = fields[k]
        if name == 'key' or name == 'value' then
          size = size + #fields[k + 1]
        elseif string.sub(name, 1, 7) == 'header:' then
          size = size + #name - 7 + #fields[k + 1]
        elseif string.sub(name, 1, 11) == 'nullheader:' then
          size = size + #name - 11
        end
      end
      if #out > 0 and used + size > budget then
        full = true
        break
      end
      used = used + size
      out[#out + 1] = entry
    end
    if full or #entries < chunk then break end
    cursor = '(' .. entries[#entries][1]
    if chunk < 1024 then chunk = chunk * 4 end
  end
end
return {meta[1] or '0', meta[2] or '0', meta[3] or '', meta[4] or '', out}
