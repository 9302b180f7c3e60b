-- One request class for wrk (bench/wrk.py runs it): `wrk -s load.lua URL -- BODIES TAG EXPECT DELAY_MS`.
--   BODIES    a file of POST bodies, one JSON document per line, sent in rotation; "-": GET the URL
--   TAG       makes "__UID__" in a body unique per request (message ids are never replays)
--   EXPECT    a string every good response body holds ("-": none); a 200 without it counts as missing
--   DELAY_MS  pause before each request on a connection (a probe), 0: as fast as answers come
-- Every response is checked: requests sent and answered (the difference: still unanswered when the
-- run ended, which wrk's latencies leave out), non-200 statuses, GraphQL "errors", missing EXPECT, and the event counts of
-- ingestEvents results are summed per thread; done() prints one line, "WRKJSON {...}".

local threads = {}
local counters = { "sent", "answered", "non200", "gql_errors", "missing", "accepted", "duplicates", "rejected" }

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  if args[1] ~= "-" then
    for line in io.lines(args[1]) do
      if #line > 0 then bodies[#bodies + 1] = line end
    end
  end
  tag = (args[2] or "x") .. "-" .. thread_id .. "-"
  expect = args[3] ~= "-" and args[3] or nil
  pause = tonumber(args[4] or "0")
  if pause > 0 then
    -- defined only for a probe: wrk looks for delay() after init, and with it waits a timer per request
    function delay() return pause end
  end
  for _, name in ipairs(counters) do _G[name] = 0 end
  if #bodies > 0 then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
end

function request()
  sent = sent + 1
  if #bodies == 0 then
    return wrk.format("GET", wrk.path)
  end
  local body = bodies[(sent - 1) % #bodies + 1]
  if string.find(body, "__UID__", 1, true) then
    body = string.gsub(body, "__UID__", tag .. sent)
  end
  return wrk.format("POST", wrk.path, nil, body)
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    non200 = non200 + 1
    return
  end
  if string.find(body, '"errors"', 1, true) then gql_errors = gql_errors + 1 end
  if expect and not string.find(body, expect, 1, true) then missing = missing + 1 end
  local a = string.match(body, '"accepted":%s*(%d+)')
  if a then
    accepted = accepted + tonumber(a)
    duplicates = duplicates + tonumber(string.match(body, '"duplicates":%s*(%d+)') or "0")
    rejected = rejected + tonumber(string.match(body, '"rejected":%s*(%d+)') or "0")
  end
end

function done(summary, latency, requests)
  local totals = {}
  for _, name in ipairs(counters) do
    totals[name] = 0
    for _, thread in ipairs(threads) do totals[name] = totals[name] + (thread:get(name) or 0) end
  end
  -- wrk calls request() once before the run, on the first thread, to count pipelined requests: not sent
  totals.sent = totals.sent - 1
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"sent":%d,"answered":%d,"non200":%d,"gql_errors":%d,"missing":%d,"accepted":%d,"duplicates":%d,' ..
    '"rejected":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    totals.sent, totals.answered, totals.non200, totals.gql_errors, totals.missing, totals.accepted, totals.duplicates, totals.rejected))
end
