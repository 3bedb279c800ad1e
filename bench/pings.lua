-- wrk script for `python -m bench.pings`: POST one location ping per request.
-- Arguments after `--`: <tokens file> (one Firebase emulator ID token a line). Each request carries the
-- next technician's token (round-robin) and a ping recorded now, near that technician's own spot in Berlin.
-- done() prints one machine-readable line starting with "BENCH".

local tokens, bases, ntok = {}, {}, 0
local n, sec, in_sec, stamp = 0, -1, 0, ""
local req_headers = { ["Content-Type"] = "application/json" }
local fmt = '{"pings":[{"lat":%.6f,"lon":%.6f,"recorded_at":"%s.%03dZ",'
    .. '"accuracy_m":%.1f,"speed_mps":%.1f,"heading_deg":%.1f}]}'

-- Per-thread counters, collected by done() through thread:get().
acked, other = 0, 0

local threads = {}

function setup(thread)
    threads[#threads + 1] = thread
end

function init(args)
    math.randomseed(os.time() + #threads)
    for line in io.lines(args[1]) do
        if #line > 0 then
            ntok = ntok + 1
            tokens[ntok] = "Bearer " .. line
            bases[ntok] = { 52.52 + (math.random() - 0.5) * 0.3, 13.405 + (math.random() - 0.5) * 0.5 }
        end
    end
end

function request()
    local now = os.time()
    if now ~= sec then
        sec, in_sec = now, 0
        stamp = os.date("!%Y-%m-%dT%H:%M:%S", now)
    end
    local i = n % ntok + 1
    -- Milliseconds grow with each technician's pings within the second, so that positions move forward.
    local ms = math.min(999, math.floor(in_sec / ntok))
    n, in_sec = n + 1, in_sec + 1
    local b = bases[i]
    local body = string.format(
        fmt,
        b[1] + (math.random() - 0.5) * 0.002,
        b[2] + (math.random() - 0.5) * 0.003,
        stamp,
        ms,
        3 + math.random() * 20,
        math.random() * 15,
        math.random() * 359.9
    )
    req_headers["Authorization"] = tokens[i]
    return wrk.format("POST", nil, req_headers, body)
end

function response(status, headers, body)
    if status == 202 then
        acked = acked + 1
    else
        other = other + 1
    end
end

function done(summary, latency, requests)
    local a, o = 0, 0
    for _, t in ipairs(threads) do
        a = a + t:get("acked")
        o = o + t:get("other")
    end
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d acked=%d other=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, a, o, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(99)
    ))
end
