-- The requests of `make bench`, sent by wrk, and one line of figures for bench/run.py.
--
-- BENCH_MODE: "get" (a static GET; headers come from wrk's -H), "refresh" (each thread rotates
-- its own chain: run one connection per thread, with BENCH_TOKENS holding one refresh token
-- per thread), "post" (BENCH_BODY posted as JSON: login, the INSERT floor).

local mode = os.getenv("BENCH_MODE") or "get"
local json = {["Content-Type"] = "application/json", ["X-Token-Transport"] = "body"}

local tokens = {}
for value in string.gmatch(os.getenv("BENCH_TOKENS") or "", "[^,]+") do
  tokens[#tokens + 1] = value
end
local handed_out = 0

function setup(thread)
  handed_out = handed_out + 1
  thread:set("token", tokens[handed_out])
end

if mode == "refresh" then
  function request()
    return wrk.format("POST", nil, json, '{"refresh_token": "' .. token .. '"}')
  end

  function response(status, headers, body)
    if status == 200 then
      token = string.match(body, '"refresh_token"%s*:%s*"(%x+)"')
    end
  end
elseif mode == "post" then
  local body = os.getenv("BENCH_BODY")
  function request()
    return wrk.format("POST", nil, json, body)
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "failed": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    errors.connect + errors.read + errors.write + errors.status + errors.timeout))
end
