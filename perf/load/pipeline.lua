-- wrk script: HTTP/1.1 pipelining. Every write carries DEPTH requests for the
-- same path (wrk's own request, repeated), so each connection keeps DEPTH
-- requests in flight; wrk counts each response.
--   wrk -t1 -c64 -d5s -s perf/load/pipeline.lua http://127.0.0.1:PORT/plaintext -- 16
local depth = 16
local batch

init = function(args)
  if args[1] ~= nil then depth = tonumber(args[1]) end
  local requests = {}
  for i = 1, depth do requests[i] = wrk.format() end
  batch = table.concat(requests)
end

request = function()
  return batch
end
