-- Scenario D: every write carries `depth` requests (default 16); wrk counts each response.
-- Usage: wrk ... -s benchmarks/wrk/pipeline.lua URL -- 16
local pipelined

init = function(args)
   local depth = tonumber(args[1]) or 16
   local requests = {}
   for i = 1, depth do
      requests[i] = wrk.format()
   end
   pipelined = table.concat(requests)
end

request = function()
   return pipelined
end
