/* dl_capstone.h - the capstone functions that decode the instructions entry patching relocates
 * (x86_64/patch.c), opened on demand (core/dynlib.h): libcapstone.so.4 is loaded only when an entry
 * is patched. */
#ifndef AS_DL_CAPSTONE_H
#define AS_DL_CAPSTONE_H

#include <capstone/capstone.h>

#include "core/dynlib.h"

#define AS_CS_FNS(X)                                                                               \
    X(cs_close)                                                                                    \
    X(cs_disasm_iter)                                                                              \
    X(cs_free)                                                                                     \
    X(cs_insn_group)                                                                               \
    X(cs_malloc)                                                                                   \
    X(cs_open)                                                                                     \
    X(cs_option)

struct as_cs_fns {
    AS_CS_FNS(AS_DL_FIELD)
};
extern struct as_cs_fns as_cs;
extern as_dynlib as_cs_lib;

#endif
