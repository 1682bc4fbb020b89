-- wrk script: POST one pre-made form body per request, each used at most once.
-- Apple authorization codes are single-use, so the token-exchange round feeds wrk a file of
-- bodies (one line each, one fresh code per line) minted just before the run.
--   wrk ... -s bench/bodies.lua URL -- PATH BODIES_FILE
-- When the file runs out, requests go to /__bench_out_of_bodies__ (404, counted as non-2xx)
-- and `bench: starved=N` is printed, so a short file can never pass silently.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["User-Agent"] = "siwa-bench/1 (wrk)"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  bodies = {}
  for line in io.lines(args[2]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  available, used, starved = #bodies, 0, 0
  ok, failed, first_error = 0, 0, ""
  calls = 0  -- request() calls; wrk builds one request ahead that it never sends
  last_answer, longest_silence = os.time(), 0  -- seconds without any answer: a hung server
end

function request()
  calls = calls + 1
  if used >= available then
    starved = starved + 1
    return wrk.format("GET", "/__bench_out_of_bodies__")
  end
  used = used + 1
  return wrk.format(nil, path, nil, bodies[used])
end

function response(status, headers, body)
  local now = os.time()
  if now - last_answer > longest_silence then longest_silence = now - last_answer end
  last_answer = now
  if status == 200 then
    ok = ok + 1
  else
    failed = failed + 1
    if first_error == "" then
      first_error = tostring(status) .. ":" .. string.sub(string.gsub(body or "", "%s", "_"), 1, 200)
    end
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("bench: available=%d\nbench: used=%d\nbench: starved=%d\n",
      t:get("available"), t:get("used"), t:get("starved")))
    io.write(string.format("bench: ok=%d\nbench: failed=%d\n", t:get("ok"), t:get("failed")))
    -- Requests sent but not answered when wrk stopped: wrk counts a timeout only when a late
    -- answer arrives, so a server that hangs would otherwise go unnoticed.
    local unanswered = t:get("calls") - 1 - t:get("ok") - t:get("failed")
    if unanswered < 0 then unanswered = 0 end
    io.write(string.format("bench: unanswered=%d\n", unanswered))
    local silence = math.max(t:get("longest_silence"), os.time() - t:get("last_answer"))
    io.write(string.format("bench: longest_silence=%d\n", silence))
    local e = t:get("first_error")
    if e ~= nil and e ~= "" then io.write("bench: first_error=" .. e .. "\n") end
  end
end
