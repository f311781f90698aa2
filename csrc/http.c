/* http.c: placeholder, being written. */
#include "rctasks.h"
void rc_open_http(lua_State *L) { (void)L; }
