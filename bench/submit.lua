-- wrk script: POST /v1/events with a unique idempotency key per request, spread over
-- __PARTICIPANTS__ participants.
-- Placeholders __PROGRAM__, __KEY__ and __RUN__ are filled in by bench/load.py.
local threads = {}
local counter = 0
local tid = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = "__KEY__"
end

function request()
  counter = counter + 1
  local i = counter
  local body = string.format(
    '{"program_id":"__PROGRAM__","idempotency_key":"__RUN__-%d-%d","external_id":"user-%d",' ..
    '"event_type":"purchase","event_data":{"amount":%d,"sku":"A-1"}}',
    tid, i, i % __PARTICIPANTS__, 10 + i % 90)
  return wrk.format(nil, nil, nil, body)
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end

function done(summary, latency, requests)
  local errs = summary.errors.connect + summary.errors.read + summary.errors.write +
               summary.errors.status + summary.errors.timeout
  io.write(string.format('JSON {"requests":%d,"errors":%d,"seconds":%.3f,"p50":%d,"p99":%d}\n',
    summary.requests, errs, summary.duration / 1e6, latency:percentile(50), latency:percentile(99)))
end
