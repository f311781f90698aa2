-- rctasks.defaults: every default of the library, in one table. The client, the option checks,
-- both transports and (through the curl transport) the C core read them from here and nowhere
-- else, so changing one value here changes it everywhere.
return {
  base_url = "https://api.redislabs.com/v1",
  shared_dict = "rctasks",         -- the lua_shared_dict of the shared budget and background waits
  max_id = 128,                    -- bytes of a task id (UUIDs on the real API)
  max_sleep = 86400,               -- no single sleep is longer (ngx.sleep raises on huge values)

  -- One HTTP request (both transports; the C core gets them from transport/curl.lua).
  request = {
    timeout = 30,                  -- seconds, connect to last byte: a total deadline, not an idle one
    connect_timeout = 10,          -- seconds, TCP connect and TLS handshake
    max_body = 8 * 1024 * 1024,    -- response body cap, bytes
    max_header = 64 * 1024,        -- response header block cap, bytes
    max_line = 8 * 1024,           -- one status, header or chunk-size line (cosocket transport)
    keepalive_timeout = 30,        -- seconds an idle pooled connection is kept (cosocket transport)
    pool_size = 32,                -- pooled connections per endpoint and worker (cosocket transport)
  },

  -- The retry policy of single requests (rctasks.retry.new).
  retry = {
    attempts = 4,                  -- tries in all, the first included
    base = 0.5,                    -- first backoff ceiling, seconds
    max_delay = 30,                -- backoff ceiling cap, seconds
    factor = 2,
    retry_post = false,            -- a POST that may have reached the server is not sent again
    max_retry_after = 120,         -- a longer Retry-After is not waited for: the error is returned
    -- A 429 also means "too many changes at once in the account; resubmit once they are done":
    -- retried for minutes, as the Go SDK does (10 tries, 1 s doubling to 60 s).
    busy_attempts = 10,
    busy_base = 1,
    busy_max_delay = 60,
  },

  -- The request budget: the API allows 400 requests a minute per account key.
  limiter = { limit = 400, window = 60 },
  shared_margin = 0.05,            -- a shared claim outlives its window by this share of it (at most 1 s)
  fallback_share = 0.25,           -- of a shared budget, what a client keeps to while its store fails
                                   -- before it ever saw how many clients share it (then: limit / clients)

  -- Background waits (rctasks.background): a record stays the wait's timeout plus this long.
  record_keep = 86400,

  -- The subscription guard (rctasks.guard): a lease outlives the change's longest poll sleep.
  guard = {
    ttl = 90,                      -- seconds a lease lasts unless renewed (every poll round renews it)
    first_wait = 0.5,              -- first wait for a lease another script holds, doubling
    max_wait = 5,                  -- longest wait between tries for the lease
  },

  -- The journal (rctasks.journal): the crash window between sending a create and recording its task.
  journal = {
    lag = 15,                      -- seconds a new task may take to appear in GET /tasks
    skew = 120,                    -- seconds the API's clock may be behind this host's
  },

  -- The command line's watch.
  watch = { interval = 5, limit = 20 },

  -- Polling (wait, wait_all, wait_ready, run): the Go SDK's schedule.
  wait = {
    timeout = 1800,                -- overall deadline, seconds
    interval = 1,                  -- first delay
    max_interval = 30,             -- delay cap (a server's Retry-After may exceed it)
    backoff = 2,                   -- delay factor per poll
    jitter = 0.1,                  -- up to this many seconds added to each delay
    early_404 = 5,                 -- 404s waited through before a task is first seen
    grace = 60,                    -- seconds a resource may answer 404 after its task completed
    list_above = 2,                -- wait_all lists every task in one GET while more are pending
    lease_margin = 5,              -- a shared poller's lease outlives its longest sleep by this much
  },

  -- Error values.
  errors = {
    max_body = 4096,               -- err.body keeps this much of a raw body
    max_message = 1024,            -- err.message is cut to this many bytes
  },
}
