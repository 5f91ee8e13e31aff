/* asm.h - ENTRY/END macros for the x86-64 assembly of the hook layer, so every symbol is
 * hidden, typed as a function, sized, aligned, and carries CFI for unwinders. */
#ifndef AS_X86_64_ASM_H
#define AS_X86_64_ASM_H

/* A hidden global function with an FDE; END closes both. */
#define ENTRY(name)                                                                        \
    .globl name;                                                                           \
    .hidden name;                                                                          \
    .type name, @function;                                                                 \
    .balign 16;                                                                            \
    name:                                                                                  \
    .cfi_startproc

#define END(name)                                                                          \
    .cfi_endproc;                                                                          \
    .size name, .- name

/* A hidden data-less label inside code (start/end markers of the stub array). */
#define LABEL(name)                                                                        \
    .globl name;                                                                           \
    .hidden name;                                                                          \
    name:

#endif
