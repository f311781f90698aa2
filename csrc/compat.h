/* compat.h: the one place that papers over Lua 5.1/LuaJIT vs 5.4 differences.
 * We define our own helpers instead of the 5.2+ names because LuaJIT declares some of them
 * (luaL_setfuncs, luaL_newlib) and stock 5.1 does not: own names never collide. */
#ifndef RCTASKS_COMPAT_H
#define RCTASKS_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 503
#define RC_HAVE_INTEGERS 1 /* JSON integers become Lua integers */
#else
#define RC_HAVE_INTEGERS 0 /* 5.1/LuaJIT: every number is a double */
#endif

#if LUA_VERSION_NUM < 502
#define rc_rawlen(L, i) lua_objlen((L), (i))
#else
#define rc_rawlen(L, i) lua_rawlen((L), (i))
#endif

/* Register funcs into the table on top of the stack (no upvalues). */
static inline void rc_setfuncs(lua_State *L, const luaL_Reg *l)
{
    for (; l->name != NULL; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}

#endif
