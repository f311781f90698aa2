-- luarocks make rockspec/rctasks-scm-1.rockspec (offline: see scripts/luarocks-check)
rockspec_format = "3.0"
package = "rctasks"
version = "scm-1"
source = { url = "git+file:///rctasks" }
description = {
  summary = "Redis Cloud API tasks from Lua and OpenResty: get, list, wait, with a C core",
  detailed = [[
rctasks polls the asynchronous tasks of the Redis Cloud REST API until they end: a libcurl
client with keep-alive, a strict JSON decoder that keeps integers, retries and a request budget,
workflow helpers, a cosocket transport that never blocks nginx, and a command-line tool.]],
  license = "MIT",
}
dependencies = { "lua >= 5.1", "lua-cjson" }
-- `library` only: a header check fails on Debian's multiarch curl headers (/usr/include/<triplet>/curl).
external_dependencies = { CURL = { library = "curl" } }
build = {
  type = "builtin",
  modules = {
    rctasks = "lua/rctasks/init.lua",
    ["rctasks.background"] = "lua/rctasks/background.lua",
    ["rctasks.board"] = "lua/rctasks/board.lua",
    ["rctasks.check"] = "lua/rctasks/check.lua",
    ["rctasks.cli"] = "lua/rctasks/cli.lua",
    ["rctasks.cli.journal"] = "lua/rctasks/cli/journal.lua",
    ["rctasks.cli.out"] = "lua/rctasks/cli/out.lua",
    ["rctasks.client"] = "lua/rctasks/client.lua",
    ["rctasks.defaults"] = "lua/rctasks/defaults.lua",
    ["rctasks.env"] = "lua/rctasks/env.lua",
    ["rctasks.errors"] = "lua/rctasks/errors.lua",
    ["rctasks.executor"] = "lua/rctasks/executor.lua",
    ["rctasks.families"] = "lua/rctasks/families.lua",
    ["rctasks.guard"] = "lua/rctasks/guard.lua",
    ["rctasks.journal"] = "lua/rctasks/journal.lua",
    ["rctasks.limiter"] = "lua/rctasks/limiter.lua",
    ["rctasks.poll"] = "lua/rctasks/poll.lua",
    ["rctasks.redis"] = "lua/rctasks/redis.lua",
    ["rctasks.resource"] = "lua/rctasks/resource.lua",
    ["rctasks.retry"] = "lua/rctasks/retry.lua",
    ["rctasks.store.file"] = "lua/rctasks/store/file.lua",
    ["rctasks.store.memory"] = "lua/rctasks/store/memory.lua",
    ["rctasks.store.redis"] = "lua/rctasks/store/redis.lua",
    ["rctasks.store.shdict"] = "lua/rctasks/store/shdict.lua",
    ["rctasks.task"] = "lua/rctasks/task.lua",
    ["rctasks.url"] = "lua/rctasks/url.lua",
    ["rctasks.workflow"] = "lua/rctasks/workflow.lua",
    ["rctasks.transport.curl"] = "lua/rctasks/transport/curl.lua",
    ["rctasks.transport.ngx"] = "lua/rctasks/transport/ngx.lua",
    ["rctasks.transport.http1"] = "lua/rctasks/transport/http1.lua",
    ["rctasks.core"] = {
      sources = { "csrc/core.c", "csrc/json.c", "csrc/task.c", "csrc/http.c", "csrc/sha256.c",
                  "csrc/file.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "curl" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
  },
  install = { bin = { rctasks = "bin/rctasks" } },
}
test = { type = "command", command = "make test" }
