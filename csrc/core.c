/* core.c: luaopen_rctasks_core, the module entry. Assembles the table from each concern's file and
 * adds the two pieces of plain-Lua plumbing the Lua side needs: a monotonic clock and a sleep.
 * Nothing here keeps state: one VM may serve every request of an nginx worker. */
#include <errno.h>
#include <time.h>

#include "rctasks.h"

/* core.now() -> seconds from an arbitrary origin, monotonic (never jumps with the wall clock). */
static int core_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.time() -> seconds since the epoch, fractional: the wall clock, which processes on one host
 * and reboots agree on (the file store's expiry times are written to disk). */
static int core_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.sleep(seconds): blocks the calling thread; outside nginx only (the ngx transport uses ngx.sleep). */
static int core_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec req, rem;
    if (!(s > 0)) /* also rejects NaN */
        return 0;
    if (s > 86400.0)
        s = 86400.0;
    req.tv_sec = (time_t)s;
    req.tv_nsec = (long)((s - (lua_Number)req.tv_sec) * 1e9);
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
    return 0;
}

static const luaL_Reg core_funcs[] = {
    {"now", core_now},
    {"time", core_time},
    {"sleep", core_sleep},
    {NULL, NULL}
};

__attribute__((visibility("default"))) int luaopen_rctasks_core(lua_State *L)
{
    lua_newtable(L);
    rc_setfuncs(L, core_funcs);
    rc_open_json(L);
    rc_open_task(L);
    rc_open_http(L);
    rc_open_sha256(L);
    rc_open_file(L);
    lua_pushliteral(L, RCTASKS_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
