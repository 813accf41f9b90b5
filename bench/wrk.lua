-- Loaded by bench/bench.py into every wrk run.
-- BENCH_BODY_FILE=/path: each request is a POST carrying that file's bytes.
-- At the end one line "BENCHJSON {...}" sums the run up (times in µs), so the
-- harness never parses wrk's human-readable report.
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file ~= nil and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/octet-stream"
end

function done(summary, latency, requests)
  local e = summary.errors
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"err_connect":%d', e.connect),
    string.format('"err_read":%d', e.read),
    string.format('"err_write":%d', e.write),
    string.format('"err_status":%d', e.status),
    string.format('"err_timeout":%d', e.timeout),
    string.format('"lat_mean_us":%.1f', latency.mean),
    string.format('"lat_max_us":%d', latency.max),
  }
  for _, p in ipairs({50, 90, 99, 99.9}) do
    local key = string.gsub(tostring(p), "%.", "_")
    fields[#fields + 1] = string.format('"lat_p%s_us":%d', key, latency:percentile(p))
  end
  io.write("BENCHJSON {" .. table.concat(fields, ",") .. "}\n")
end
