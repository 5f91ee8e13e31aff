/* dl_dw.h - the libdw functions that read DWARF prototypes (dwarf.c), opened on demand
 * (core/dynlib.h): libdw.so.1 (and libelf.so.1 with it) is loaded only when a matched function
 * without a written prototype lives in an object carrying DWARF. */
#ifndef AS_DL_DW_H
#define AS_DL_DW_H

#include <stddef.h> /* dwarf.h uses size_t without including it */
#include <dwarf.h>
#include <elfutils/libdw.h>

#include "core/dynlib.h"

#define AS_DW_FNS(X)                                                                               \
    X(dwarf_aggregate_size)                                                                        \
    X(dwarf_attr)                                                                                  \
    X(dwarf_attr_integrate)                                                                        \
    X(dwarf_begin)                                                                                 \
    X(dwarf_child)                                                                                 \
    X(dwarf_diename)                                                                               \
    X(dwarf_dieoffset)                                                                             \
    X(dwarf_end)                                                                                   \
    X(dwarf_formflag)                                                                              \
    X(dwarf_formref_die)                                                                           \
    X(dwarf_formsdata)                                                                             \
    X(dwarf_formstring)                                                                            \
    X(dwarf_formudata)                                                                             \
    X(dwarf_hasattr)                                                                               \
    X(dwarf_nextcu)                                                                                \
    X(dwarf_offdie)                                                                                \
    X(dwarf_siblingof)                                                                             \
    X(dwarf_tag)

struct as_dw_fns {
    AS_DW_FNS(AS_DL_FIELD)
};
extern struct as_dw_fns as_dw;
extern as_dynlib as_dw_lib;

#endif
