-- wrk script of the bench's paced loads: each connection waits THINK_MS
-- (the script's first argument, after "--") between a response and its next
-- request, so the offered load is about conns * 1000 / (THINK_MS + latency)
-- requests per second whatever the target's speed. wrk's latency figures
-- exclude the think time.
local think = 1

function init(args)
    think = tonumber(args[1]) or 1
end

function delay()
    return think
end
