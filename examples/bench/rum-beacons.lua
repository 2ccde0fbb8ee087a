-- wrk script: POSTs beacons as /rum.js sends them (one page load each: the
-- navigation breakdown and five vitals with ids), over 1,000 product pages,
-- a realistic mix of devices (User-Agent) and values, as text/plain.
--
--   wrk -t2 -c64 -d10s -s examples/bench/rum-beacons.lua http://127.0.0.1:8686/rum

local PAGES = 1000
local threads = {}
local thread_no = 0

function setup(thread)
  thread_no = thread_no + 1
  thread:set("tid", thread_no)
  table.insert(threads, thread)
end

local agents = {
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
  "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
}

-- 1,000 pages: /c/category-N/products/:id once normalised (the product id varies).
local template = '{"page":"https://shop.example/c/category-%d/products/%d?ref=home","connection":"4g",' ..
  '"nav":{"dns":%.1f,"tcp":%.1f,"tls":%.1f,"request":%.1f,"download":%.1f,"dom":%.1f,"load":%.1f},' ..
  '"metrics":[{"name":"TTFB","value":%.1f,"id":"v5-%d-%d-t","navigationType":"navigate"},' ..
  '{"name":"FCP","value":%.1f,"id":"v5-%d-%d-f"},{"name":"LCP","value":%.1f,"id":"v5-%d-%d-l"},' ..
  '{"name":"CLS","value":%.4f,"id":"v5-%d-%d-c"},{"name":"INP","value":%d,"id":"v5-%d-%d-i"}]}'

local n = 0

-- A log-normal-ish draw around `median`.
local function around(median)
  local u = math.random() + math.random() + math.random() - 1.5
  return median * math.exp(u * 0.8)
end

function request()
  n = n + 1
  local page = math.random(PAGES)
  local ttfb = around(300)
  local fcp = ttfb + around(700)
  local lcp = fcp + around(600)
  local body = string.format(template, page, math.random(100000),
    around(15), around(20), around(15), ttfb, around(30), around(600), lcp + around(400),
    ttfb, tid, n, fcp, tid, n, lcp, tid, n, around(0.05), tid, n,
    8 * math.floor(around(120) / 8), tid, n)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "text/plain;charset=UTF-8",
    ["User-Agent"] = agents[math.random(#agents)],
  }, body)
end
