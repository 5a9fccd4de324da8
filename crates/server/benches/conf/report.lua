-- wrk script for `cargo bench -p httpserve --bench compare`: after a run, print one line the
-- harness parses (latencies in microseconds, duration in microseconds, bytes read).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "HTTPSERVE_BENCH requests=%.0f duration_us=%.0f bytes=%.0f connect=%.0f read=%.0f " ..
    "write=%.0f status=%.0f timeout=%.0f p50_us=%.0f p99_us=%.0f\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
