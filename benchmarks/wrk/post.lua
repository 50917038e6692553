-- Scenario E: POST a body of `size` bytes (default 4096) to an echo app.
-- Usage: wrk ... -s benchmarks/wrk/post.lua URL -- 4096
init = function(args)
   local size = tonumber(args[1]) or 4096
   wrk.method = "POST"
   wrk.body = string.rep("x", size)
   wrk.headers["Content-Type"] = "application/octet-stream"
end
