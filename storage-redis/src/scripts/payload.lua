-- Shared by the scripts that remove entries (put in front of each by the driver, see lib.rs):
-- the payload bytes of an entry's fields as korvet counts them for `retention.bytes` (keys,
-- values, header names and values; as `Record::payload_len` does), or a batch's `payload`.
local function payload_bytes(fields)
  local size = 0
  for f = 1, #fields, 2 do
    local name = fields[f]
    if name == 'key' or name == 'value' then
      size = size + #fields[f + 1]
    elseif name == 'payload' then
      -- A batch of the batch layout: its records' payload, counted when it was appended.
      size = size + tonumber(fields[f + 1])
    elseif string.sub(name, 1, 7) == 'header:' then
      size = size + #name - 7 + #fields[f + 1]
    elseif string.sub(name, 1, 11) == 'nullheader:' then
      size = size + #name - 11
    end
  end
  return size
end
