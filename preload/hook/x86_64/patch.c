/* x86_64/patch.c - entry patching on x86-64 (hook/patch.h): capstone decodes the first
 * instructions of a function, they are relocated into a trampoline near the function
 * (RIP-relative operands and relative branches fixed), and a 5-byte jmp rel32 is written at
 * the entry with the int3 scheme, so threads running the function meanwhile stay correct. */

#include "hook/dl_capstone.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/lockwait.h"
#include "hook/patch.h"
#include "core/bigbss.h"

AS_DYNLIB_DEFINE(as_cs, AS_CS_FNS, "libcapstone.so.4", "entry patches (hook=entry, direct calls)");

#define JMP_LEN 5      /* e9 rel32 */
#define ABS_JMP_LEN 14 /* ff 25 00000000 + 8-byte address */
#define SLOT_SIZE 128  /* one trampoline + its jump pad */
#define PAD_OFF 112    /* the jump pad inside a slot */
#define PAGE 4096
#define MAX_PAGES 256
#define NEAR_LIMIT (1ull << 30) /* trampoline pages within 1 GB of the function */
#define MAX_SITES 4096

static const uint8_t endbr64[4] = {0xf3, 0x0f, 0x1e, 0xfa};

typedef struct tramp_page {
    uint8_t *base;
    size_t used;
} tramp_page;

/* Patch sites whose int3 may be hit: at + 1 (the rip after the trap) -> where to go. Only
 * appended, read by the signal handler without a lock. */
typedef struct trap_site {
    uintptr_t rip;
    uintptr_t to;
} trap_site;

static pthread_mutex_t g_plock = PTHREAD_MUTEX_INITIALIZER;
static tramp_page g_pages[MAX_PAGES] AS_BIG_BSS;
static int g_npages;
static trap_site g_sites[MAX_SITES] AS_BIG_BSS;
static uint32_t g_nsites;
static struct sigaction g_prev_trap AS_BIG_BSS;
static int g_trap_installed;
static int g_sync_core = -1; /* -1 unknown, 0 not available, 1 registered */

static void set_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t cap, const char *fmt, ...) {
    if (!why || !cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

static int fits_rel32(intptr_t d) {
    return d >= INT32_MIN && d <= INT32_MAX;
}

static uintptr_t dist(uintptr_t a, uintptr_t b) {
    return a > b ? a - b : b - a;
}

/* ---- trampoline memory ---- */

/* Maps one page within NEAR_LIMIT of near, trying hints at growing distances on both
 * sides. Returns the page (RW) or NULL. */
static uint8_t *map_near(uintptr_t near) {
    uintptr_t start = near & ~(uintptr_t)(PAGE - 1);
    const uintptr_t step = 16u << 20;
    for (uintptr_t d = step; d < NEAR_LIMIT; d += step) {
        for (int side = 0; side < 2; side++) {
            uintptr_t hint = side ? start + d : start - d;
            if (side == 0 && start < d + (1u << 20))
                continue;
            void *m = mmap((void *)hint, PAGE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (m == MAP_FAILED)
                continue;
            if (dist((uintptr_t)m, near) < NEAR_LIMIT)
                return m;
            munmap(m, PAGE); /* an old kernel took the hint as a hint only */
        }
    }
    return NULL;
}

/* A free SLOT_SIZE-byte slot within NEAR_LIMIT of near. Call with g_plock held. Returns it
 * (its page's protection is whatever it was: use slot_write) or NULL. */
static uint8_t *slot_alloc(uintptr_t near) {
    for (int i = 0; i < g_npages; i++) {
        tramp_page *pg = &g_pages[i];
        if (pg->used + SLOT_SIZE <= PAGE && dist((uintptr_t)pg->base, near) < NEAR_LIMIT) {
            uint8_t *s = pg->base + pg->used;
            pg->used += SLOT_SIZE;
            return s;
        }
    }
    if (g_npages == MAX_PAGES)
        return NULL;
    uint8_t *m = map_near(near);
    if (!m)
        return NULL;
    memset(m, 0xcc, PAGE);
    if (mprotect(m, PAGE, PROT_READ | PROT_EXEC) != 0) {
        munmap(m, PAGE);
        return NULL;
    }
    g_pages[g_npages].base = m;
    g_pages[g_npages].used = SLOT_SIZE;
    g_npages++;
    return m;
}

/* Copies len bytes into a trampoline page: the page stays executable meanwhile (other
 * trampolines on it may be running) and is read+exec again afterwards. Returns 0 or -1. */
static int slot_write(uint8_t *dst, const uint8_t *src, size_t len) {
    uint8_t *pg = (uint8_t *)((uintptr_t)dst & ~(uintptr_t)(PAGE - 1));
    if (mprotect(pg, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
        return -1;
    memcpy(dst, src, len);
    mprotect(pg, PAGE, PROT_READ | PROT_EXEC);
    __builtin___clear_cache((char *)dst, (char *)dst + len);
    return 0;
}

int as_patch_is_trampoline(const void *addr) {
    uintptr_t a = (uintptr_t)addr;
    int n = __atomic_load_n(&g_npages, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (a >= (uintptr_t)g_pages[i].base && a < (uintptr_t)g_pages[i].base + PAGE)
            return 1;
    return 0;
}

/* ---- decoding and relocation ---- */

static int is_unrelocatable(unsigned id) {
    switch (id) {
    case X86_INS_LOOP:
    case X86_INS_LOOPE:
    case X86_INS_LOOPNE:
    case X86_INS_JRCXZ:
    case X86_INS_JECXZ:
    case X86_INS_JCXZ:
    case X86_INS_XBEGIN:
        return 1;
    default:
        return 0;
    }
}

/* The target of a relative branch (its immediate operand), or 0 when insn has none. */
static uintptr_t branch_target(csh h, const cs_insn *insn) {
    if (!as_cs.cs_insn_group(h, insn, CS_GRP_BRANCH_RELATIVE))
        return 0;
    const cs_x86 *x = &insn->detail->x86;
    for (int i = 0; i < x->op_count; i++)
        if (x->operands[i].type == X86_OP_IMM)
            return (uintptr_t)x->operands[i].imm;
    return 0;
}

/* Whether insn reads or writes memory relative to rip. */
static int rip_relative(const cs_insn *insn) {
    const cs_x86 *x = &insn->detail->x86;
    for (int i = 0; i < x->op_count; i++)
        if (x->operands[i].type == X86_OP_MEM && x->operands[i].mem.base == X86_REG_RIP)
            return 1;
    return 0;
}

/* Appends an absolute jmp *[rip]: 14 bytes. */
static size_t emit_abs_jmp(uint8_t *o, uintptr_t target) {
    static const uint8_t op[6] = {0xff, 0x25, 0, 0, 0, 0};
    memcpy(o, op, sizeof op);
    memcpy(o + 6, &target, 8);
    return ABS_JMP_LEN;
}

/* A displaced call (always the last displaced instruction) is not copied as a call: the
 * trampoline pushes the return address the call has in the original function (the
 * instruction after it, just past the patched bytes) and jumps to the callee. The callee
 * then returns into the original function, and an exception thrown below it unwinds
 * through the original's own CFI, which a return address inside the trampoline (no FDE)
 * would lose (std::terminate). No register or flag is changed:
 *   lea -8(%rsp), %rsp; movl $lo, (%rsp); movl $hi, 4(%rsp); then the call as a jmp.
 * Returns the bytes written, or 0 with a reason in why. */
static size_t relocate_call(csh h, const cs_insn *insn, uintptr_t where, uint8_t *out, size_t cap,
                            char *why, size_t wcap) {
    if (cap < 40) {
        set_why(why, wcap, "too many instructions in the patched bytes");
        return 0;
    }
    uint64_t ret = insn->address + insn->size;
    uint32_t lo = (uint32_t)ret, hi = (uint32_t)(ret >> 32);
    static const uint8_t push[5] = {0x48, 0x8d, 0x64, 0x24, 0xf8};
    size_t o = 0;
    memcpy(out, push, sizeof push);
    o += sizeof push;
    out[o++] = 0xc7;
    out[o++] = 0x04;
    out[o++] = 0x24;
    memcpy(out + o, &lo, 4);
    o += 4;
    out[o++] = 0xc7;
    out[o++] = 0x44;
    out[o++] = 0x24;
    out[o++] = 0x04;
    memcpy(out + o, &hi, 4);
    o += 4;
    uintptr_t tgt = branch_target(h, insn);
    if (tgt)
        return o + emit_abs_jmp(out + o, tgt);
    /* call r/m64 (ff /2) becomes jmp r/m64 (ff /4): the same operand, once rsp moved. */
    const cs_x86 *x = &insn->detail->x86;
    size_t ff = 0;
    while (ff < insn->size && insn->bytes[ff] != 0xff)
        ff++;
    if (ff + 1 >= insn->size || ((insn->bytes[ff + 1] >> 3) & 7) != 2) {
        set_why(why, wcap, "'%s %s' cannot be relocated", insn->mnemonic, insn->op_str);
        return 0;
    }
    for (int i = 0; i < x->op_count; i++)
        if (x->operands[i].type == X86_OP_MEM &&
            (x->operands[i].mem.base == X86_REG_RSP || x->operands[i].mem.index == X86_REG_RSP)) {
            set_why(why, wcap, "'%s %s' reads the stack the call moves", insn->mnemonic,
                    insn->op_str);
            return 0;
        }
    memcpy(out + o, insn->bytes, insn->size);
    out[o + ff + 1] ^= 0x30; /* modrm reg 2 (call) -> 4 (jmp) */
    if (rip_relative(insn)) {
        if (x->encoding.disp_offset == 0 || x->encoding.disp_size != 4) {
            set_why(why, wcap, "'%s %s' has no 32-bit displacement", insn->mnemonic, insn->op_str);
            return 0;
        }
        uintptr_t abs = (uintptr_t)insn->address + insn->size + (intptr_t)x->disp;
        intptr_t nd = (intptr_t)(abs - (where + o + insn->size));
        if (!fits_rel32(nd)) {
            set_why(why, wcap, "RIP-relative operand of '%s' out of reach of the trampoline",
                    insn->mnemonic);
            return 0;
        }
        int32_t d32 = (int32_t)nd;
        memcpy(out + o + x->encoding.disp_offset, &d32, 4);
    }
    return o + insn->size;
}

/* Relocates one instruction into out (cap bytes free) as if placed at address `where`.
 * Returns the bytes written, or 0 with a reason in why. */
static size_t relocate(csh h, const cs_insn *insn, uintptr_t where, uint8_t *out, size_t cap,
                       char *why, size_t wcap) {
    if (cap < 32) {
        set_why(why, wcap, "too many instructions in the patched bytes");
        return 0;
    }
    if (is_unrelocatable(insn->id)) {
        set_why(why, wcap, "'%s' cannot be relocated", insn->mnemonic);
        return 0;
    }
    if (insn->id == X86_INS_CALL)
        return relocate_call(h, insn, where, out, cap, why, wcap);
    uintptr_t tgt = branch_target(h, insn);
    if (tgt) {
        if (insn->id == X86_INS_JMP)
            return emit_abs_jmp(out, tgt);
        const uint8_t *opc = insn->detail->x86.opcode;
        unsigned cc;
        if ((opc[0] & 0xf0) == 0x70)
            cc = opc[0] & 0x0f;
        else if (opc[0] == 0x0f && (opc[1] & 0xf0) == 0x80)
            cc = opc[1] & 0x0f;
        else {
            set_why(why, wcap, "relative branch '%s' cannot be relocated", insn->mnemonic);
            return 0;
        }
        /* j!cc over an absolute jump to the target. */
        out[0] = (uint8_t)(0x70 | (cc ^ 1));
        out[1] = ABS_JMP_LEN;
        return 2 + emit_abs_jmp(out + 2, tgt);
    }
    memcpy(out, insn->bytes, insn->size);
    if (rip_relative(insn)) {
        const cs_x86 *x = &insn->detail->x86;
        if (x->encoding.disp_offset == 0 || x->encoding.disp_size != 4) {
            set_why(why, wcap, "'%s %s' has no 32-bit displacement", insn->mnemonic, insn->op_str);
            return 0;
        }
        uintptr_t abs = (uintptr_t)insn->address + insn->size + (intptr_t)x->disp;
        intptr_t nd = (intptr_t)(abs - (where + insn->size));
        if (!fits_rel32(nd)) {
            set_why(why, wcap, "RIP-relative operand of '%s' out of reach of the trampoline",
                    insn->mnemonic);
            return 0;
        }
        int32_t d32 = (int32_t)nd;
        memcpy(out + x->encoding.disp_offset, &d32, 4);
    }
    return insn->size;
}

/* Scans the whole function for a relative branch into (at, at + len): such a target would
 * land in the middle of the jump. Returns 0 when none, -1 with a reason. */
static int check_branches_in(csh h, const uint8_t *fn, size_t size, const uint8_t *at, size_t len,
                             char *why, size_t cap) {
    cs_insn *insn = as_cs.cs_malloc(h);
    if (!insn) {
        set_why(why, cap, "out of memory");
        return -1;
    }
    const uint8_t *code = fn;
    size_t left = size;
    uint64_t addr = (uint64_t)(uintptr_t)fn;
    int rc = 0;
    while (left > 0) {
        if (!as_cs.cs_disasm_iter(h, &code, &left, &addr, insn)) {
            code++; /* data or padding: skip a byte */
            left--;
            addr++;
            continue;
        }
        uintptr_t t = branch_target(h, insn);
        if (t > (uintptr_t)at && t < (uintptr_t)at + len) {
            set_why(why, cap, "a jump at +%lu goes back into the patched bytes (+%lu)",
                    (unsigned long)(insn->address - (uintptr_t)fn),
                    (unsigned long)(t - (uintptr_t)fn));
            rc = -1;
            break;
        }
    }
    as_cs.cs_free(insn, 1);
    return rc;
}

int as_patch_check_near(const as_patch *p, const void *lo, size_t size, char *why, size_t cap) {
    if (!p || !p->at || !lo || !size)
        return 0;
    if (as_dynlib_load(&as_cs_lib) != 0)
        return 0;
    csh h;
    if (as_cs.cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
        return 0;
    as_cs.cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
    char inner[160];
    int rc = check_branches_in(h, lo, size, p->at, p->len, inner, sizeof inner);
    as_cs.cs_close(&h);
    if (rc != 0)
        set_why(why, cap, "a function %s it jumps into its first bytes (+%lu)",
                (const uint8_t *)lo < p->fn ? "before" : "after",
                (unsigned long)(p->len ? p->at - p->fn : 0));
    return rc;
}

int as_patch_prepare(void *fnp, size_t size, as_patch *p, char *why, size_t cap) {
    uint8_t *fn = fnp;
    memset(p, 0, sizeof *p);
    if (!fn) {
        set_why(why, cap, "no address");
        return -1;
    }
    if (size == 0) {
        set_why(why, cap, "unknown size: the patched bytes cannot be checked");
        return -1;
    }
    uint8_t *at = fn;
    if (size >= 4 && memcmp(fn, endbr64, 4) == 0)
        at = fn + 4;
    size_t room = size - (size_t)(at - fn);
    if (room < JMP_LEN) {
        set_why(why, cap, "too short: %zu bytes, a jump needs %d", room, JMP_LEN);
        return -1;
    }
    if (as_dynlib_load(&as_cs_lib) != 0) {
        set_why(why, cap, "the instruction decoder libcapstone.so.4 is not installed");
        return -1;
    }
    csh h;
    if (as_cs.cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK) {
        set_why(why, cap, "the instruction decoder could not start");
        return -1;
    }
    as_cs.cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
    cs_insn *insn = as_cs.cs_malloc(h);
    uint8_t buf[SLOT_SIZE];
    uint8_t *slot = NULL;
    int rc = -1;
    if (!insn) {
        set_why(why, cap, "out of memory");
        goto out;
    }
    pthread_mutex_lock(&g_plock);
    slot = slot_alloc((uintptr_t)fn);
    pthread_mutex_unlock(&g_plock);
    if (!slot) {
        set_why(why, cap, "no memory for a trampoline within 1 GB of the function");
        goto out;
    }
    memset(buf, 0xcc, sizeof buf);
    memcpy(buf, endbr64, 4);
    size_t o = 4, len = 0;
    const uint8_t *code = at;
    size_t left = room < AS_PATCH_MAX_SAVED ? room : AS_PATCH_MAX_SAVED;
    uint64_t addr = (uint64_t)(uintptr_t)at;
    int after_call = 0;
    while (len < JMP_LEN) {
        if (after_call) {
            set_why(why, cap, "a call at +%lu is followed by more patched bytes",
                    (unsigned long)(at + len - fn) - after_call);
            goto out;
        }
        if (len > 0 && p->nbound < AS_PATCH_MAX_BOUNDS) {
            p->bound_at[p->nbound] = (uint8_t)len;
            p->bound_tramp[p->nbound++] = (uint8_t)o;
        }
        if (!as_cs.cs_disasm_iter(h, &code, &left, &addr, insn)) {
            set_why(why, cap, "undecodable or truncated instruction at +%lu",
                    (unsigned long)(at + len - fn));
            goto out;
        }
        size_t w =
            relocate(h, insn, (uintptr_t)slot + o, buf + o, PAD_OFF - ABS_JMP_LEN - o, why, cap);
        if (!w)
            goto out;
        o += w;
        len += insn->size;
        if (insn->id == X86_INS_CALL || insn->id == X86_INS_LCALL)
            after_call = insn->size;
    }
    if (len > room) {
        set_why(why, cap, "too short: the patched instructions pass the end of the function");
        goto out;
    }
    if (check_branches_in(h, fn, size, at, len, why, cap) != 0)
        goto out;
    o += emit_abs_jmp(buf + o, (uintptr_t)at + len);
    pthread_mutex_lock(&g_plock);
    int wr = slot_write(slot, buf, o);
    pthread_mutex_unlock(&g_plock);
    if (wr != 0) {
        set_why(why, cap, "cannot write the trampoline: %s", strerror(errno));
        goto out;
    }
    p->fn = fn;
    p->at = at;
    p->tramp = slot;
    p->len = (uint8_t)len;
    memcpy(p->saved, at, len);
    rc = 0;
out:
    if (insn)
        as_cs.cs_free(insn, 1);
    as_cs.cs_close(&h);
    /* A slot of a refused function is simply left unused (a few bytes of one page). */
    return rc;
}

/* ---- writing the jump ---- */

/* Makes every core see the modified code before the next step (cross-modifying code). */
static void sync_cores(void) {
    if (g_sync_core < 0) {
        long r = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
        g_sync_core = r == 0;
    }
    if (g_sync_core &&
        syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) == 0)
        return;
    /* No membarrier: give other threads time to pass any fetched copy of the old bytes. */
    sched_yield();
    usleep(1000);
}

/* ---- signal handlers: the int3 redirect and move requests ---- */

/* Move requests use their own signal: a request merged with a pending int3 SIGTRAP (two
 * instances of a standard signal become one) would leave a thread that trapped at at + 1
 * indistinguishable from one stopped after a 1-byte first instruction. SIGURG is ignored
 * by default, and its handler is ours only while requests are out: a request answered
 * after the wait meets the program's disposition and is harmless. */
#define MOVE_SIG SIGURG

static struct sigaction g_prev_move AS_BIG_BSS;
static int g_move_installed;

/* Passes a signal we do not handle to the handler that was there before ours, or applies
 * the default action as if we were not here. */
static void chain(const struct sigaction *prev, int sig, siginfo_t *si, void *ucv) {
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction)
            prev->sa_sigaction(sig, si, ucv);
        return;
    }
    if (prev->sa_handler == SIG_IGN)
        return;
    if (prev->sa_handler != SIG_DFL) {
        prev->sa_handler(sig);
        return;
    }
    if (sig == SIGURG || sig == SIGCHLD || sig == SIGWINCH)
        return; /* ignored by default */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Installs handler for sig once, remembering the previous one in *prev. It then stays: a
 * signal sent just before the last step may be delivered later and must still find us.
 * Returns 0/-1. */
static int handler_on(int sig, void (*handler)(int, siginfo_t *, void *), struct sigaction *prev,
                      int *installed) {
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) != 0)
        return -1;
    if (*installed && (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == handler)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    *prev = cur;
    if (sigaction(sig, &sa, NULL) != 0)
        return -1;
    *installed = 1;
    return 0;
}

/* A thread that hits the int3 of a site being patched continues where the finished jump
 * would take it; any other SIGTRAP goes to the handler that was there before ours. */
static void on_trap(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    uintptr_t rip = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uint32_t n = __atomic_load_n(&g_nsites, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n; i++) {
        if (g_sites[i].rip == rip) {
            uc->uc_mcontext.gregs[REG_RIP] = (greg_t)g_sites[i].to;
            return;
        }
    }
    chain(&g_prev_trap, sig, si, ucv);
}

/* ---- moving other threads out of the displaced bytes ---- */

/* The site being installed while other threads are asked to move (NULL otherwise), the
 * request generation and the answers to it. A request is a MOVE_SIG queued with
 * sival_ptr = g_fix_cookie + (generation % FIX_COOKIES): the address says it is ours (a
 * program's own signal carries SI_TKILL/SI_USER or another value), the offset which
 * request. */
#define FIX_COOKIES 64
#define FIX_WAIT_NS 250000000L
static const as_patch *g_fix;
static uint32_t g_fix_gen;
static uint32_t g_fix_acks;
static char g_fix_cookie[FIX_COOKIES];
/* The process id the requests carry, set while they are out: the handler compares it
 * without calling getpid, which may itself be the function being patched. */
static pid_t g_fix_pid;

/* Where a thread at pc inside the displaced bytes of p goes on: the same instruction in the
 * trampoline. 0 when pc is not inside them. */
static uintptr_t moved_pc(const as_patch *p, uintptr_t pc) {
    uintptr_t at = (uintptr_t)p->at;
    if (pc <= at || pc >= at + p->len)
        return 0;
    for (unsigned i = 0; i < p->nbound; i++)
        if (pc == at + p->bound_at[i])
            return (uintptr_t)p->tramp + p->bound_tramp[i];
    return 0;
}

/* A move request is answered in the thread that receives it (async-signal-safe); any other
 * MOVE_SIG goes to the handler that was there before ours. */
static void on_move(int sig, siginfo_t *si, void *ucv) {
    const char *c = si ? si->si_value.sival_ptr : NULL;
    pid_t pid = __atomic_load_n(&g_fix_pid, __ATOMIC_ACQUIRE);
    if (!si || si->si_code != SI_QUEUE || !pid || si->si_pid != pid || c < g_fix_cookie ||
        c >= g_fix_cookie + FIX_COOKIES) {
        chain(&g_prev_move, sig, si, ucv);
        return;
    }
    ucontext_t *uc = ucv;
    const as_patch *p = __atomic_load_n(&g_fix, __ATOMIC_ACQUIRE);
    if (p) {
        uintptr_t to = moved_pc(p, (uintptr_t)uc->uc_mcontext.gregs[REG_RIP]);
        if (to)
            uc->uc_mcontext.gregs[REG_RIP] = (greg_t)to;
    }
    uint32_t gen = __atomic_load_n(&g_fix_gen, __ATOMIC_ACQUIRE);
    if (c == g_fix_cookie + gen % FIX_COOKIES)
        __atomic_fetch_add(&g_fix_acks, 1, __ATOMIC_RELEASE);
}

/* Installs on_move for MOVE_SIG while requests are out, with the mask and the SA_RESTART,
 * SA_NODEFER and SA_ONSTACK flags of the program's own handler (SA_RESTART when there is
 * none), so the program's signals behave as before. Returns 1 when on_move is installed. */
static int move_handler_on(void) {
    if (g_move_installed)
        return 1;
    struct sigaction cur;
    if (sigaction(MOVE_SIG, NULL, &cur) != 0)
        return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_move;
    int program = (cur.sa_flags & SA_SIGINFO)
                      ? cur.sa_sigaction != NULL
                      : (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN);
    sa.sa_flags = SA_SIGINFO |
                  (program ? (cur.sa_flags & (SA_RESTART | SA_NODEFER | SA_ONSTACK)) : SA_RESTART);
    sa.sa_mask = cur.sa_mask;
    g_prev_move = cur;
    if (sigaction(MOVE_SIG, &sa, NULL) != 0)
        return 0;
    g_move_installed = 1;
    return 1;
}

/* Puts the program's MOVE_SIG disposition back, unless the program replaced ours
 * meanwhile. A request answered late then meets the default (ignored) or the program's
 * handler, which ignores what it does not expect. */
static void move_handler_off(void) {
    if (!g_move_installed)
        return;
    struct sigaction cur;
    if (sigaction(MOVE_SIG, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
        cur.sa_sigaction == on_move)
        sigaction(MOVE_SIG, &g_prev_move, NULL);
    g_move_installed = 0;
}

/* Reads a small /proc file into buf (NUL-terminated). Returns the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return n;
}

/* Whether thread tid must be asked to move: 1 when it runs (or is runnable), or is blocked
 * with its pc inside the displaced bytes; 0 when it is blocked elsewhere (left
 * undisturbed) or gone; -1 when it must but blocks MOVE_SIG (it could not answer). */
static int needs_move(const as_patch *p, pid_t tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return 0;
    if (strncmp(buf, "running", 7) != 0) {
        const char *last = strrchr(buf, ' ');
        uintptr_t pc = last ? (uintptr_t)strtoull(last + 1, NULL, 16) : 0;
        /* Blocked in a system call: a restart puts the pc back on the 2-byte syscall
         * instruction, which may be the last displaced one (pc = at + len). */
        int in_syscall = buf[0] != '-';
        if (!moved_pc(p, pc) && !(in_syscall && moved_pc(p, pc - 2)))
            return 0;
    }
    char st[4096]; /* SigBlk: lies some 700 bytes in */
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    if (read_small(path, st, sizeof st) > 0) {
        const char *b = strstr(st, "SigBlk:");
        if (b && (strtoull(b + 7, NULL, 16) & (1ull << (MOVE_SIG - 1))))
            return -1;
    }
    return 1;
}

/* With the int3 in place (no thread enters the displaced bytes any more), asks every other
 * thread that may be inside them to move to the trampoline, and waits (bounded) for the
 * answers. Returns how many threads did not answer. Call with g_plock held. */
static unsigned move_threads_out(const as_patch *p) {
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return 0;
    pid_t self = (pid_t)syscall(SYS_gettid), pid = getpid();
    uint32_t gen = __atomic_add_fetch(&g_fix_gen, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&g_fix_acks, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&g_fix_pid, pid, __ATOMIC_RELEASE);
    __atomic_store_n(&g_fix, p, __ATOMIC_RELEASE);
    unsigned sent = 0, unanswered = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0 || tid == self)
            continue;
        int need = needs_move(p, tid);
        if (need < 0)
            unanswered++;
        if (need <= 0)
            continue;
        if (!move_handler_on()) {
            unanswered++;
            continue;
        }
        siginfo_t si;
        memset(&si, 0, sizeof si);
        si.si_signo = MOVE_SIG;
        si.si_code = SI_QUEUE;
        si.si_pid = pid;
        si.si_uid = getuid();
        si.si_value.sival_ptr = g_fix_cookie + gen % FIX_COOKIES;
        if (syscall(SYS_rt_tgsigqueueinfo, pid, tid, MOVE_SIG, &si) == 0)
            sent++;
    }
    closedir(d);
    int64_t deadline = as_mono_ns() + FIX_WAIT_NS;
    while (__atomic_load_n(&g_fix_acks, __ATOMIC_ACQUIRE) < sent && as_mono_ns() < deadline) {
        struct timespec nap = {0, 50000};
        sched_yield();
        nanosleep(&nap, NULL);
    }
    uint32_t acks = __atomic_load_n(&g_fix_acks, __ATOMIC_ACQUIRE);
    __atomic_store_n(&g_fix, NULL, __ATOMIC_RELEASE);
    move_handler_off();
    return unanswered + (acks < sent ? sent - acks : 0);
}

/* ---- fork ---- */

static int g_fork_locked;

void as_patch_fork_prepare(void) {
    g_fork_locked = as_mutex_lock_bounded(&g_plock, 500);
}

void as_patch_fork_parent(void) {
    if (g_fork_locked)
        pthread_mutex_unlock(&g_plock);
    g_fork_locked = 0;
}

void as_patch_fork_child(void) {
    /* One thread now: a patch the fork interrupted keeps its int3, which still redirects. */
    pthread_mutex_init(&g_plock, NULL);
    g_fork_locked = 0;
    g_fix = NULL;
    g_fix_pid = 0;
    g_move_installed = 0;
}

/* The protection of the page holding addr, from /proc/self/maps; PROT_READ|PROT_EXEC when
 * it cannot be read. */
static int page_prot(uintptr_t addr) {
    int prot = PROT_READ | PROT_EXEC;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return prot;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perm[5];
        if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perm) != 3)
            continue;
        if (addr < lo || addr >= hi)
            continue;
        prot = (perm[0] == 'r' ? PROT_READ : 0) | (perm[1] == 'w' ? PROT_WRITE : 0) |
               (perm[2] == 'x' ? PROT_EXEC : 0);
        break;
    }
    fclose(f);
    return prot;
}

int as_patch_install(as_patch *p, void *dest, char *why, size_t cap) {
    if (!p || !p->at || !dest) {
        set_why(why, cap, "not prepared");
        return -1;
    }
    if (p->installed) {
        set_why(why, cap, "already patched");
        return -1;
    }
    pthread_mutex_lock(&g_plock);
    int rc = -1;
    uintptr_t next = (uintptr_t)p->at + JMP_LEN;
    uint8_t *to = dest;
    if (!fits_rel32((intptr_t)((uintptr_t)dest - next))) {
        /* The jump pad shares the trampoline's slot, within 1 GB of the function. */
        uint8_t pad[ABS_JMP_LEN];
        emit_abs_jmp(pad, (uintptr_t)dest);
        to = p->tramp + PAD_OFF;
        if (slot_write(to, pad, sizeof pad) != 0) {
            set_why(why, cap, "cannot write the jump pad: %s", strerror(errno));
            goto out;
        }
    }
    int32_t rel = (int32_t)((intptr_t)((uintptr_t)to - next));
    if (g_nsites >= MAX_SITES ||
        handler_on(SIGTRAP, on_trap, &g_prev_trap, &g_trap_installed) != 0) {
        set_why(why, cap, "cannot install the SIGTRAP handler");
        goto out;
    }
    g_sites[g_nsites].rip = (uintptr_t)p->at + 1;
    g_sites[g_nsites].to = (uintptr_t)to;
    __atomic_store_n(&g_nsites, g_nsites + 1, __ATOMIC_RELEASE);

    uintptr_t lo = (uintptr_t)p->at & ~(uintptr_t)(PAGE - 1);
    uintptr_t hi = (next - 1) & ~(uintptr_t)(PAGE - 1);
    int prot_lo = page_prot(lo), prot_hi = hi != lo ? page_prot(hi) : prot_lo;
    if (mprotect((void *)lo, hi + PAGE - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        set_why(why, cap, "cannot make the code writable: %s", strerror(errno));
        goto out;
    }
    volatile uint8_t *a = p->at;
    a[0] = 0xcc; /* threads arriving now trap and are sent on to `to` */
    sync_cores();
    p->unanswered = (uint16_t)move_threads_out(p);
    for (int i = 0; i < 4; i++)
        a[1 + i] = (uint8_t)((uint32_t)rel >> (8 * i));
    sync_cores();
    a[0] = 0xe9;
    sync_cores();
    mprotect((void *)lo, PAGE, prot_lo);
    if (hi != lo)
        mprotect((void *)hi, PAGE, prot_hi);
    p->jump_to = to;
    p->dest = dest;
    p->installed = 1;
    rc = 0;
out:
    pthread_mutex_unlock(&g_plock);
    return rc;
}
