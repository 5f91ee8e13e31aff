/* dwarf.h - prototypes of functions from DWARF (libdw): parameter names and types, so a
 * bare symbol in the config gives the same payload as a written prototype. */
#ifndef AS_DWARF_H
#define AS_DWARF_H

#include <stddef.h>

#include "proto.h"

/* Finds the DW_TAG_subprogram named func in the DWARF of path (or of its build-id debug
 * file) and converts it. Returns 0 and fills *out; -1 when there is no DWARF or no such
 * function, or when a type cannot be represented (then out is untouched). */
int as_dwarf_proto(const char *path, const char *func, as_proto *out);

/* What an earlier process found in the DWARF of path for func (dwarf_disk.h), reading no
 * DWARF: 1 with *out filled, 0 when it had no usable prototype, -1 when nothing is known
 * (then as_dwarf_proto reads the DWARF). */
int as_dwarf_proto_cached(const char *path, const char *func, as_proto *out);

/* Formats a prototype as C: "int calculator_multiply(int a, int b)". Returns length. */
int as_proto_format(const as_proto *p, const char *func, char *buf, size_t cap);

#endif
