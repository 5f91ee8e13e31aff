/* thunk.S - the x86-64 hot path of the interposer: one 16-byte stub per target, the
 * common entry that saves the argument registers and asks C where to go, and the exit
 * landing that a tracked call returns to instead of its caller.
 *
 * Symbols the C side (preload/hook/thunk.c) relies on:
 *   as_thunk_stubs .. as_thunk_stubs_end   AS_MAX_TARGETS stubs, stub i at +16*i
 *   as_thunk_exit                          the swapped-in return address
 *   as_hook_enter(id, regs, ret_slot) -> {the original, shadow frame or NULL} in rax:rdx
 *   as_hook_exit(retregs, rsp_at_landing) -> {real return address, caller's rbp} in rax:rdx
 *   as_thunk_personality                   named by the call site's CFI (exceptions)
 * The register frames are struct as_regs / struct as_retregs in thunk.h; their offsets
 * below are checked by _Static_assert in thunk.c. */
#include "asm.h"

#define AS_STUBS 4096 /* AS_MAX_TARGETS in target.h (checked in thunk.c) */

/* struct as_regs: what a call may pass in registers (SysV x86-64). */
#define R_RDI 0
#define R_RSI 8
#define R_RDX 16
#define R_RCX 24
#define R_R8 32
#define R_R9 40
#define R_RAX 48  /* al: number of vector registers used by a varargs call */
#define R_R10 56  /* static chain of nested functions */
#define R_XMM0 64 /* xmm0..xmm7, 16 bytes each, 16-byte aligned */
#define R_SIZE 192

/* struct as_retregs: what a function may return in registers (st0 is never touched). */
#define X_RAX 0
#define X_RDX 8
#define X_XMM0 16
#define X_XMM1 32
#define X_SIZE 48

    .text

/* The stubs. On arrival rsp points at the caller's return address (rsp = 8 mod 16) and
 * every argument register is live; a stub only loads its id into r11 (scratch in the ABI,
 * never an argument) and jumps. endbr64 keeps them valid indirect-branch targets under
 * CET. One FDE covers them all: none of them moves rsp. */
ENTRY(as_thunk_stubs)
    .set .Las_stub_id, 0
    .rept AS_STUBS
    .balign 16, 0xcc
    endbr64
    movl $.Las_stub_id, %r11d
    jmp as_thunk_common
    .set .Las_stub_id, .Las_stub_id + 1
    .endr
    .balign 16, 0xcc
LABEL(as_thunk_stubs_end)
END(as_thunk_stubs)

/* Restores the argument registers saved by as_thunk_common and its frame: afterwards rsp
 * points at the return slot again, exactly as the caller left it. */
.macro RESTORE_ARGS
    movq R_RDI(%rsp), %rdi
    movq R_RSI(%rsp), %rsi
    movq R_RDX(%rsp), %rdx
    movq R_RCX(%rsp), %rcx
    movq R_R8(%rsp), %r8
    movq R_R9(%rsp), %r9
    movq R_RAX(%rsp), %rax
    movq R_R10(%rsp), %r10
    movaps R_XMM0 + 0(%rsp), %xmm0
    movaps R_XMM0 + 16(%rsp), %xmm1
    movaps R_XMM0 + 32(%rsp), %xmm2
    movaps R_XMM0 + 48(%rsp), %xmm3
    movaps R_XMM0 + 64(%rsp), %xmm4
    movaps R_XMM0 + 80(%rsp), %xmm5
    movaps R_XMM0 + 96(%rsp), %xmm6
    movaps R_XMM0 + 112(%rsp), %xmm7
    movq %rbp, %rsp
    popq %rbp
.endm

/* DWARF rules for a tracked call in flight (DW_CFA_expression, register, 2 bytes of
 * expression DW_OP_breg6 OFFSET): rbp points at the shadow frame, a frame-pointer record
 * whose [rbp] is the caller's rbp and [rbp+8] the caller's real return address. */
#define CFI_RIP_AT_RBP8 .cfi_escape 0x10, 0x10, 0x02, 0x76, 0x08
#define CFI_RBP_AT_RBP0 .cfi_escape 0x10, 0x06, 0x02, 0x76, 0x00

/* Common entry. r11d = target id; stack: [rsp] = caller's return address (the slot whose
 * address we hand to C as ret_slot).
 *
 * A tracked call does not jump to the original: it drops the caller's return address
 * (kept in the shadow frame) and CALLs the original from the same stack position, so the
 * pushed return address is as_thunk_exit, written into the very same slot. Every call then
 * has its ret: the CPU's return-stack predictor stays balanced (no mispredicted return on
 * the way out, none later in the caller), and the stack the original sees is unchanged:
 * rsp = 8 mod 16, stack arguments at rsp+8. An untracked call is a plain tail jump.
 *
 * While the original runs, rbp holds the shadow frame (rbp is callee-saved, so the
 * original hands it back to the landing unchanged) and the call site's CFI finds the
 * caller's rip and rbp through it: an exception thrown by the original unwinds through
 * here into the caller, and the personality routine pops the shadow frame on the way. */
ENTRY(as_thunk_common)
    .cfi_personality 0x1b, as_thunk_personality  /* pcrel sdata4: hidden, same object */
    pushq %rbp                       /* rsp = 0 mod 16; rbp+8 = return slot */
    .cfi_adjust_cfa_offset 8
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp
    subq $R_SIZE, %rsp
    andq $-16, %rsp                  /* aligned already; kept for safety */
    movq %rdi, R_RDI(%rsp)
    movq %rsi, R_RSI(%rsp)
    movq %rdx, R_RDX(%rsp)
    movq %rcx, R_RCX(%rsp)
    movq %r8, R_R8(%rsp)
    movq %r9, R_R9(%rsp)
    movq %rax, R_RAX(%rsp)
    movq %r10, R_R10(%rsp)
    movaps %xmm0, R_XMM0 + 0(%rsp)
    movaps %xmm1, R_XMM0 + 16(%rsp)
    movaps %xmm2, R_XMM0 + 32(%rsp)
    movaps %xmm3, R_XMM0 + 48(%rsp)
    movaps %xmm4, R_XMM0 + 64(%rsp)
    movaps %xmm5, R_XMM0 + 80(%rsp)
    movaps %xmm6, R_XMM0 + 96(%rsp)
    movaps %xmm7, R_XMM0 + 112(%rsp)
    movl %r11d, %edi                 /* id */
    movq %rsp, %rsi                  /* struct as_regs * */
    leaq 8(%rbp), %rdx               /* ret_slot; ret_slot[-1] = the caller's rbp */
    call as_hook_enter               /* rax = the original, rdx = shadow frame or NULL */
    movq %rax, %r11
    testq %rdx, %rdx
    jnz 1f
    .cfi_remember_state
    RESTORE_ARGS                     /* untracked: stack exactly as the caller left it */
    .cfi_def_cfa %rsp, 8
    .cfi_same_value %rbp
    jmp *%r11                        /* stack arguments, varargs, sret pass untouched */
    .cfi_restore_state
1:  movq %rdx, (%rbp)                /* RESTORE_ARGS pops it: rbp = the shadow frame */
    RESTORE_ARGS
    .cfi_def_cfa %rsp, 8
    addq $8, %rsp                    /* the caller's return address lives in the shadow frame */
    /* The caller's rsp after the return is rsp itself (ret_slot + 8). A frame whose CFA
     * equals its callee's is taken for the caller by unwinders (libgcc would think the
     * catching frame was reached), so the CFA is put 8 bytes higher and the caller's rsp
     * given explicitly as CFA - 8. */
    .cfi_def_cfa_offset 8
    .cfi_val_offset %rsp, -8
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
    call *%r11                       /* pushes as_thunk_exit into the same slot */
END(as_thunk_common)

/* Exit landing: the instruction right after the call above (no alignment padding), also
 * the value as_hook_enter stores in the slot. Reached by the original's `ret` with rbp =
 * the shadow frame; the slot it popped (rsp - 8) is the ret_slot as_hook_enter saw, reused
 * for the real return address so that our own `ret` matches the caller's call. Until C has
 * answered, the caller's rip and rbp are found through rbp, as at the call site. Nothing
 * below touches x87: st0 survives. */
    .globl as_thunk_exit
    .hidden as_thunk_exit
    .type as_thunk_exit, @function
as_thunk_exit:
    .cfi_startproc
    .cfi_def_cfa %rsp, 8             /* as at the call site: CFA = ret_slot + 16 */
    .cfi_val_offset %rsp, -8         /* the caller's rsp = ret_slot + 8 */
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
    subq $8, %rsp                    /* back onto the ret_slot: [rsp] gets the real address */
    .cfi_adjust_cfa_offset 8
    pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_offset %rbx, -24
    movq %rsp, %rbx                  /* rbx+8 = ret_slot, rbx+16 = rsp at landing */
    .cfi_def_cfa_register %rbx       /* CFA = rbx + 24 */
    subq $X_SIZE, %rsp
    andq $-16, %rsp                  /* C needs rsp = 0 mod 16 at the call */
    movq %rax, X_RAX(%rsp)
    movq %rdx, X_RDX(%rsp)
    movaps %xmm0, X_XMM0(%rsp)
    movaps %xmm1, X_XMM1(%rsp)
    movq %rsp, %rdi                  /* struct as_retregs * */
    leaq 16(%rbx), %rsi              /* rsp at landing */
    call as_hook_exit                /* rax = real return address, rdx = caller's rbp */
    movq %rax, 8(%rbx)               /* the caller's real return address */
    .cfi_offset %rip, -16
    movq %rdx, %rbp
    .cfi_same_value %rbp
    movq X_RAX(%rsp), %rax
    movq X_RDX(%rsp), %rdx
    movaps X_XMM0(%rsp), %xmm0
    movaps X_XMM1(%rsp), %xmm1
    movq %rbx, %rsp
    .cfi_def_cfa_register %rsp
    popq %rbx                        /* rsp = ret_slot: a plain frame again */
    .cfi_def_cfa_offset 8
    .cfi_restore %rbx
    .cfi_restore %rsp
    .cfi_offset %rip, -8
    ret
END(as_thunk_exit)

    .section .note.GNU-stack, "", @progbits
