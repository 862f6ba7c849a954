-- wrk script for bench/search_bench.py: GET a random search from a list.
--
--   wrk -t2 -c32 -d10s -s bench/wrk/search_paths.lua http://127.0.0.1:PORT -- PATHS_FILE [TOKEN]
--
-- PATHS_FILE has one URL-encoded request path per line (e.g. /fhir/Patient?name=Casp), built from values
-- sampled out of the loaded database, so that consecutive requests ask different questions. TOKEN, if
-- given, is sent as `Authorization: Bearer TOKEN` (the server's OAuth access token). Every non-2xx
-- response is counted; done() prints one machine-readable line
--   WRK_RESULT key=value ...   (latencies in microseconds)
-- and, if anything failed, WRK_SAMPLE with the first failing status and body.

local threads = {}

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  non2xx, first_bad = 0, ""
  math.randomseed(os.time() * 1000 + (thread_no or 0))
  wrk.headers["Accept"] = "application/fhir+json"
  if args[2] and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  for line in io.lines(args[1]) do
    if line ~= "" then
      paths[#paths + 1] = line
    end
  end
  if #paths == 0 then
    error("no paths in " .. tostring(args[1]))
  end
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 400)
    end
  end
end

function done(summary, latency, requests)
  local bad, sample = 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    local first = thread:get("first_bad")
    if sample == "" and first and first ~= "" then
      sample = first
    end
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%.1f p95_us=%.1f p99_us=%.1f mean_us=%.1f "
      .. "max_us=%.1f non2xx=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.mean, latency.max, bad, e.connect, e.read, e.write, e.timeout,
    e.status))
  if sample ~= "" then
    io.write("WRK_SAMPLE " .. sample:gsub("[\r\n]", " ") .. "\n")
  end
end
