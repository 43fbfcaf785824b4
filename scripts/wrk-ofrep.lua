-- wrk script for OFREP: POSTs an evaluation context that changes with every request, so
-- that the server buckets a new unit each time, as it would under real traffic.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("RIPCORD_KEY")

local counter = 0

request = function()
  counter = counter + 1
  local body = '{"context":{"targetingKey":"user-' .. counter .. '","userId":"user-' .. counter ..
    '","country":"CA","appVersion":"3.1.0","plan":"free","email":"u' .. counter .. '@mail.test"}}'
  return wrk.format(nil, nil, nil, body)
end
