-- wrk script for bench/scheduling_bench.py: POST every line of a file once, in order, then stop.
--
--   wrk -t1 -c16 -d900s -s bench/wrk/bodies.lua http://127.0.0.1:PORT -- PATH BODIES_FILE EXPECT [TOKEN]
--
-- BODIES_FILE has one JSON request body per line (e.g. an Appointment for /fhir/Appointment/$book).
-- Run it with one thread (-t1): the connections then share one list and each body is sent exactly once.
-- A response other than EXPECT (e.g. 201) is counted as a failure. When the list runs out, connections
-- that still ask for a request get a cheap GET /health (a few at the very end, at most one per
-- connection). As soon as the last body's answer arrives the script interrupts wrk (SIGINT, as Ctrl-C
-- would: wrk otherwise runs for the whole -d), so the run's duration is the time to send them all. (A
-- request whose connection the server dropped gets no answer and is not sent again: after 1,000 /health
-- answers the run ends anyway, and answered= says how many bodies had one.)
-- done() prints one machine-readable line
--   WRK_RESULT key=value ...   (latencies in microseconds; bodies= and failures= count the bodies only)
-- and, if anything failed, WRK_SAMPLE with the first failing status and body.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path, expect = args[1], tonumber(args[3])
  bodies = {}
  for line in io.lines(args[2]) do
    if line ~= "" then
      bodies[#bodies + 1] = line
    end
  end
  if #bodies == 0 then
    error("no bodies in " .. tostring(args[2]))
  end
  sent, answered, failures, first_bad, healths, health_answers, verified = 0, 0, 0, "", 0, 0, false
  wrk.headers["Accept"] = "application/fhir+json"
  wrk.headers["Content-Type"] = "application/fhir+json"
  if args[4] and args[4] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[4]
  end
  health = wrk.format("GET", "/health", { ["Content-Type"] = "" }, nil)
end

function request()
  if not verified then
    -- wrk calls request() once on the first thread's state to check it, and never sends that one
    verified = true
    return wrk.format("POST", path, nil, bodies[1])
  end
  if sent >= #bodies then
    healths = healths + 1
    return health
  end
  sent = sent + 1
  return wrk.format("POST", path, nil, bodies[sent])
end

function finish()
  -- $PPID of the shell io.popen starts is wrk itself; its SIGINT handler ends the run. (Not os.execute:
  -- system() ignores SIGINT in the caller while the command runs, and the signal would be lost.)
  io.popen("kill -INT $PPID"):close()
end

function response(status, headers, body)
  local kind = headers["content-type"] or headers["Content-Type"] or ""
  if healths > 0 and string.find(kind, "fhir", 1, true) == nil then
    -- the answer to a /health sent after the list ran out (FHIR answers, errors too, are fhir+json)
    health_answers = health_answers + 1
    if health_answers == 1000 then
      finish()
    end
    return
  end
  answered = answered + 1
  if status ~= expect then
    failures = failures + 1
    if first_bad == "" then
      first_bad = tostring(status) .. " " .. string.sub(body or "", 1, 400)
    end
  end
  if answered == #bodies then
    finish()
  end
end

function done(summary, latency, requests)
  local thread = threads[1]
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%.1f p95_us=%.1f p99_us=%.1f mean_us=%.1f "
      .. "max_us=%.1f non2xx=%d connect=%d read=%d write=%d timeout=%d status=%d bodies=%d answered=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.mean, latency.max, thread:get("failures"), e.connect, e.read, e.write,
    e.timeout, e.status, thread:get("sent"), thread:get("answered")))
  local sample = thread:get("first_bad")
  if sample and sample ~= "" then
    io.write("WRK_SAMPLE " .. sample:gsub("[\r\n]", " ") .. "\n")
  end
end
