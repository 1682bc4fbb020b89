-- wrk script: refresh-token chains. Every response's new refresh_token is presented by a later
-- request, so each request uses a token exactly once, as a real client does (a used token
-- would be reuse, which revokes the family). Seed with about 2 x connections tokens.
--   wrk ... -s bench/chain.lua URL -- PATH SEEDS_FILE [EXTRA_FORM_FIELDS]
-- EXTRA_FORM_FIELDS is appended to the body as is, e.g. "&client_id=cli_x".
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["User-Agent"] = "siwa-bench/1 (wrk)"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  extra = args[3] or ""
  queue, head, tail = {}, 1, 0
  for line in io.lines(args[2]) do
    if #line > 0 then
      tail = tail + 1
      queue[tail] = line
    end
  end
  seeds, starved = tail, 0
  ok, failed, first_error = 0, 0, ""
  calls = 0  -- request() calls; wrk builds one request ahead that it never sends
  last_answer, longest_silence = os.time(), 0  -- seconds without any answer: a hung server
end

function request()
  calls = calls + 1
  local token = "starved"
  if head <= tail then
    token = queue[head]
    queue[head] = nil
    head = head + 1
  else
    starved = starved + 1
  end
  return wrk.format(nil, path, nil, "grant_type=refresh_token&refresh_token=" .. token .. extra)
end

function response(status, headers, body)
  local now = os.time()
  if now - last_answer > longest_silence then longest_silence = now - last_answer end
  last_answer = now
  local token = string.match(body or "", '"refresh_token"%s*:%s*"([^"]+)"')
  if status == 200 and token then
    ok = ok + 1
    tail = tail + 1
    queue[tail] = token
  else
    failed = failed + 1
    if first_error == "" then
      first_error = tostring(status) .. ":" .. string.sub(string.gsub(body or "", "%s", "_"), 1, 200)
    end
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("bench: seeds=%d\nbench: starved=%d\n", t:get("seeds"), t:get("starved")))
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
