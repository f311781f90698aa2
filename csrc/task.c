/* task.c: placeholder, being written. */
#include "rctasks.h"
void rc_open_task(lua_State *L) { (void)L; }
