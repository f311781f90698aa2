/* fuzz_decode.c: libFuzzer target for the JSON decoder and the task model (built by `make fuzz`).
 * Each input runs twice in a fresh Lua 5.4 state: once with unlimited memory, once with an allocator
 * that starts failing after an input-derived number of allocations, so the memory-error paths (the
 * only errors allowed to escape the decoder) are exercised too. Everything runs under lua_pcall.
 * Oracles besides the sanitizers: a failed decode pushes nothing and names a byte position; a
 * successful one pushes exactly one value; the task functions return a value or nil plus a string. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "../csrc/rctasks.h"

static int limit_on;
static unsigned long budget;

/* Growth may fail when limited; shrinking must not (Lua 5.4 assumes it never does). */
static void *fuzz_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (limit_on && nsize > (ptr ? osize : 0)) {
        if (budget == 0)
            return NULL;
        budget--;
    }
    return realloc(ptr, nsize);
}

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz oracle failed: %s\n", what);
        abort();
    }
}

/* Calls core[name](input, mt) and checks the result convention. */
static void call_task_fn(lua_State *L, int core, int input, int mt, const char *name)
{
    int top = lua_gettop(L), n;
    lua_getfield(L, core, name);
    lua_pushvalue(L, input);
    lua_pushvalue(L, mt);
    lua_call(L, 2, LUA_MULTRET);
    n = lua_gettop(L) - top;
    if (lua_isnil(L, top + 1))
        check(n == 2 && lua_type(L, top + 2) == LUA_TSTRING, "nil is followed by a message");
    else
        check(n == 1 && lua_istable(L, top + 1), "a task result is one table");
    lua_settop(L, top);
}

static int body(lua_State *L)
{
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    char err[160];
    int top = lua_gettop(L), core, mt;
    if (rc_json_decode(L, s, len, err, sizeof err)) {
        check(lua_gettop(L) == top + 1, "success pushes one value");
        lua_settop(L, top);
    } else {
        check(lua_gettop(L) == top, "failure pushes nothing");
        check(strstr(err, " at byte ") != NULL, "error names a byte position");
    }
    lua_newtable(L);
    rc_open_json(L);
    rc_open_task(L);
    core = lua_gettop(L);
    lua_newtable(L);
    mt = lua_gettop(L);
    call_task_fn(L, core, 1, mt, "decode_task");
    call_task_fn(L, core, 1, mt, "decode_tasks");
    return 0;
}

static void run(const uint8_t *data, size_t size, unsigned long alloc_limit)
{
    lua_State *L;
    int rc;
    limit_on = 0;
    L = lua_newstate(fuzz_alloc, NULL);
    if (L == NULL)
        return;
    lua_pushcfunction(L, body);
    lua_pushlstring(L, (const char *)data, size);
    budget = alloc_limit;
    limit_on = alloc_limit > 0;
    rc = lua_pcall(L, 1, 0, 0);
    limit_on = 0;
    if (rc != LUA_OK)
        check(rc == LUA_ERRMEM && alloc_limit > 0, "only a memory error may escape, and only when limited");
    lua_close(L);
}

__attribute__((visibility("default"))) int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned long h = 5381;
    size_t i;
    run(data, size, 0);
    for (i = 0; i < size; i++)
        h = h * 33 + data[i];
    run(data, size, 1 + h % 64);
    return 0;
}
