-- wrk script for bench/fhir_core_bench.py: FHIR Patient interactions.
--
--   wrk -t2 -c32 -d10s -s bench/wrk/fhir.lua http://127.0.0.1:PORT -- MODE [IDS_FILE]
--
-- MODE: read | vread | create | update. IDS_FILE has one seeded Patient per line: "id" (read, update)
-- or "id version" (vread). Every non-2xx response is counted; done() prints one machine-readable line
--   WRK_RESULT key=value ...   (latencies in microseconds)
-- and, if anything failed, WRK_SAMPLE with the first failing status and body.

local threads = {}

local families = { "Smith", "Garcia", "Nguyen", "Okafor", "Schmidt", "Rossi", "Kowalski", "Tanaka" }
local givens = { "Ann", "Bo", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana" }

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  ids, versions = {}, {}
  non2xx, first_bad, counter = 0, "", 0
  math.randomseed(os.time() * 1000 + (thread_no or 0))
  wrk.headers["Accept"] = "application/fhir+json"
  if mode == "create" or mode == "update" then
    wrk.headers["Content-Type"] = "application/fhir+json"
  end
  if mode ~= "create" then
    for line in io.lines(args[2]) do
      local id, version = line:match("^(%S+)%s*(%S*)$")
      if id then
        ids[#ids + 1] = id
        versions[#versions + 1] = version
      end
    end
    if #ids == 0 then
      error("no ids in " .. tostring(args[2]))
    end
  end
end

local function patient(id)
  counter = counter + 1
  local id_field = ""
  if id then
    id_field = '"id":"' .. id .. '",'
  end
  return string.format(
    '{"resourceType":"Patient",%s"active":true,"name":[{"family":"%s","given":["%s"]}],'
      .. '"gender":"%s","birthDate":"%04d-%02d-%02d"}',
    id_field, families[math.random(#families)], givens[math.random(#givens)],
    (counter % 2 == 0) and "female" or "male",
    math.random(1930, 2020), math.random(1, 12), math.random(1, 28))
end

function request()
  if mode == "create" then
    return wrk.format("POST", "/fhir/Patient", nil, patient(nil))
  end
  local i = math.random(#ids)
  local id = ids[i]
  if mode == "read" then
    return wrk.format("GET", "/fhir/Patient/" .. id)
  elseif mode == "vread" then
    return wrk.format("GET", "/fhir/Patient/" .. id .. "/_history/" .. versions[i])
  elseif mode == "update" then
    return wrk.format("PUT", "/fhir/Patient/" .. id, nil, patient(id))
  end
  error("unknown mode " .. tostring(mode))
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
