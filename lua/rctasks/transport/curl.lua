-- rctasks.transport.curl: the default transport outside nginx, over the C core's libcurl client
-- (one reused easy handle per client: keep-alive). It blocks the calling thread: never the
-- default inside nginx, where a blocked worker serves nothing else meanwhile.
local core = require "rctasks.core"
local defaults = require "rctasks.defaults"
local errors = require "rctasks.errors"

local M = {}
M.__index = M

-- libcurl's error names -> the transport-neutral codes both transports speak (err.code); the
-- libcurl name stays in err.curl_code. Unlisted names are "other".
local CODE = {
  CURLE_COULDNT_RESOLVE_HOST = "resolve", CURLE_COULDNT_CONNECT = "connect",
  CURLE_COULDNT_RESOLVE_PROXY = "proxy", CURLE_PROXY = "proxy",
  CURLE_OPERATION_TIMEDOUT = "timeout",
  CURLE_SSL_CONNECT_ERROR = "tls", CURLE_PEER_FAILED_VERIFICATION = "tls", CURLE_SSL_CACERT_BADFILE = "tls",
  CURLE_SSL_CERTPROBLEM = "tls", CURLE_SSL_CIPHER = "tls", CURLE_SSL_ISSUER_ERROR = "tls",
  CURLE_SSL_CRL_BADFILE = "tls", CURLE_SSL_ENGINE_NOTFOUND = "tls", CURLE_SSL_SHUTDOWN_FAILED = "tls",
  CURLE_SSL_CLIENTCERT = "tls",
  CURLE_GOT_NOTHING = "closed", CURLE_RECV_ERROR = "closed", CURLE_PARTIAL_FILE = "closed",
  CURLE_HTTP2 = "closed", CURLE_HTTP2_STREAM = "closed",
  CURLE_SEND_ERROR = "send",
  CURLE_FILESIZE_EXCEEDED = "too_large",
  CURLE_WEIRD_SERVER_REPLY = "bad_response", CURLE_BAD_CONTENT_ENCODING = "bad_response",
  CURLE_URL_MALFORMAT = "bad_url", CURLE_UNSUPPORTED_PROTOCOL = "bad_url",
  ENOMEM = "no_memory",
}

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
  local name, message = headers, body
  return nil, errors.new("transport", { code = CODE[name] or "other", curl_code = name, message = message,
    retryable = TRANSIENT[name] == true, unsent = sent == false })
end

function M:stats() return self.handle:stats() end

function M:close() self.handle:close() end

return M
