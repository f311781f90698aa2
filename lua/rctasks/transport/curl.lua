-- rctasks.transport.curl: the default transport outside nginx, over the C core's libcurl client
-- (one reused easy handle per client: keep-alive). It blocks the calling thread: never the
-- default inside nginx, where a blocked worker serves nothing else meanwhile.
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local errors = require "rctasks.errors"

local M = {}
M.__index = M

-- Failures worth another try. Whether one may have reached the server is the C core's call
-- (`sent`), never the code's: a hidden resend's failed connect follows a request that did go out.
local TRANSIENT = {
  CURLE_COULDNT_CONNECT = true, CURLE_COULDNT_RESOLVE_HOST = true,
  CURLE_OPERATION_TIMEDOUT = true, CURLE_GOT_NOTHING = true, CURLE_SEND_ERROR = true,
  CURLE_RECV_ERROR = true, CURLE_PARTIAL_FILE = true, CURLE_SSL_CONNECT_ERROR = true,
  CURLE_HTTP2 = true, CURLE_HTTP2_STREAM = true,
}

-- The options of core.http, which has no defaults of its own: opts over rctasks.defaults.request.
-- Other keys of opts pass through for the C core to check.
local CORE_NUMBERS = { "timeout", "connect_timeout", "max_body", "max_header" }
function M.options(opts)
  local cfg = {}
  for k, v in pairs(opts or {}) do cfg[k] = v end
  for _, k in ipairs(CORE_NUMBERS) do
    if cfg[k] == nil then cfg[k] = defaults.request[k] end
  end
  return cfg
end

-- curl.new{timeout=, connect_timeout=, ca_file=, max_body=, max_header=}
function M.new(opts)
  local handle, _, msg = core.http(M.options(opts))
  if not handle then error("rctasks: libcurl could not start: " .. tostring(msg), 3) end
  return setmetatable({ handle = handle, agent = "libcurl/" .. core.curl_version }, M)
end

function M:request(req)
  local status, headers, body, sent = self.handle:request(req.method, req.url, req.headers, req.body, req.timeout)
  if status then return { status = status, headers = headers, body = body } end
  -- Only an explicit false is unsent: anything else may have reached the server.
  local code, message = headers, body
  return nil, errors.new("transport", { code = code, message = message, retryable = TRANSIENT[code] == true,
    unsent = sent == false })
end

function M:stats() return self.handle:stats() end

function M:close() self.handle:close() end

return M
