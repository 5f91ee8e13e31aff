/* thunk.S - the x86-64 hot path of the interposer: one 16-byte stub per target, the
 * common entry, and the exit landing that a tracked call returns to instead of its caller.
 * A call in the common case is handled here alone: the entry pushes the shadow frame and
 * takes the first timestamp, the landing takes the second and writes the record into the
 * thread's ring, with no call and only a few scratch registers saved (about 140
 * instructions per untyped call instead of 235 through C). Typed calls whose parameters
 * all come in integer registers are captured here too (values and bounded string copies
 * into the thread's arena at entry, copied behind the record at exit). A call that finds
 * its ring full (queue = drop) is counted into its function's summary here as well
 * (EXIT_SUMMARY). Every other case (float, double or struct parameters, strings the
 * kernel must read, a returned string, a thread's first call, dead frames, the ring's end,
 * a full ring whose summary needs C: a function not yet in the table, a float result
 * under an error rule, queue = wait; the clock without the TSC) saves the registers and
 * asks C (preload/hook/thunk.c), before any side effect.
 *
 * Symbols the C side (preload/hook/thunk.c) relies on:
 *   as_thunk_stubs .. as_thunk_stubs_end   AS_MAX_TARGETS stubs, stub i at +16*i
 *   as_thunk_exit                          the swapped-in return address
 *   as_hook_enter_slow(id, regs, ret_slot) -> {the original, shadow frame or NULL} in
 *                                          rax:rdx, with xmm0-7 saved in regs
 *   as_hook_exit(retregs, rsp_at_landing) -> {real return address, caller's rbp} in rax:rdx
 *   as_thunk_personality                   named by the call site's CFI (exceptions)
 *   as_thunk_full_stubs .. _end, as_thunk_full_exit, as_hook_enter_full, as_thunk_vec_mode
 *                                          the full-preservation variant (below)
 *   as_capture_vec_risk_entry(id), as_capture_vec_risk_exit() -> 0/1 in eax
 *                                          (capture.c) whether the full variant must
 *                                          save the vector state beyond xmm0-15
 *   as_hook_ts, as_targets, as_pipe_tring, as_in_agentsight, as_hook_enabled,
 *   as_clock_use_tsc, as_thunk_crc, as_capture_off  read (and the first written) by the common paths
 *   as_cap_ts, as_cap_plans, as_cap_regions, as_cap_nregions, as_cap_brk_lo (capture.c),
 *   __curbrk (glibc)                       read (as_cap_ts.top written) by the typed entry
 *                                          and exit
 * The register frames are struct as_regs / struct as_retregs in thunk.h; their offsets,
 * and those of the structures the common paths read, are checked by _Static_assert in
 * thunk.c. */
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

/* struct as_target (target.h): its size, the original, whether its calls capture, its
 * prototype. */
#define T_SIZE 80
#define T_ORIG 0
#define T_CAPTURES 76
#define T_CAPTURES_ASM 2 /* AS_CAPTURES_ASM */
#define T_PROTO 40

/* The common paths below do in assembly what enter_fast / as_hook_exit do in C for
 * the common case (no call; only the registers they use are saved: a few scratch ones on
 * the lean path, each one on the full path); every other case falls back to C before any
 * side effect. Offsets checked by _Static_assert in thunk.c. */
/* struct as_tstate, the thread's TLS block as_hook_ts (thunk.c). */
#define TS_FRAMES 0
#define TS_DEPTH 8
#define TS_CAP 12
#define TS_BUSY 16
#define TS_TID 20
#define TS_ERRNO 24
#define TS_SUMK 32 /* AS_SUM_SLOTS bytes */
/* struct as_shadow_frame (thunk.h). */
#define FR_RBP 0
#define FR_RET 8
#define FR_SLOT 16
#define FR_T0 24
#define FR_ID 32
#define FR_ERRNO 36
#define FR_CAPOFF 40     /* cap_off, cap_len */
#define FR_REPORTED 48   /* reported, ret_items */
#define FR_SIZE 56
/* struct as_cap_tstate, the thread's TLS block as_cap_ts (capture.h). */
#define CT_ARENA 0
#define CT_TOP 8
#define CT_STACK_LO 16
#define CT_STACK_HI 24
#define CT_WARM 40
/* struct as_cap_plan (capture.h), one per target in as_cap_plans. */
#define PL_PROTO 0
#define PL_NEED 8
#define PL_MAX 12
#define PL_N 18
#define PL_SRC 21
#define PL_RETSTR 37
#define PL_SIZE 40
#define AS_CAP_ARENA 524288 /* capture.h */
#define ZERO_PAGE 4096      /* PAGE in capture.c: no string lies below it */
/* struct as_ring (core/ring.h) and one record: an 8-byte header {len 64 + the items,
 * kind AS_MSG_CALL (2), tag}, struct as_callrec (hook/callrec.h), then its items. */
#define RG_HEAD 0
#define RG_PENDING 128
#define RG_LIMIT 136
#define RG_SIZE 208
#define RG_MASK 216
#define RG_DATA 4096
#define REC_BYTES 72
#define REC_KIND 2
#define REC_FLAGS 1 /* AS_CALL_RETURNED; id and flags are 16 bits each, then the sum */
#define REC_TAG_MUL 0x9E3779B97F4A7C15 /* as_ring_tag() */
/* The summary table in the ring header and one struct as_sum (core/ring.h). */
#define RG_TAIL 64
#define RG_SUMMARIZED 160
#define RG_SUMN 1668
#define RG_SUMS 1672
#define SU_ID 0
#define SU_CALLS 8
#define SU_ERRORS 16
#define SU_TOTAL 24
#define SU_MIN 32
#define SU_MAX 40
#define SU_TLAST 56
#define SU_HIST 64
#define SU_SIZE 192
#define SU_LAST_BUCKET 31 /* AS_SUM_BUCKETS - 1 */
#define AS_SUM_SLOTS 12
/* as_target_errif (hook/target.h): the kind in the low 3 bits. */
#define AS_JUDGE_C 1
#define AS_JUDGE_ZERO 3
#define AS_JUDGE_NONZERO 4
#define AS_JUDGE_NEG 5
#define AS_JUDGE_NEG_UNTYPED 6
#define AS_JUDGE_ERRNO 7
/* as_cfg.queue_policy (core/settings.h), AGENTSIGHT_QUEUE_WAIT. */
#define CFG_QPOLICY 2568
#define AS_QUEUE_WAIT 1

    .weak __curbrk                   /* glibc's program break (capture.c: cur_brk) */

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

/* Saves (store=1) or restores (store=0) xmm0-xmm7 at R_XMM0(%rsp), 16 bytes each. */
.macro XMM_LO store
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7
    .if \store
    movaps %xmm\n, R_XMM0 + 16 * \n(%rsp)
    .else
    movaps R_XMM0 + 16 * \n(%rsp), %xmm\n
    .endif
    .endr
.endm

/* Restores the integer argument registers saved by as_thunk_common and its frame:
 * afterwards rsp points at the return slot again, exactly as the caller left it. xmm0-7
 * are restored by the general entry's path itself. */
.macro RESTORE_ARGS
    movq R_RDI(%rsp), %rdi
    movq R_RSI(%rsp), %rsi
    movq R_RDX(%rsp), %rdx
    movq R_RCX(%rsp), %rcx
    movq R_R8(%rsp), %r8
    movq R_R9(%rsp), %r9
    movq R_RAX(%rsp), %rax
    movq R_R10(%rsp), %r10
    movq %rbp, %rsp
    popq %rbp
.endm

/* DWARF rules for a tracked call in flight (DW_CFA_expression, register, 2 bytes of
 * expression DW_OP_breg6 OFFSET): rbp points at the shadow frame, a frame-pointer record
 * whose [rbp] is the caller's rbp and [rbp+8] the caller's real return address. */
#define CFI_RIP_AT_RBP8 .cfi_escape 0x10, 0x10, 0x02, 0x76, 0x08
#define CFI_RBP_AT_RBP0 .cfi_escape 0x10, 0x06, 0x02, 0x76, 0x00

/* The common entry's checks and shadow frame (enter_fast in thunk.c, for the frame's
 * fixed part): the TSC in use, the thread has its shadow stack, its errno location, room
 * for a frame, and no frame above this call's (a longjmp may have left one). In: rsi = the
 * target, r11d = its id, rcx = the TLS offset of as_hook_ts, rax, rdx free; busy is set
 * here. Out: rax = the frame frames[depth], filled but for t0, nothing captured; r11 =
 * the original. A failed check jumps to 8 (busy set) or 2 (not yet). With typed=1, cap_off,
 * cap_len, reported and ret_items are left for the caller to write. */
.macro ENTRY_FILL typed=0
    cmpl $0, as_clock_use_tsc(%rip)
    je 2f
    /* busy from here, before depth is read: a signal handler's calls pass through, so
     * depth and the frames stay as read until busy is cleared (as in enter_fast). */
    movl $1, %fs:TS_BUSY(%rcx)
    movl %fs:TS_DEPTH(%rcx), %edx    /* d: frames in use */
    cmpl %fs:TS_CAP(%rcx), %edx
    jae 8f                           /* full, or no shadow stack yet */
    cmpq $0, %fs:TS_ERRNO(%rcx)
    je 8f
    imull $FR_SIZE, %edx, %eax
    addq %fs:TS_FRAMES(%rcx), %rax   /* rax = f = &frames[d] */
    testl %edx, %edx
    jz 3f
    leaq 8(%rbp), %rdx               /* the slot */
    cmpq %rdx, FR_SLOT - FR_SIZE(%rax)
    jbe 8f                           /* frames[d - 1] is not an outer call's: C drops it */
3:  movq (%rbp), %rdx
    movq %rdx, FR_RBP(%rax)          /* the caller's rbp */
    movq 8(%rbp), %rdx
    movq %rdx, FR_RET(%rax)          /* the caller's return address */
    leaq 8(%rbp), %rdx
    movq %rdx, FR_SLOT(%rax)
    movl %r11d, FR_ID(%rax)
    movq T_ORIG(%rsi), %r11          /* the original, called below */
    movq %fs:TS_ERRNO(%rcx), %rdx
    movl (%rdx), %edx
    movl %edx, FR_ERRNO(%rax)
    .if \typed == 0
    movl $-1, FR_CAPOFF(%rax)        /* nothing captured */
    movl $0, FR_CAPOFF + 4(%rax)
    movq $0, FR_REPORTED(%rax)       /* reported, ret_items */
    .endif
.endm

/* The common entry's first checks: eax = the target id (upper half zero). Out: rsi =
 * the target, rcx = the TLS offset of as_hook_ts; a call not to be tracked (tracking off,
 * our own code, a thread inside the hook) jumps to untracked. rax is changed. */
.macro ENTRY_TARGET untracked
    leaq (%rax,%rax,4), %rax
    shlq $4, %rax                    /* id * sizeof(as_target) */
    leaq as_targets(%rip), %rsi
    addq %rax, %rsi                  /* rsi = the target */
    cmpl $0, as_hook_enabled(%rip)
    je \untracked
    movq as_hook_ts@GOTTPOFF(%rip), %rcx
    movq as_in_agentsight@GOTTPOFF(%rip), %rax
    movl %fs:(%rax), %eax
    orl %fs:TS_BUSY(%rcx), %eax
    jnz \untracked
.endm

/* The common entry's end, once the frame is filled (rsi = it, rcx as above): the first
 * timestamp, errno cleared when the target has an error rule (as_target_errif:
 * the caller's value is in the frame; the exit tells what the call set, and gives the
 * caller's value back when the call set none; other calls keep errno as it is), the frame
 * counted, the landing in the slot, busy cleared, and the frame at [rbp] to be popped
 * into rbp. rax and rdx are changed. */
.macro ENTRY_STAMP landing
    rdtsc
    shlq $32, %rdx
    orq %rax, %rdx
    movq %rdx, FR_T0(%rsi)
    movl FR_ID(%rsi), %eax
    leaq as_target_errif(%rip), %rdx
    cmpb $0, (%rdx,%rax)
    je .Lstamp_errno\@
    movq %fs:TS_ERRNO(%rcx), %rax
    movl $0, (%rax)                  /* errno = 0 for the call */
.Lstamp_errno\@:
    addl $1, %fs:TS_DEPTH(%rcx)      /* d + 1: nothing changed it since (busy) */
    leaq \landing(%rip), %rax
    movq %rax, 8(%rbp)               /* the call below writes it again (see enter_fast) */
    movl $0, %fs:TS_BUSY(%rcx)
    movq %rsi, (%rbp)                /* popped into rbp: the shadow frame */
.endm

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
    /* The common case (enter_fast in thunk.c): an untyped target, or a typed one whose
     * plan the assembly serves (.Lentry_typed), tracking on and the TSC in use, a thread
     * that is not inside our code, has its shadow stack, its errno location, room for a
     * frame, and no frame above this call's (a longjmp may have left one). Four scratch
     * registers are pushed; a call not to be tracked is a tail jump (7:), anything else
     * pops them and goes to C below. */
    pushq %rax
    pushq %rdx
    pushq %rcx
    pushq %rsi
    movl %r11d, %eax
    ENTRY_TARGET 7f
    movl T_CAPTURES(%rsi), %eax
    testl %eax, %eax
    jz 5f                            /* untyped */
    cmpl $0, as_capture_off(%rip)
    jne 5f                           /* capture = off: untyped too */
    testl $T_CAPTURES_ASM, %eax
    jnz .Lentry_typed                /* typed, captured below */
    jmp 2f                           /* typed, a plan that needs C (or none made yet) */
5:  ENTRY_FILL
    movq %rax, %rsi                  /* f */
.Lentry_stamp:                       /* rsi = f, r11 = the original, rcx: as_hook_ts */
    ENTRY_STAMP as_thunk_exit
    popq %rsi
    popq %rcx
    popq %rdx
    popq %rax
    .cfi_remember_state
    popq %rbp                        /* rbp = the shadow frame, rsp = the slot */
    .cfi_def_cfa %rsp, 8
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
    jmp 6f
    .cfi_restore_state
    /* A typed call whose capture plan needs only the integer registers (AS_CAPTURES_ASM
     * in target.h): the same frame, then the items as_capture_entry_plan (capture.c)
     * writes, into the thread's arena: per parameter of the plan, a value {8, VAL, i} and
     * its register, or a string {len, STR, i, TRUNC when cut} and its bytes (NULL: {0,
     * NULL, i}; an address in the zero page: {8, BAD, i} and it), each padded to 8. The
     * string is copied 16 bytes at a time with xmm8-9, which no call passes anything in
     * (xmm0-7 may hold arguments of a varargs call the prototype does not name); only
     * memory known_len (capture.c) knows to stay readable is read. Anything else (no
     * arena or not enough of it, a string that reaches memory not known readable: the
     * general path reads it through the kernel) is found before the arena's top moves,
     * and C takes the call, as at 8. Registers: the integer arguments are pushed and
     * read back from the stack (.Lcap_arg_off at the end); r8 = the plan, r9 = where the next item
     * goes, r10 = i, rdi = the first item, rcx = the TLS offset of as_cap_ts. */
.Lentry_typed:
    ENTRY_FILL typed=1
    pushq %rdi                       /* rbp - 40 */
    pushq %r8                        /* rbp - 48 */
    pushq %r9                        /* rbp - 56 */
    pushq %r10                       /* rbp - 64 */
    pushq %rax                       /* rbp - 72: f */
    pushq %r11                       /* rbp - 80: the original */
    movl FR_ID(%rax), %edx
    imull $PL_SIZE, %edx, %edx
    leaq as_cap_plans(%rip), %r8
    addq %rdx, %r8                   /* the target's plan */
    movq PL_PROTO(%r8), %rdx
    cmpq T_PROTO(%rsi), %rdx
    jne .Lcap_none                   /* a prototype set since: C */
    movq as_cap_ts@GOTTPOFF(%rip), %rcx
    movq %fs:CT_ARENA(%rcx), %rdi
    testq %rdi, %rdi
    jz .Lcap_none
    movl %fs:CT_TOP(%rcx), %edx      /* start */
    movl PL_NEED(%r8), %eax
    addq %rdx, %rax
    cmpq $AS_CAP_ARENA, %rax
    ja .Lcap_none                    /* the arena may not hold them */
    addq %rdx, %rdi                  /* the first item */
    movq %rdi, %r9
    xorl %r10d, %r10d
    cmpb $0, PL_N(%r8)
    je .Lcap_done
.Lcap_param:
    movzbl PL_SRC(%r8,%r10), %edx    /* the register, AS_PLAN_STR */
    movl %edx, %eax
    andl $0x7f, %eax
    leaq .Lcap_arg_off(%rip), %rsi
    movsbq (%rsi,%rax), %rax
    movq (%rbp,%rax), %rsi           /* the argument */
    movq %r10, %rax
    shlq $40, %rax                   /* the item's index */
    testb $0x80, %dl
    jnz .Lcap_str
.Lcap_word:                          /* rax: index and tag; the word in rsi */
    orq $8, %rax
    btsq $32, %rax                   /* AS_CAP_VAL */
    movq %rax, (%r9)
    movq %rsi, 8(%r9)
    addq $16, %r9
.Lcap_next:
    incl %r10d
    cmpb %r10b, PL_N(%r8)
    ja .Lcap_param
.Lcap_done:
    movq -72(%rbp), %rsi             /* f */
    movq %rdi, %rax
    subq %fs:CT_ARENA(%rcx), %rax    /* cap_off */
    movq %r9, %rdx
    subq %rdi, %rdx                  /* cap_len */
    leal (%rax,%rdx), %edi
    movl %edi, %fs:CT_TOP(%rcx)      /* the arena grows */
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, FR_CAPOFF(%rsi)       /* cap_off, cap_len */
    movzbl PL_RETSTR(%r8), %eax
    shlq $32, %rax
    movq %rax, FR_REPORTED(%rsi)     /* reported 0; ret_items: a returned string is
                                        captured at exit (by C) */
    movq -64(%rbp), %r10
    movq -56(%rbp), %r9
    movq -48(%rbp), %r8
    movq -40(%rbp), %rdi
    movq -80(%rbp), %r11             /* the original */
    leaq -32(%rbp), %rsp             /* the four scratch registers on top again */
    movq as_hook_ts@GOTTPOFF(%rip), %rcx
    jmp .Lentry_stamp
.Lcap_none:                          /* nothing captured, the top unmoved: C */
    movq -72(%rbp), %rsi
    movl FR_ID(%rsi), %r11d
    movq -64(%rbp), %r10
    movq -56(%rbp), %r9
    movq -48(%rbp), %r8
    movq -40(%rbp), %rdi
    leaq -32(%rbp), %rsp
    movq as_hook_ts@GOTTPOFF(%rip), %rcx
    jmp .Lentry_c
.Lcap_bad:                           /* an address in the zero page: {8, BAD, i}, it */
    orq $8, %rax
    btsq $34, %rax                   /* AS_CAP_BAD (4) << 32 */
    movq %rax, (%r9)
    movq %rsi, 8(%r9)
    addq $16, %r9
    jmp .Lcap_next
.Lcap_str:
    testq %rsi, %rsi
    jnz .Lcs1
    btsq $32, %rax                   /* NULL: {0, AS_CAP_NULL (3), i} */
    btsq $33, %rax
    movq %rax, (%r9)
    addq $8, %r9
    jmp .Lcap_next
.Lcs1:  cmpq $ZERO_PAGE, %rsi
    jb .Lcap_bad
    /* known_len: where the memory known readable from the string on ends (r11) */
    cmpq %rsp, %rsi
    jb .Lcs2                            /* below our frame */
    movq %fs:CT_STACK_HI(%rcx), %r11
    cmpq %r11, %rsi
    jae .Lcs2                           /* above the thread's stack */
    cmpq %fs:CT_STACK_LO(%rcx), %rsp
    jae .Lcap_known                  /* on the thread's own stack, above us */
.Lcs2:  cmpq as_cap_brk_lo(%rip), %rsi   /* known (AS_CAPTURES_ASM): not 0, __curbrk there */
    jb .Lcs3
    movq __curbrk@GOTPCREL(%rip), %r11
    movq (%r11), %r11
    addq $4095, %r11
    andq $-4096, %r11                /* the heap is mapped up to the break's page */
    cmpq %r11, %rsi
    jb .Lcap_known
.Lcs3:  pushq %rax
    movl as_cap_nregions(%rip), %eax
    leaq as_cap_regions(%rip), %r11
.Lcs4:  testl %eax, %eax
    jz .Lcs5
    cmpq (%r11), %rsi
    jb .Lcs6
    cmpq 8(%r11), %rsi
    jb .Lcs7
.Lcs6:  addq $16, %r11
    decl %eax
    jmp .Lcs4
.Lcs5:  popq %rax
    jmp .Lcap_none                   /* not known readable: C reads it through the kernel */
.Lcs7:  movq 8(%r11), %r11
    popq %rax
.Lcap_known:                         /* r11 = the end of what is readable */
    subq %rsi, %r11
    movl PL_MAX(%r8), %edx
    incq %rdx                        /* max + 1 tell max bytes from more */
    cmpq %rdx, %r11
    cmovaq %rdx, %r11                /* r11 = k, the bytes that may be read */
    pushq %rax                       /* the index */
    xorl %eax, %eax                  /* n */
    subq $16, %r11                   /* r11 = the last n a block may start at */
    jb .Lck9                         /* fewer than 16: byte by byte */
.Lck1:  movdqu (%rsi,%rax), %xmm8
    pxor %xmm9, %xmm9
    pcmpeqb %xmm8, %xmm9
    pmovmskb %xmm9, %edx
    movdqu %xmm8, 8(%r9,%rax)        /* stored whole, masked again below at the NUL */
    testl %edx, %edx
    jnz .Lck2
    addq $16, %rax
    cmpq %r11, %rax
    jbe .Lck1
.Lck9:  addq $16, %r11                   /* k again; fewer than 16 left: byte by byte */
    jmp .Lck3
.Lck2:  bsfl %edx, %edx                  /* bytes before the NUL; the rest stored as zeros */
    leaq as_cap_keep_mask + 16(%rip), %r11
    subq %rdx, %r11
    movdqu (%r11), %xmm9
    pand %xmm9, %xmm8
    movdqu %xmm8, 8(%r9,%rax)
    addq %rdx, %rax                  /* the length, within one stored block: padded */
    xorl %edx, %edx                  /* not cut */
    jmp .Lcap_str_end
.Lck3:  cmpq %r11, %rax
    jae .Lck4
    movzbl (%rsi,%rax), %edx
    testl %edx, %edx
    jz .Lck5
    movb %dl, 8(%r9,%rax)
    incq %rax
    jmp .Lck3
.Lck4:  /* k bytes and no NUL: cut at max when k is max + 1, else unknown memory follows */
    movl PL_MAX(%r8), %edx
    incq %rdx
    cmpq %rdx, %r11
    jne .Lck6
    decq %rax                        /* max */
    movl $1, %edx                    /* AS_CAP_TRUNC */
    jmp .Lck7
.Lck6:  popq %rax
    jmp .Lcap_none
.Lck5:  xorl %edx, %edx
.Lck7:  movq %rax, %r11                  /* zeros up to the next multiple of 8 */
.Lck8:  testq $7, %r11
    jz .Lcap_str_end
    movb $0, 8(%r9,%r11)
    incq %r11
    jmp .Lck8
.Lcap_str_end:                       /* rax = the length, edx = TRUNC or 0 */
    shlq $48, %rdx
    orq %rax, %rdx
    popq %rax                        /* the index */
    orq %rdx, %rax
    btsq $33, %rax                   /* AS_CAP_STR (2) << 32 */
    movq %rax, (%r9)
    movl %eax, %eax                  /* the length */
    addq $15, %rax
    andq $-8, %rax                   /* header and bytes, padded */
    addq %rax, %r9
    jmp .Lcap_next
    /* Not tracked (tracking off, our own code, a thread inside the hook): a plain tail
     * jump, the stack exactly as the caller left it (as enter_fast answers). */
7:  movq T_ORIG(%rsi), %r11
    popq %rsi
    popq %rcx
    popq %rdx
    popq %rax
    .cfi_remember_state
    popq %rbp
    .cfi_def_cfa %rsp, 8
    .cfi_same_value %rbp
    jmp *%r11
    .cfi_restore_state
8:
.Lentry_c:
    movl $0, %fs:TS_BUSY(%rcx)       /* nothing written: C takes the call */
2:  popq %rsi
    popq %rcx
    popq %rdx
    popq %rax
    subq $R_SIZE, %rsp               /* rsp = 0 mod 16: rbp is */
    movq %rdi, R_RDI(%rsp)
    movq %rsi, R_RSI(%rsp)
    movq %rdx, R_RDX(%rsp)
    movq %rcx, R_RCX(%rsp)
    movq %r8, R_R8(%rsp)
    movq %r9, R_R9(%rsp)
    movq %rax, R_RAX(%rsp)
    movq %r10, R_R10(%rsp)
    /* The general entry (typed capture, first call of a thread, dead frames...): it may
     * run library code, and reads float arguments from regs: xmm0-7 are saved around it. */
    XMM_LO 1
    movl %r11d, %edi                 /* id */
    movq %rsp, %rsi                  /* struct as_regs * */
    leaq 8(%rbp), %rdx               /* ret_slot; ret_slot[-1] = the caller's rbp */
    call as_hook_enter_slow          /* rax = the original, rdx = shadow frame or NULL */
    XMM_LO 0
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
6:  .cfi_def_cfa %rsp, 8            /* rsp = the slot, rbp = the shadow frame */
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
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

/* Pops the two callee-saved scratch registers the exit's common path pushed. */
.macro EXIT_SCRATCH_POP
    popq %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore %r12
    popq %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore %rbx
.endm

/* The common exits' record (as_thunk_exit and as_thunk_full_exit): claims the ring (rdi)
 * by its protocol, checks there is room for the record of frame r10 and its cap_len bytes
 * of items before the end and the known limit, takes the second timestamp and writes the
 * header and the fields (rax/rdx of the call in r8/r9, the errno location in r11, rcx:
 * as_hook_ts). Out: r12 = the header, rbx = head after the record, edx = cap_len, r11 =
 * the record's CRC-32C so far (as_rec_call_sum in core/record.h: its words but t1, the
 * sum field read as 0; then the items, if any, then t1, by EXIT_COMMIT, which seals and
 * commits the record once the items are copied). A reservation already open jumps to busy (nothing
 * changed), no room to unclaim (rsi = head). Changes rax, rdx, rsi, r11. */
.macro EXIT_RECORD busy, unclaim
    /* The ring's reservation protocol (core/ring.h): refused while one is open (this
     * call runs in a signal handler that interrupted a write: C drops and counts), else
     * claimed before head is read. */
    movq RG_PENDING(%rdi), %rsi
    cmpq RG_HEAD(%rdi), %rsi
    jne \busy
    movq $-1, RG_PENDING(%rdi)       /* AS_RING_CLAIMED */
    movq RG_HEAD(%rdi), %rsi         /* head: bytes committed */
    movq %rsi, %r12
    andq RG_MASK(%rdi), %r12         /* its offset in the data */
    movl FR_CAPOFF + 4(%r10), %eax   /* cap_len: bytes of items */
    leaq REC_BYTES(%r12,%rax), %rbx
    cmpq RG_SIZE(%rdi), %rbx
    ja \unclaim                /* the record would pass the end: C pads */
    leaq REC_BYTES(%rsi,%rax), %rbx  /* head after the record */
    cmpq RG_LIMIT(%rdi), %rbx
    ja \unclaim                /* full as far as we know: C reads the tail */
    leaq RG_DATA(%rdi,%r12), %r12    /* the header */
    movabsq $REC_TAG_MUL, %rdx
    imulq %rsi, %rdx
    shrq $48, %rdx                   /* the tag of position head */
    shlq $16, %rdx
    orq $REC_KIND, %rdx
    shlq $32, %rdx
    addl $(REC_BYTES - 8), %eax
    orq %rax, %rdx
    movq %rdx, (%r12)                /* {len: the record and its items, kind, tag} */
    /* The checks are done: the timestamp (rdtsc costs as much as all of them). */
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax                   /* rax = t1 */
    movq %rax, 40(%r12)              /* t1 */
    movl FR_ERRNO(%r10), %edx        /* the caller's errno */
    movl %edx, 20(%r12)              /* errno_in */
    movl (%r11), %esi                /* errno now: what the call set, 0 for none */
    movl %esi, 24(%r12)              /* errno_out */
    testl %esi, %esi
    jnz 1f
    movl FR_ID(%r10), %edx
    leaq as_target_errif(%rip), %rsi
    cmpb $0, (%rsi,%rdx)
    je 2f                            /* errno was not cleared: the call left it so */
    movl FR_ERRNO(%r10), %edx
    movl %edx, (%r11)                /* the call set none: the caller's value back */
2:  movl FR_ERRNO(%r10), %edx        /* errno_in and errno_out (0) again, for the sum */
    xorl %esi, %esi
1:  /* The checksum, word by word from the values in hand (a word read back from two
     * 4-byte stores would wait for them: no store forwarding). */
    movl FR_ID(%r10), %eax
    orl $(REC_FLAGS << 16), %eax     /* id, flags: AS_CALL_RETURNED */
    movl %eax, 8(%r12)
    movl $-1, %r11d
    crc32q %rax, %r11                /* word 0: id, flags, sum read as 0 */
    shlq $32, %rdx                   /* errno_in << 32 */
    movl %fs:TS_TID(%rcx), %eax
    movl %eax, 16(%r12)              /* tid */
    orq %rax, %rdx
    crc32q %rdx, %r11                /* word 1: tid, errno_in */
    movl FR_CAPOFF + 4(%r10), %edx
    movl %edx, 28(%r12)              /* ext: cap_len */
    shlq $32, %rdx
    orq %rdx, %rsi
    crc32q %rsi, %r11                /* word 2: errno_out, ext */
    movq FR_T0(%r10), %rsi
    movq %rsi, 32(%r12)              /* t0 */
    crc32q %rsi, %r11                /* word 3 */
    movq %r8, 48(%r12)               /* rax */
    crc32q %r8, %r11
    movq %r9, 56(%r12)               /* rdx */
    crc32q %r9, %r11
    movq %xmm0, %rsi
    movq %rsi, 64(%r12)              /* xmm0 */
    crc32q %rsi, %r11                /* word 7 */
    movl FR_CAPOFF + 4(%r10), %edx   /* cap_len */
.endm

/* Seals (its sum: r11) and commits the record EXIT_RECORD wrote. */
.macro EXIT_COMMIT
    crc32q 40(%r12), %r11            /* t1 last: the only word that waits for rdtsc */
    movl %r11d, 12(%r12)             /* sum */
    movq %rbx, RG_PENDING(%rdi)      /* nothing open once head is stored: */
    movq %rbx, RG_HEAD(%rdi)         /* commit, a release store on x86-64 */
.endm

/* The common exits' full ring (as_thunk_exit and as_thunk_full_exit), once EXIT_RECORD
 * found no room and gave its claim back (rdi = the ring, rsi = head, eax = cap_len, r10 =
 * the frame, rcx: as_hook_ts, rbx and r12 saved): under queue = drop the call is counted
 * into its function's summary in the ring header (as_ring_sum_add in core/ring.h) when
 * the table has that function already, its error rule (if any) judged as C would,
 * errno as the C exit leaves it, for no more than a record costs, and a typed call's
 * arena space is freed; then jumps to done. Anything else (room after all, the end of
 * data, a new function, a float result under an error rule, the first summary of the
 * process, queue = wait) jumps to unbusy, nothing changed but the cached limit.
 * Changes rax, rdx, rsi, rbx, r11, r12 (no vector register). */
.macro EXIT_SUMMARY unbusy, done
    cmpl $AS_QUEUE_WAIT, as_cfg + CFG_QPOLICY(%rip)
    je \unbusy
    leaq REC_BYTES(%rsi,%rax), %rbx  /* head after the record, padding aside */
    movq RG_TAIL(%rdi), %rdx
    addq RG_SIZE(%rdi), %rdx         /* the consumer's tail + size: the real limit */
    movq %rdx, RG_LIMIT(%rdi)
    cmpq %rdx, %rbx
    jbe \unbusy
    movq as_thunk_sum_mult(%rip), %r12
    testq %r12, %r12
    jz \unbusy
    movl FR_ID(%r10), %eax
    leaq as_target_errif(%rip), %rdx
    movzbl (%rdx,%rax), %edx         /* its error rule's judge: kind, bytes above the value */
    cmpb $AS_JUDGE_C, %dl
    je \unbusy
    cmpl $AS_SUM_SLOTS, RG_SUMN(%rdi)
    ja \unbusy                       /* never: the slot indexes as_tstate.sum_k below */
    addl $1, %eax                    /* the table holds id + 1 */
    leaq RG_SUMS(%rdi), %rbx
    xorl %esi, %esi                  /* i: the slot */
.Lsum_next\@:
    cmpl RG_SUMN(%rdi), %esi
    jae \unbusy
    cmpl %eax, SU_ID(%rbx)
    je .Lsum_add\@
    addq $SU_SIZE, %rbx
    addl $1, %esi
    jmp .Lsum_next\@
.Lsum_add\@:                         /* rbx = the function's summary, esi = its slot */
    /* The error rule (as_callrec_failed): whether the call failed, from rax (r8) and
     * errno; then errno gets the caller's value back when the call set none (only
     * targets with a rule clear it at entry). */
    testb %dl, %dl
    jz .Lsum_judged\@               /* no rule: never failed, errno as the call left it */
    movl %edx, %eax
    shrl $3, %eax                    /* AS_JUDGE_DROP_SHIFT */
    andl $7, %edx                    /* the kind */
    leaq as_thunk_judge_mask(%rip), %r11
    movq (%r11,%rax,8), %rax         /* the bits of rax that hold the value */
    xorl %r11d, %r11d                /* failed: 0 */
    cmpb $AS_JUDGE_ZERO, %dl
    je .Ljzero\@
    cmpb $AS_JUDGE_NONZERO, %dl
    je .Ljnonzero\@
    cmpb $AS_JUDGE_NEG, %dl
    je .Ljneg\@
    cmpb $AS_JUDGE_NEG_UNTYPED, %dl
    je .Ljnegu\@
    cmpb $AS_JUDGE_ERRNO, %dl
    jne .Ljudged\@                  /* AS_JUDGE_NEVER */
    movq %fs:TS_ERRNO(%rcx), %rax
    cmpl $0, (%rax)                  /* the call set errno */
    setne %r11b
    jmp .Ljudged\@
.Ljzero\@:
    testq %rax, %r8                  /* the value is 0 */
    setz %r11b
    jmp .Ljudged\@
.Ljnonzero\@:
    testq %rax, %r8
    setnz %r11b
    jmp .Ljudged\@
.Ljneg\@:
    movq %rax, %rdx
    shrq $1, %rdx
    xorq %rdx, %rax                  /* the value's sign bit */
    testq %rax, %r8
    setnz %r11b
    jmp .Ljudged\@
.Ljnegu\@:
    movq %r8, %rax                   /* as_untyped_int: an int when the upper half is 0 */
    shrq $32, %rax
    jnz .Ljnegu64\@
    testl %r8d, %r8d
    sets %r11b
    jmp .Ljudged\@
.Ljnegu64\@:
    testq %r8, %r8
    sets %r11b
.Ljudged\@:
    addq %r11, SU_ERRORS(%rbx)
    movq %fs:TS_ERRNO(%rcx), %rax
    cmpl $0, (%rax)
    jne .Lsum_judged\@
    movl FR_ERRNO(%r10), %edx
    movl %edx, (%rax)                /* the call set none: the caller's value back */
.Lsum_judged\@:
    movzbl %fs:TS_SUMK(%rcx,%rsi), %r11d /* h: the slot's bucket hint (below) */
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax                   /* t1 */
    movq %rax, SU_TLAST(%rbx)
    subq FR_T0(%r10), %rax
    jnc .Lsum_dur\@
    xorl %eax, %eax                  /* t1 before t0: 0 */
.Lsum_dur\@:
    mulq %r12
    shrdq $32, %rdx, %rax            /* ns = ticks * as_thunk_sum_mult >> 32 */
    addq $1, SU_CALLS(%rbx)
    addq %rax, SU_TOTAL(%rbx)
    cmpq SU_MIN(%rbx), %rax
    jae .Lsum_min\@
    movq %rax, SU_MIN(%rbx)
.Lsum_min\@:
    cmpq SU_MAX(%rbx), %rax
    jbe .Lsum_max\@
    movq %rax, SU_MAX(%rbx)
.Lsum_max\@:
    orq $1, %rax
    bsrq %rax, %rdx                  /* k = log2 (bucket 0 also holds 0 ns) */
    cmpl $SU_LAST_BUCKET, %edx
    jbe .Lsum_bucket\@
    movl $SU_LAST_BUCKET, %edx
.Lsum_bucket\@:
    /* hist[k]++ through the slot's hint h (0..30, per thread: as_tstate.sum_k), read
     * before the timestamp: k is h or h + 1, so hist[h] += 1 - (k - h) and
     * hist[h + 1] += k - h, two counters whose address is known long before k is. A
     * counter picked by k itself, known only once the timestamp is in, made the next
     * call's loads wait on, or be replayed behind, a store whose address came last:
     * about a quarter of the call's cost in the full-ring bench when durations straddle
     * a bucket edge. Any other k is counted at its own address, once, and moves h so
     * that the window holds k. */
    movl %edx, %eax
    subl %r11d, %eax                 /* k - h */
    cmpl $1, %eax
    ja .Lsum_far\@
    addl %eax, SU_HIST + 4(%rbx,%r11,4)
    xorl $1, %eax
    addl %eax, SU_HIST(%rbx,%r11,4)
.Lsum_counted\@:
    addq $1, RG_SUMMARIZED(%rdi)
    movq $0, RG_LIMIT(%rdi)          /* the next write moves the table into the ring (C) */
    movl FR_CAPOFF(%r10), %esi       /* a typed call's arena space is freed */
    cmpl $-1, %esi
    je \done
    movq as_cap_ts@GOTTPOFF(%rip), %rdx
    cmpl %fs:CT_TOP(%rdx), %esi
    ja \done
    movl %esi, %fs:CT_TOP(%rdx)
    jmp \done
.Lsum_far\@:                         /* k outside h, h + 1: counted at its address */
    addl $1, SU_HIST(%rbx,%rdx,4)
    cmpl %edx, %r11d                 /* carry: h < k */
    sbbl $0, %edx                    /* h = k - 1 above the window, k below it (<= 30) */
    movb %dl, %fs:TS_SUMK(%rcx,%rsi)
    jmp .Lsum_counted\@
.endm

/* Exit landing: the instruction right after the call above (no alignment padding), also
 * the value the entry stores in the slot. Reached by the original's `ret` with rbp =
 * the shadow frame; the slot it popped (rsp - 8) is the ret_slot the entry saw, reused
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
    /* The common case (as_hook_exit and exit_typed): the TSC in use, the returning call
     * is the top frame, not reported, returns no string or struct to capture, no hole
     * lies below it, the thread has its ring (with room for the record before its end),
     * thread id and errno location, and is not inside our code. The return registers wait
     * in r8/r9 (caller-saved: free once the original returned); xmm0-1 and st0 are not
     * touched (xmm2-3 are: caller-saved, and no return value). A typed call's items (cap_len
     * bytes in the thread's arena at cap_off, padded to 8) follow its record, whose ext
     * says how many; their arena space is freed. Anything else restores rax/rdx and goes
     * to C below, before any side effect. */
    cmpl $0, as_clock_use_tsc(%rip)
    je 9f
    cmpb $0, as_thunk_crc(%rip)      /* the record's checksum needs the crc32 instruction */
    je 9f
    movq as_hook_ts@GOTTPOFF(%rip), %rcx
    cmpl $0, %fs:TS_BUSY(%rcx)
    jne 9f
    /* busy from here, before depth is read: a signal handler's calls pass through, so
     * the frames and the ring stay as read until busy is cleared (as in as_hook_exit) */
    movl $1, %fs:TS_BUSY(%rcx)
    movq %rax, %r8
    movq %rdx, %r9
    movl %fs:TS_DEPTH(%rcx), %esi    /* k: frames in use */
    testl %esi, %esi
    jz 4f
    imull $FR_SIZE, %esi, %r10d
    addq %fs:TS_FRAMES(%rcx), %r10
    subq $FR_SIZE, %r10              /* r10 = f = &frames[k - 1] */
    cmpq %rsp, FR_SLOT(%r10)         /* rsp = the slot */
    jne 4f
    cmpq $0, FR_REPORTED(%r10)       /* reported, or a returned string to capture */
    jne 4f
    cmpl $1, %esi
    je 7f
    cmpq $0, FR_SLOT - FR_SIZE(%r10) /* a hole below: C pops it */
    je 4f
7:  movq as_pipe_tring@GOTTPOFF(%rip), %rdi
    movq %fs:(%rdi), %rdi            /* the thread's ring */
    testq %rdi, %rdi
    jz 4f
    movq %fs:TS_ERRNO(%rcx), %r11
    testq %r11, %r11
    jz 4f
    cmpl $0, %fs:TS_TID(%rcx)
    je 4f
    movl FR_CAPOFF(%r10), %edx
    cmpl $-1, %edx
    je 3f                            /* untyped: no items (cap_len 0) */
    movq as_cap_ts@GOTTPOFF(%rip), %rax
    cmpq $0, %fs:CT_ARENA(%rax)
    je 4f
    movl FR_CAPOFF + 4(%r10), %eax
    leaq 2 * REC_BYTES(%rax,%rax), %rax
    cmpq RG_SIZE(%rdi), %rax
    ja 4f                            /* more than half the ring (as_ring_fits): C drops the items */
3:  pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_offset %rbx, -24
    pushq %r12
    .cfi_adjust_cfa_offset 8
    .cfi_offset %r12, -32
    EXIT_RECORD .Lexit_unbusy, .Lexit_unclaim
    /* A typed call's arena space is freed (the arena is a stack: what lies above it was
     * left by frames dropped before), and its cap_len bytes of items (a multiple of 8)
     * copied from the arena at cap_off. */
    movl FR_CAPOFF(%r10), %esi
    cmpl $-1, %esi
    je 5f                            /* untyped */
    movq as_cap_ts@GOTTPOFF(%rip), %rax
    cmpl %fs:CT_TOP(%rax), %esi
    ja 1f
    movl %esi, %fs:CT_TOP(%rax)
1:  testl %edx, %edx
    jz 5f                            /* no items */
    addq %fs:CT_ARENA(%rax), %rsi    /* the items */
    xorl %eax, %eax
2:  movq (%rsi,%rax), %xmm2          /* 8 bytes at a time, into the checksum too */
    movq %xmm2, REC_BYTES(%r12,%rax)
    crc32q (%rsi,%rax), %r11
    addq $8, %rax
    cmpq %rdx, %rax
    jb 2b
5:  EXIT_COMMIT
.Lexit_done:                         /* also the end of a summarized call (below) */
    /* the caller's return address and rbp out of the frame before it is freed */
    movq FR_RET(%r10), %rsi
    movq FR_RBP(%r10), %rdi
    movq %rsi, 16(%rsp)              /* the caller's real return address */
    .cfi_remember_state
    .cfi_offset %rip, -16
    movq %rdi, %rbp
    .cfi_same_value %rbp
    subl $1, %fs:TS_DEPTH(%rcx)      /* k - 1: nothing changed it since (busy) */
    movl $0, %fs:TS_BUSY(%rcx)
    EXIT_SCRATCH_POP
    movq %r8, %rax
    movq %r9, %rdx
    .cfi_def_cfa_offset 8            /* rsp = the slot: a plain frame again */
    .cfi_restore %rsp
    .cfi_offset %rip, -8
    ret
    .cfi_restore_state
.Lexit_unclaim:
    movq %rsi, RG_PENDING(%rdi)      /* = head: nothing open */
    EXIT_SUMMARY .Lexit_unbusy, .Lexit_done
.Lexit_unbusy:
    EXIT_SCRATCH_POP
4:  movq %r8, %rax                   /* back to C, as at the landing */
    movq %r9, %rdx
    movl $0, %fs:TS_BUSY(%rcx)      /* nothing written: C takes the call */
9:  pushq %rbx
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

/* ---------------------------------------------------------------------------------
 * The full-preservation variant, for entry-patched functions (preload/hook/entry.c).
 *
 * A caller that calls a static or otherwise non-interposable function directly may, with
 * gcc's -fipa-ra, keep values in any caller-saved register the callee does not touch
 * (rdi across `mov $0x12,%eax; ret`). So on this path nothing the original would have
 * left alone may change: every GPR but rsp and rbp reaches the original exactly as the
 * caller set it, every GPR and vector register reaches the caller exactly as the original
 * left it, and rbp is the caller's again on both sides. The stubs use no register (they
 * push the id), and the original is called through memory, not through r11.
 *
 * Vector state. Invariant: the C code both sides call is built without AVX, so it only
 * touches xmm0-15, through legacy SSE encodings that leave the ymm/zmm upper halves,
 * zmm16-31 and k0-7 untouched, and on its common path it calls no library routine (the
 * AVX2/EVEX memcpy, strlen... of glibc use ymm16-31 and k registers). So on the paths
 * through C xmm0-15 are saved always (the assembly's own common paths touch no vector
 * register; the exit reads xmm0), and the rest only when as_capture_vec_risk_entry/exit (capture.c, which
 * lists what the C side may reach) say this call may leave the common path: a thread's
 * first call, typed items to copy. That rest is then saved by hand, as wide as the CPU
 * makes it (as_thunk_vec_mode, set once by thunk.c: 0 = nothing more, 1 = ymm0-15 (AVX),
 * 2 = zmm0-31 and k0-7); XSAVE costs ~120 ns a pair on the machines we measured. The
 * helper itself is library-free C: it may change the low xmm halves before the wide
 * store, so the restore writes the wide registers first and the saved xmm0-15 over them
 * with legacy movaps, which keeps the upper halves just restored. Flags are not kept (a
 * call clobbers them); DF is 0 on both sides, as the ABI guarantees to us. */

/* The full frame, from the 16-byte aligned rsp: struct as_regs first (what C reads),
 * then the rest. The top 16 bytes stay free: the entry parks rax, later the original's
 * address, at rbp - 8, which may fall there. */
#define F_R11 R_SIZE             /* 192 */
#define F_ID (R_SIZE + 8)        /* 200: the target id across the risk test */
#define F_WIDE (R_SIZE + 12)     /* 204: 1 when the wide registers were saved */
#define F_XMM8 (R_SIZE + 16)     /* xmm8..15: 208 .. 336 */
#define F_VEC (F_XMM8 + 128)     /* 336: ymm0-15 (512) or zmm0-31 (2048) + k0-7 (64) */
#define F_KREG (F_VEC + 2048)    /* 2384 */
#define F_SIZE (F_KREG + 64 + 16) /* 2464, a multiple of 16 */

/* The exit frame: struct as_retregs first, then every other caller-saved register. */
#define XF_RCX X_SIZE            /* 48 */
#define XF_RSI (X_SIZE + 8)
#define XF_RDI (X_SIZE + 16)
#define XF_R8 (X_SIZE + 24)
#define XF_R9 (X_SIZE + 32)
#define XF_R10 (X_SIZE + 40)
#define XF_R11 (X_SIZE + 48)     /* 96 */
#define XF_WIDE (X_SIZE + 56)    /* 104: 1 when the wide registers were saved */
#define XF_XMM2 (X_SIZE + 64)    /* xmm2..15: 112 .. 336 */
#define XF_VEC (XF_XMM2 + 224)   /* 336, as F_VEC */
#define XF_KREG (XF_VEC + 2048)
#define XF_SIZE (XF_KREG + 64)   /* 2448 */

/* Saves (store=1) or restores (store=0) the vector registers the mode covers at
 * base(%rsp), when the frame's flag byte at wide(%rsp) is set. xmm0-15 themselves are
 * moved by the callers (they also fill the C frames). */
.macro VEC_WIDE store, vec, kreg, wide
    cmpb $0, \wide(%rsp)
    je .Lvw_done\@
    cmpb $1, as_thunk_vec_mode(%rip)
    jb .Lvw_done\@
    ja .Lvw_512\@
    .irp r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .if \store
    vmovdqu %ymm\r, \vec + 32 * \r(%rsp)
    .else
    vmovdqu \vec + 32 * \r(%rsp), %ymm\r
    .endif
    .endr
    jmp .Lvw_done\@
.Lvw_512\@:
    .irp r, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    .if \store
    vmovdqu64 %zmm\r, \vec + 64 * \r(%rsp)
    .else
    vmovdqu64 \vec + 64 * \r(%rsp), %zmm\r
    .endif
    .endr
    .irp r, 0, 1, 2, 3, 4, 5, 6, 7
    .if \store
    kmovq %k\r, \kreg + 8 * \r(%rsp)
    .else
    kmovq \kreg + 8 * \r(%rsp), %k\r
    .endif
    .endr
.Lvw_done\@:
.endm

/* The full stubs: endbr64; push $id; jmp as_thunk_full_common (14 bytes, 16 apart). On
 * arrival rsp points at the caller's return address; after the push at the id. */
ENTRY(as_thunk_full_stubs)
    .set .Las_fstub_id, 0
    .rept AS_STUBS
7:  endbr64
    pushq $.Las_fstub_id
    .cfi_adjust_cfa_offset 8
    jmp as_thunk_full_common
    .cfi_adjust_cfa_offset -8
    .org 7b + 16, 0xcc               /* fails to assemble if a stub outgrew 16 bytes */
    .set .Las_fstub_id, .Las_fstub_id + 1
    .endr
    .balign 16, 0xcc
LABEL(as_thunk_full_stubs_end)
END(as_thunk_full_stubs)

/* Saves (store=1) or restores (store=0) xmm8-xmm15 at F_XMM8(%rsp), 16 bytes each. */
.macro XMM_HI store
    .irp n, 8, 9, 10, 11, 12, 13, 14, 15
    .if \store
    movaps %xmm\n, F_XMM8 + 16 * (\n - 8)(%rsp)
    .else
    movaps F_XMM8 + 16 * (\n - 8)(%rsp), %xmm\n
    .endif
    .endr
.endm

/* Restores every register the full entry saved, and rsp/rbp: afterwards rsp points at
 * the return slot, exactly as the caller left it, and rbp is what [rbp] held. */
.macro FULL_RESTORE
    VEC_WIDE 0, F_VEC, F_KREG, F_WIDE    /* first: the xmm halves are written over them */
    movq R_RSI(%rsp), %rsi
    movq R_RDX(%rsp), %rdx
    movq R_RCX(%rsp), %rcx
    movq R_R8(%rsp), %r8
    movq R_R9(%rsp), %r9
    movq R_R10(%rsp), %r10
    movq F_R11(%rsp), %r11
    XMM_LO 0
    XMM_HI 0
    movq R_RAX(%rsp), %rax
    movq R_RDI(%rsp), %rdi
    movq %rbp, %rsp
    popq %rbp
.endm

/* Common full entry. Stack: [rsp] = target id (pushed by the stub), [rsp+8] = the
 * caller's return address. The id's slot is reused for the caller's rbp, so from then on
 * the frame is the one the lean path builds: [rbp] = caller's rbp, rbp+8 = return slot.
 * rax is parked below rsp (the red zone: free at a function entry, kept by signals). */
ENTRY(as_thunk_full_common)
    .cfi_personality 0x1b, as_thunk_personality
    .cfi_adjust_cfa_offset 8             /* CFA = rsp + 16: the stub's push */
    movq %rax, -8(%rsp)                  /* becomes -8(%rbp) */
    movq (%rsp), %rax                    /* the id */
    movq %rbp, (%rsp)                    /* the id's slot now holds the caller's rbp */
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp           /* CFA = rbp + 16, as in the lean path */
    /* The common untyped case, with the checks and frame of as_thunk_common's: rdx, rcx,
     * rsi and r11 are pushed below the caller's rax, and every register the original sees
     * is the caller's again; the original goes to rbp - 8 for the call below. Typed
     * targets (those the lean path captures in assembly too) and untracked calls go to C
     * (2:, or 8: once busy is set), which saves every register. */
    leaq -8(%rbp), %rsp                  /* [rbp - 8]: the caller's rax */
    pushq %rdx
    pushq %rcx
    pushq %rsi
    pushq %r11
    movl %eax, %r11d                     /* the id */
    ENTRY_TARGET 2f
    cmpl $0, T_CAPTURES(%rsi)
    je 5f
    cmpl $0, as_capture_off(%rip)
    je 2f                                /* typed: C captures */
5:  ENTRY_FILL
    movq %rax, %rsi                      /* f */
    ENTRY_STAMP as_thunk_full_exit
    movq -8(%rbp), %rax                  /* the caller's rax */
    movq %r11, -8(%rbp)                  /* = ret_slot - 16: the original, for the call */
    popq %r11
    popq %rsi
    popq %rcx
    popq %rdx
    leaq 8(%rsp), %rsp                   /* rsp = rbp */
    .cfi_remember_state
    popq %rbp                            /* rbp = the shadow frame, rsp = the slot */
    .cfi_def_cfa %rsp, 8
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
    jmp .Lfull_call
    .cfi_restore_state
8:  movl $0, %fs:TS_BUSY(%rcx)          /* nothing written: C takes the call */
2:  movl %r11d, %eax                     /* the id, as below */
    popq %r11
    popq %rsi
    popq %rcx
    popq %rdx
    leaq 8(%rsp), %rsp                   /* rsp = rbp; [rbp - 8] still the caller's rax */
    subq $F_SIZE, %rsp
    andq $-16, %rsp                      /* C needs rsp = 0 mod 16 */
    movq %rdi, R_RDI(%rsp)
    movl %eax, %edi                      /* id */
    movq -8(%rbp), %rax                  /* the caller's rax */
    movq %rax, R_RAX(%rsp)
    movq %rsi, R_RSI(%rsp)
    movq %rdx, R_RDX(%rsp)
    movq %rcx, R_RCX(%rsp)
    movq %r8, R_R8(%rsp)
    movq %r9, R_R9(%rsp)
    movq %r10, R_R10(%rsp)
    movq %r11, F_R11(%rsp)
    XMM_LO 1
    XMM_HI 1
    movl %edi, F_ID(%rsp)
    movb $0, F_WIDE(%rsp)
    cmpb $0, as_thunk_vec_mode(%rip)
    je 2f                                /* no wider registers on this CPU */
    call as_capture_vec_risk_entry       /* edi = id; eax = 1: save the wide state */
    movb %al, F_WIDE(%rsp)
    VEC_WIDE 1, F_VEC, F_KREG, F_WIDE
2:  movl F_ID(%rsp), %edi                /* id */
    movq %rsp, %rsi                      /* struct as_regs * */
    leaq 8(%rbp), %rdx                   /* ret_slot; ret_slot[-1] = the caller's rbp */
    call as_hook_enter_full              /* rax = the original, rdx = shadow frame or NULL */
    movq %rax, -8(%rbp)                  /* = ret_slot - 16: read below rsp after restore */
    testq %rdx, %rdx
    jnz 1f
    .cfi_remember_state
    FULL_RESTORE                         /* rsp = ret_slot */
    .cfi_def_cfa %rsp, 8
    .cfi_same_value %rbp
    jmp *-16(%rsp)                       /* untracked: a tail jump, no register used */
    .cfi_restore_state
1:  movq %rdx, (%rbp)                    /* FULL_RESTORE pops it: rbp = the shadow frame */
    FULL_RESTORE
    .cfi_def_cfa %rsp, 8
.Lfull_call:                             /* rsp = the slot, rbp = the shadow frame */
    CFI_RIP_AT_RBP8                      /* the slot already holds the landing */
    CFI_RBP_AT_RBP0
    leaq 8(%rsp), %rsp                   /* the return address lives in the shadow frame */
    .cfi_def_cfa_offset 8                /* the same rules as the lean call site */
    .cfi_val_offset %rsp, -8
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
    call *-24(%rsp)                      /* the original (ret_slot - 16); pushes the landing */
END(as_thunk_full_common)

/* Pushes / pops a register in the full exit's common path (the CFA is rsp-based there). */
#define FX_SAVED 56 /* the seven registers pushed first */
.macro FX_PUSH r
    pushq %\r
    .cfi_adjust_cfa_offset 8
.endm
.macro FX_POP r
    popq %\r
    .cfi_adjust_cfa_offset -8
.endm
/* The seven caller-saved registers the full exit's common path uses, rax/rdx aside. */
.macro FX_PUSH_SCRATCH
    .irp r, rcx, rsi, rdi, r8, r9, r10, r11
    FX_PUSH \r
    .endr
.endm
.macro FX_POP_SCRATCH
    .irp r, r11, r10, r9, r8, rdi, rsi, rcx
    FX_POP \r
    .endr
.endm
/* rbx and r12, pushed after them (their saves described to the unwinder). */
.macro FX_POP_RBX_R12
    FX_POP r12
    .cfi_restore %r12
    FX_POP rbx
    .cfi_restore %rbx
.endm

/* Full exit landing: right after the call above. As as_thunk_exit, but every
 * caller-saved register (and the wide vector state) comes back as the original left it;
 * callee-saved ones are kept by C itself, rbx by the push. */
    .globl as_thunk_full_exit
    .hidden as_thunk_full_exit
    .type as_thunk_full_exit, @function
as_thunk_full_exit:
    .cfi_startproc
    .cfi_def_cfa %rsp, 8
    .cfi_val_offset %rsp, -8
    CFI_RIP_AT_RBP8
    CFI_RBP_AT_RBP0
    leaq -8(%rsp), %rsp                  /* back onto the ret_slot */
    .cfi_adjust_cfa_offset 8
    /* The common untyped case of as_thunk_exit, with every register it uses pushed first
     * (rcx, rsi, rdi, r8-r11 here, rbx and r12 below) and popped before the ret: the same
     * checks, and on this thread a full exit has already been through C once when the CPU
     * has wider vector registers (its as_cap_ts.warm, which the full entry's vector-state
     * rule reads). Anything else pops them and goes to C (.Lfx_c), before any side
     * effect. */
    FX_PUSH_SCRATCH                      /* the slot is at rsp + FX_SAVED */
    cmpl $0, as_clock_use_tsc(%rip)
    je .Lfx_c
    cmpb $0, as_thunk_crc(%rip)
    je .Lfx_c
    cmpb $0, as_thunk_vec_mode(%rip)
    je 6f                                /* no wider registers: no rule to feed */
    movq as_cap_ts@GOTTPOFF(%rip), %rcx
    cmpl $0, %fs:CT_WARM(%rcx)
    je .Lfx_c
6:  movq as_hook_ts@GOTTPOFF(%rip), %rcx
    cmpl $0, %fs:TS_BUSY(%rcx)
    jne .Lfx_c
    movl $1, %fs:TS_BUSY(%rcx)          /* before depth is read (as in as_thunk_exit) */
    movq %rax, %r8
    movq %rdx, %r9
    movl %fs:TS_DEPTH(%rcx), %esi
    testl %esi, %esi
    jz .Lfx_unbusy
    imull $FR_SIZE, %esi, %r10d
    addq %fs:TS_FRAMES(%rcx), %r10
    subq $FR_SIZE, %r10                  /* r10 = f = &frames[k - 1] */
    leaq FX_SAVED(%rsp), %rdi            /* the slot */
    cmpq %rdi, FR_SLOT(%r10)
    jne .Lfx_unbusy
    cmpl $-1, FR_CAPOFF(%r10)            /* typed: C copies the items */
    jne .Lfx_unbusy
    cmpq $0, FR_REPORTED(%r10)
    jne .Lfx_unbusy
    cmpl $1, %esi
    je 7f
    cmpq $0, FR_SLOT - FR_SIZE(%r10)     /* a hole below: C pops it */
    je .Lfx_unbusy
7:  movq as_pipe_tring@GOTTPOFF(%rip), %rdi
    movq %fs:(%rdi), %rdi                /* the thread's ring */
    testq %rdi, %rdi
    jz .Lfx_unbusy
    movq %fs:TS_ERRNO(%rcx), %r11
    testq %r11, %r11
    jz .Lfx_unbusy
    cmpl $0, %fs:TS_TID(%rcx)
    je .Lfx_unbusy
    FX_PUSH rbx
    .cfi_offset %rbx, -80
    FX_PUSH r12
    .cfi_offset %r12, -88
    EXIT_RECORD .Lfx_pop2, .Lfx_unclaim /* frame r10 is untyped: no items */
    EXIT_COMMIT
.Lfx_done:                               /* also the end of a summarized call (below) */
    movq FR_RET(%r10), %rsi
    movq FR_RBP(%r10), %rdi
    movq %rsi, FX_SAVED + 16(%rsp)       /* the caller's real return address, in the slot */
    .cfi_remember_state
    .cfi_offset %rip, -16
    movq %rdi, %rbp
    .cfi_same_value %rbp
    subl $1, %fs:TS_DEPTH(%rcx)
    movl $0, %fs:TS_BUSY(%rcx)
    FX_POP_RBX_R12
    movq %r8, %rax
    movq %r9, %rdx
    FX_POP_SCRATCH
    .cfi_def_cfa_offset 8                /* rsp = the slot: a plain frame again */
    .cfi_restore %rsp
    .cfi_offset %rip, -8
    ret
    .cfi_restore_state
.Lfx_unclaim:
    movq %rsi, RG_PENDING(%rdi)          /* = head: nothing open */
    EXIT_SUMMARY .Lfx_pop2, .Lfx_done
.Lfx_pop2:
    FX_POP_RBX_R12
.Lfx_unbusy:
    movq %r8, %rax
    movq %r9, %rdx
    movl $0, %fs:TS_BUSY(%rcx)          /* nothing written */
.Lfx_c:
    FX_POP_SCRATCH
    pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_offset %rbx, -24
    movq %rsp, %rbx                      /* rbx+8 = ret_slot, rbx+16 = rsp at landing */
    .cfi_def_cfa_register %rbx
    subq $XF_SIZE, %rsp
    andq $-16, %rsp
    movq %rax, X_RAX(%rsp)
    movq %rdx, X_RDX(%rsp)
    movq %rcx, XF_RCX(%rsp)
    movq %rsi, XF_RSI(%rsp)
    movq %rdi, XF_RDI(%rsp)
    movq %r8, XF_R8(%rsp)
    movq %r9, XF_R9(%rsp)
    movq %r10, XF_R10(%rsp)
    movq %r11, XF_R11(%rsp)
    movaps %xmm0, X_XMM0(%rsp)
    movaps %xmm1, X_XMM1(%rsp)
    .irp r, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    movaps %xmm\r, XF_XMM2 + 16 * (\r - 2)(%rsp)
    .endr
    movb $0, XF_WIDE(%rsp)
    cmpb $0, as_thunk_vec_mode(%rip)
    je 2f
    call as_capture_vec_risk_exit        /* eax = 1: save the wide state */
    movb %al, XF_WIDE(%rsp)
    VEC_WIDE 1, XF_VEC, XF_KREG, XF_WIDE
2:  movq %rsp, %rdi                      /* struct as_retregs * */
    leaq 16(%rbx), %rsi                  /* rsp at landing */
    call as_hook_exit                    /* rax = real return address, rdx = caller's rbp */
    movq %rax, 8(%rbx)
    .cfi_offset %rip, -16
    movq %rdx, %rbp
    .cfi_same_value %rbp
    VEC_WIDE 0, XF_VEC, XF_KREG, XF_WIDE /* first: the xmm halves are written over them */
    movaps X_XMM0(%rsp), %xmm0
    movaps X_XMM1(%rsp), %xmm1
    .irp r, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    movaps XF_XMM2 + 16 * (\r - 2)(%rsp), %xmm\r
    .endr
    movq X_RAX(%rsp), %rax
    movq X_RDX(%rsp), %rdx
    movq XF_RCX(%rsp), %rcx
    movq XF_RSI(%rsp), %rsi
    movq XF_RDI(%rsp), %rdi
    movq XF_R8(%rsp), %r8
    movq XF_R9(%rsp), %r9
    movq XF_R10(%rsp), %r10
    movq XF_R11(%rsp), %r11
    movq %rbx, %rsp
    .cfi_def_cfa_register %rsp
    popq %rbx
    .cfi_def_cfa_offset 8
    .cfi_restore %rbx
    .cfi_restore %rsp
    .cfi_offset %rip, -8
    ret
END(as_thunk_full_exit)

    .section .rodata
/* as_thunk_judge_mask[j]: the bits of rax that hold a value of 8 - j bytes (j: the bytes
 * above the value, in as_target_errif). */
    .balign 8
as_thunk_judge_mask:
    .quad 0xffffffffffffffff, 0x00ffffffffffffff, 0x0000ffffffffffff, 0x000000ffffffffff
    .quad 0x00000000ffffffff, 0x0000000000ffffff, 0x000000000000ffff, 0x00000000000000ff
/* Where the typed entry finds integer argument register k (0: rdi .. 5: r9), relative to
 * rbp: the four scratch pushes (rax, rdx, rcx, rsi), then rdi, r8, r9. */
.Lcap_arg_off:
    .byte -40, -32, -16, -24, -48, -56

    .section .note.GNU-stack, "", @progbits
