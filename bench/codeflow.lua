-- wrk script: the authorization code flow of a web app, one iteration = two requests:
--   1. GET /oauth/authorize with the browser's siwa-web session cookie, a fresh state and nonce
--      and a PKCE S256 challenge: a first-party client is answered at once with a 303 to its
--      redirect URI carrying `code`, `state` and `iss`;
--   2. POST /oauth/token grant_type=authorization_code with that code, the redirect URI, the
--      PKCE verifier and client_secret_basic: an ID token, an access token and a refresh token.
-- Codes are single-use and minted by step 1 itself, so nothing single-use is prepared: each
-- 303's code goes into a queue and the next request any connection sends redeems one; with no
-- code waiting, it starts a new authorization. One thread (-t1) means one queue for all
-- connections (wrk does not say which connection a response came on, nor does it need to).
-- The session (a cookie) is reused by every request; it is not single-use. The PKCE pairs are
-- made by bench/tokens.py (no SHA-256 here) and used in turn; the pair's index travels in
-- `state`, so the redemption presents the verifier of the challenge its code was issued for.
--   wrk ... -s bench/codeflow.lua URL -- AUTHORIZE_PATH COOKIE BASIC_AUTH REDIRECT_URI PKCE_FILE
-- AUTHORIZE_PATH is /oauth/authorize?... with every parameter except state, nonce and
-- code_challenge (appended here); COOKIE is the Cookie header's value; BASIC_AUTH the
-- Authorization header's; REDIRECT_URI form-encoded; PKCE_FILE has one "verifier challenge"
-- pair a line. Prints `bench: iterations=N` (codes redeemed): bench/tokens.py reports the
-- rate of those, not of requests.
wrk.headers["User-Agent"] = "siwa-bench/1 (wrk)"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  authorize_path, cookie, basic, redirect_uri = args[1], args[2], args[3], args[4]
  verifiers, challenges = {}, {}
  for line in io.lines(args[5]) do
    local v, c = string.match(line, "^(%S+)%s+(%S+)$")
    if v then
      verifiers[#verifiers + 1] = v
      challenges[#challenges + 1] = c
    end
  end
  pairs_n = #verifiers
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  prefix = string.format("%08x", math.random(0, 0x7fffffff))  -- this run's states and nonces
  queue, head, tail = {}, 1, 0  -- codes waiting to be redeemed: "code pair-index"
  counter = 0  -- authorizations started
  authorized, iterations = 0, 0  -- 303s with a code; codes redeemed (200)
  ok, failed, first_error = 0, 0, ""
  calls = 0  -- request() calls; wrk builds one request ahead that it never sends
  last_answer, longest_silence = os.time(), 0  -- seconds without any answer: a hung server
  get_headers = {["User-Agent"] = "siwa-bench/1 (wrk)", ["Cookie"] = cookie}
  post_headers = {["User-Agent"] = "siwa-bench/1 (wrk)", ["Authorization"] = basic,
                  ["Content-Type"] = "application/x-www-form-urlencoded"}
end

function request()
  calls = calls + 1
  if head <= tail then
    local code, index = string.match(queue[head], "^(%S+) (%d+)$")
    queue[head] = nil
    head = head + 1
    return wrk.format("POST", "/oauth/token", post_headers,
      "grant_type=authorization_code&code=" .. code .. "&redirect_uri=" .. redirect_uri ..
      "&code_verifier=" .. verifiers[tonumber(index)])
  end
  counter = counter + 1
  local index = (counter - 1) % pairs_n + 1
  -- state: "<pair index>.<run>.<counter>"; nonce: fresh as well (OIDC: one per request)
  local state = index .. "." .. prefix .. "." .. counter
  local nonce = "n" .. prefix .. "." .. counter .. "." .. math.random(0, 0x7fffffff)
  return wrk.format("GET", authorize_path .. "&state=" .. state .. "&nonce=" .. nonce ..
    "&code_challenge=" .. challenges[index], get_headers, nil)
end

local function fail(status, what, body)
  failed = failed + 1
  if first_error == "" then
    first_error = what .. ":" .. tostring(status) .. ":" ..
      string.sub(string.gsub(body or "", "%s", "_"), 1, 200)
  end
end

function response(status, headers, body)
  local now = os.time()
  if now - last_answer > longest_silence then longest_silence = now - last_answer end
  last_answer = now
  if status == 303 then
    local location = headers["Location"] or headers["location"] or ""
    local code = string.match(location, "[?&]code=([^&#]+)")
    local index = string.match(location, "[?&]state=(%d+)%.")
    if code and index then
      ok = ok + 1
      authorized = authorized + 1
      tail = tail + 1
      queue[tail] = code .. " " .. index
    else
      fail(status, "authorize", location)
    end
  elseif status == 200 and string.find(body or "", '"id_token"', 1, true) then
    ok = ok + 1
    iterations = iterations + 1
  else
    fail(status, status == 200 and "token" or "answer", body)
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("bench: iterations=%d\nbench: authorized=%d\n",
      t:get("iterations"), t:get("authorized")))
    -- Answers that are not a 303 with a code nor a 200 with an ID token, whatever their
    -- status (a 303 back to the login page is no 4xx): the run is not clean.
    io.write(string.format("bench: ok=%d\nbench: unexpected=%d\n", t:get("ok"), t:get("failed")))
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
  io.write(string.format("bench: duration_us=%d\n", summary.duration))
end
