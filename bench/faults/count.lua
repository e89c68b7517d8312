-- wrk script of the fault suite: numbered POST requests (?i=N, so the
-- primary and the shadow answer a mirrored request alike) with a small JSON
-- body; counts responses by status in every thread and prints, at the end,
-- one line per status, the socket errors, the request count and latency.
local threads = {}
local counter = 0
local body = '{"instances":[[0.1,0.2,0.3,0.4],[0.5,0.6,0.7,0.8]],"parameters":{"top_k":3}}'
local headers = {["Content-Type"] = "application/json"}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function init(args)
    counts = {}
    counter = id * 100000000
end

function request()
    counter = counter + 1
    return wrk.format("POST", "/v1/models/m/predict?i=" .. counter, headers, body)
end

function response(status, hdrs, resp_body)
    counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts")) do
            total[k] = (total[k] or 0) + v
        end
    end
    for k, v in pairs(total) do
        io.write(string.format("status %d %d\n", k, v))
    end
    local e = summary.errors
    io.write(string.format("errors connect %d read %d write %d timeout %d\n",
        e.connect, e.read, e.write, e.timeout))
    io.write(string.format("requests %d\n", summary.requests))
    io.write(string.format("latency_us p50 %d p99 %d max %d\n",
        latency:percentile(50), latency:percentile(99), latency.max))
end
