/* test_thunk_typed.c - unit tests of the typed capture done by the thunk's assembly entry
 * (preload/hook/x86_64/thunk.S). Why this file exists: once a target's capture plan needs
 * only the integer registers (integers, pointers, bool, enums and strings, at most six),
 * the target gets AS_CAPTURES_ASM and the assembly writes its capture items itself, with
 * its own string copy and its own test of "known readable" memory. Those items must be
 * byte for byte the ones the general C path (as_capture_entry, preload/hook/capture.c)
 * writes for the same registers, the call itself must see every register unchanged, and
 * memory the assembly cannot vouch for must go to C. Each test calls functions of this
 * binary through their stubs and compares what lands in the ring with what the general
 * path gives for the same argument (and, for strings, with items built by hand here).
 *
 * Two symbols are wrapped (test_thunk_typed.ldflags): as_pipe_reserve_slow gives each
 * thread a real ring read back here (whole payloads: the record and its items), and
 * as_hook_enter_slow, the thunk's only way into C at entry, is counted per thread: a call
 * that did not reach it was captured by the assembly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/pipeline.h"
#include "core/ring.h"
#include "hook/callrec.h"
#include "hook/capture.h"
#include "hook/config.h"
#include "hook/cproto.h"
#include "hook/target.h"
#include "hook/thunk.h"
#include "test_hotpath.h"

#define NOIPA __attribute__((noinline, noipa))
#define PAGE_SZ 4096u

/* ---- the replaced pipeline: every record, whole, read back from real rings --------- */

#define nrec as_test_nrec
#define collect as_test_collect
#define reset_recs as_test_store_reset

/* Calls of the thunk's C entry made by this thread (the assembly took every other one). */
static __thread uint64_t c_entries;
as_enter_ret __real_as_hook_enter_slow(uint32_t id, as_regs *regs, void **slot);
as_enter_ret __wrap_as_hook_enter_slow(uint32_t id, as_regs *regs, void **slot);
as_enter_ret __wrap_as_hook_enter_slow(uint32_t id, as_regs *regs, void **slot) {
    c_entries++;
    return __real_as_hook_enter_slow(id, regs, slot);
}

/* Record i's fixed part; *items (if not NULL) gets its items, rec.ext bytes of them. */
static as_callrec rec_at(size_t i, const unsigned char **items) {
    assert_true(i < nrec);
    as_callrec r;
    memcpy(&r, as_test_blob + as_test_rec_off[i], sizeof r);
    if (as_test_rec_len[i] != sizeof r + r.ext)
        fail_msg("record %zu: payload of %u bytes, ext %u", i, as_test_rec_len[i], r.ext);
    if (items)
        *items = as_test_blob + as_test_rec_off[i] + sizeof r;
    return r;
}

static int setup(void **state) {
    as_clock_init();
    reset_recs();
    as_capture_off = 0;
    as_hook_enabled = 1;
    return 0;
}

/* Whether calls can reach the assembly's typed path at all (it needs the TSC clock; C
 * takes every call otherwise, and only the item comparisons below apply). */
static int asm_possible(void) {
    return as_clock_use_tsc;
}

/* ---- items: by hand, and from the general path ------------------------------------ */

static size_t pad8(size_t n) {
    return (n + 7) & ~(size_t)7;
}

/* Writes the item of a string argument (or return, index AS_CAP_RET) of text s whose
 * length is len, cut at max; returns its bytes. */
static size_t str_item(unsigned char *w, int index, const char *s, size_t len, size_t max) {
    size_t n = len < max ? len : max;
    as_cap_item h = {(uint32_t)n, AS_CAP_STR, (uint8_t)index, len > max ? AS_CAP_TRUNC : 0, 0};
    memcpy(w, &h, sizeof h);
    memcpy(w + sizeof h, s, n);
    memset(w + sizeof h + n, 0, pad8(n) - n);
    return sizeof h + pad8(n);
}

/* Writes an item with no bytes (AS_CAP_NULL) or one 8-byte word (AS_CAP_VAL/BAD). */
static size_t word_item(unsigned char *w, int tag, int index, const uint64_t *v) {
    as_cap_item h = {v ? 8u : 0u, (uint8_t)tag, (uint8_t)index, 0, 0};
    memcpy(w, &h, sizeof h);
    if (v)
        memcpy(w + sizeof h, v, 8);
    return sizeof h + (v ? 8 : 0);
}

/* Items the general path (as_capture_entry) writes for prototype p with the integer
 * argument registers gpr[0..5]; copied into out (cap bytes), their length returned. The
 * arena's top is where it was afterwards. */
static size_t general_items(const as_proto *p, int max_string, const uint64_t gpr[6],
                            unsigned char *out, size_t cap) {
    as_regs r;
    memset(&r, 0, sizeof r);
    memcpy(r.gpr, gpr, sizeof r.gpr);
    void *slot[4] = {0};
    as_shadow_frame f;
    memset(&f, 0, sizeof f);
    uint32_t top = as_cap_ts.top;
    as_capture_entry(&f, p, max_string, &r, slot);
    assert_true(f.cap_len > 0 && f.cap_len <= cap);
    memcpy(out, as_capture_data(&f), f.cap_len);
    as_capture_release(&f);
    assert_int_equal(as_cap_ts.top, top);
    return f.cap_len;
}

/* Fails with where items a and b (n bytes each) first differ. */
static void same_items(const unsigned char *got, size_t ngot, const unsigned char *want,
                       size_t nwant, const char *what) {
    if (ngot == nwant && memcmp(got, want, ngot) == 0)
        return;
    size_t k = 0;
    while (k < ngot && k < nwant && got[k] == want[k])
        k++;
    fail_msg("%s: items differ: %zu bytes vs %zu expected, first difference at byte %zu "
             "(%02x vs %02x)",
             what, ngot, nwant, k, k < ngot ? got[k] : 0, k < nwant ? want[k] : 0);
}

/* Asserts record i is a returned call of target id carrying exactly the items want. */
static void rec_items_are(size_t i, int id, const unsigned char *want, size_t n, const char *what) {
    const unsigned char *items;
    as_callrec r = rec_at(i, &items);
    if (r.id != (uint32_t)id || r.flags != AS_CALL_RETURNED)
        fail_msg("%s: record %zu of target %u flags %u, expected target %d returned", what, i, r.id,
                 r.flags, id);
    same_items(items, r.ext, want, n, what);
}

/* ---- typed targets ------------------------------------------------------------------ */

typedef struct typed_t {
    void *stub;
    int id;
    const as_proto *proto;
    int max_string;
} typed_t;

/* Entries live as long as the targets that point at them. */
static as_entry entries[32];
static int nentries;

/* Registers fn as a target with prototype text and max_string; returns its stub and id. */
static typed_t typed(void *fn, const char *name, const char *proto, int max_string) {
    assert_true(nentries < 32);
    as_entry *e = &entries[nentries++];
    int id = as_test_typed_target(e, fn, name, proto, max_string, "test_thunk_typed");
    typed_t t = {as_thunk_addr((uint32_t)id), id, &e->proto, max_string};
    assert_non_null(t.stub);
    return t;
}

static uint32_t captures_of(int id) {
    return __atomic_load_n(&as_targets[id].captures, __ATOMIC_ACQUIRE);
}

/* ---- functions called through the thunk -------------------------------------------- */

static const char *volatile ts_seen; /* the last pointer a ts_* function received */

static int ts_value(const char *s) {
    return (int)(((uintptr_t)s >> 1) & 0x3fffffff) ^ 0x1234;
}

/* int ts_M(const char *s), one per max_string M: they record the pointer, never read it. */
#define TS_FN(m)                                                                                   \
    NOIPA int ts_##m(const char *s) {                                                              \
        ts_seen = s;                                                                               \
        return ts_value(s);                                                                        \
    }
TS_FN(1)
TS_FN(7)
TS_FN(8)
TS_FN(15)
TS_FN(16)
TS_FN(17)
TS_FN(64)
TS_FN(256)
TS_FN(bad)
TS_FN(sig)
TS_FN(thr)
TS_FN(big)

/* Registers ts_M with max_string M, then makes its first call (through C: the plan is
 * made there) and checks the assembly takes its calls from then on. */
static typed_t typed_ts(int (*fn)(const char *), const char *name, int max_string) {
    char proto[64]; /* parsed into the entry: not kept */
    snprintf(proto, sizeof proto, "int %s(const char *s)", name);
    typed_t t = typed((void *)fn, name, proto, max_string);
    if (!(captures_of(t.id) & AS_CAPTURES_ASM)) {
        uint64_t c0 = c_entries;
        int (*f)(const char *) = (int (*)(const char *))t.stub;
        assert_int_equal(f("warm-up"), ts_value("warm-up"));
        assert_int_equal(c_entries, c0 + 1); /* the first call went through C */
    }
    assert_true(captures_of(t.id) & AS_CAPTURES_ASM);
    reset_recs();
    return t;
}

/* ---- 1: strings through the assembly equal the general path ------------------------ */

static _Alignas(64) char static_buf[448]; /* .bss */

/* Whether the assembly may read at p without the kernel: the thread's stack (read from
 * a frame below this one), the brk heap, or a segment of an object loaded at start; the
 * same test capture.c's known_len and thunk.S make. */
static int known_readable(const void *p) {
    uintptr_t a = (uintptr_t)p;
    if (a >= (uintptr_t)__builtin_frame_address(0) && a < as_cap_ts.stack_hi)
        return 1;
    if (as_cap_brk_lo && a >= as_cap_brk_lo && a < (uintptr_t)sbrk(0))
        return 1;
    for (int i = 0; i < as_cap_nregions; i++)
        if (a >= as_cap_regions[i].lo && a < as_cap_regions[i].hi)
            return 1;
    return 0;
}

/* Runs every length 0..300 at every alignment 0..15 of buf (16-byte aligned, 448 bytes)
 * through target t; where names the placement in failure messages. */
static void strings_at(const typed_t *t, char *buf, const char *where) {
    int (*f)(const char *) = (int (*)(const char *))t->stub;
    size_t max = (size_t)t->max_string;
    unsigned char want[512], general[512];
    int known = known_readable(buf) && known_readable(buf + 447);
#ifndef __SANITIZE_ADDRESS__
    assert_true(known); /* stack, brk heap and .bss all are, without ASan's allocators */
#endif
    if (!known && max == 1)
        print_message("%s: not known readable here: compared, through C\n", where);
    for (size_t align = 0; align < 16; align++) {
        for (size_t len = 0; len <= 300; len++) {
            char *src = buf + align;
            /* non-NUL garbage after the string: the copy must stop at the NUL and zero
             * the item's padding rather than keep what follows */
            memset(buf, 0x7f, 448);
            for (size_t i = 0; i < len; i++)
                src[i] = (char)(0x21 + (i * 37 + len + align) % 0xde); /* never 0; >= 0x80 too */
            src[len] = '\0';
            uint64_t s0 = as_capture_slow_reads(), c0 = c_entries;
            int r = f(src);
            uint64_t s1 = as_capture_slow_reads(), c1 = c_entries;
            char what[96];
            snprintf(what, sizeof what, "%s, max_string %zu, alignment %zu, length %zu", where, max,
                     align, len);
            if (ts_seen != src || r != ts_value(src))
                fail_msg("%s: the function got %p (not %p) or returned %d", what,
                         (const void *)ts_seen, (void *)src, r);
            if (known && s1 != s0)
                fail_msg("%s: %llu slow reads for known memory", what,
                         (unsigned long long)(s1 - s0));
            if (known && asm_possible() && c1 != c0)
                fail_msg("%s: the call went through C", what);
            assert_int_equal(collect(), 1);
            as_callrec rec = rec_at(0, NULL);
            assert_int_equal((int)rec.rax, r);
            size_t nw = str_item(want, 0, src, len, max);
            uint64_t gpr[6] = {(uintptr_t)src};
            size_t ng = general_items(t->proto, t->max_string, gpr, general, sizeof general);
            same_items(general, ng, want, nw, what); /* the general path, by hand */
            rec_items_are(0, t->id, general, ng, what);
            reset_recs();
        }
    }
}

/* Proves the assembly's string capture writes exactly the general path's items (and the
 * items expected by hand: length, AS_CAP_TRUNC when cut at max_string, text, zero
 * padding) for max_string 1..256, every length 0..300 and source alignment 0..15, for
 * strings on the heap, on this thread's stack and in .bss; that these known-readable
 * strings take no slow read and never go through C after the target's first call; and
 * that the function receives its pointer and its return value reaches the record. */
static void test_strings_match_general(void **state) {
    struct {
        int (*fn)(const char *);
        const char *name;
        int max;
    } ts[] = {{ts_1, "ts_1", 1},    {ts_7, "ts_7", 7},      {ts_8, "ts_8", 8},
              {ts_15, "ts_15", 15}, {ts_16, "ts_16", 16},   {ts_17, "ts_17", 17},
              {ts_64, "ts_64", 64}, {ts_256, "ts_256", 256}};
    _Alignas(16) char stack_buf[448];
    char *heap = malloc(448 + 16);
    assert_non_null(heap);
    char *heap_buf = (char *)(((uintptr_t)heap + 15) & ~(uintptr_t)15);
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        typed_t t = typed_ts(ts[k].fn, ts[k].name, ts[k].max);
        strings_at(&t, heap_buf, "heap");
        strings_at(&t, stack_buf, "stack");
        strings_at(&t, static_buf, "static");
    }
    free(heap);
    assert_int_equal(as_cap_ts.top, 0);
}

/* ---- 2: NULL, bad addresses, memory not known readable ---------------------------- */

/* Calls t with s; checks the record's items are the general path's (and want, when not
 * NULL), and returns how many times the call went through C; *slow (if not NULL) gets the
 * slow reads the call made. */
static uint64_t call_one(const typed_t *t, const char *s, const unsigned char *want, size_t nwant,
                         const char *what, uint64_t *slow) {
    int (*f)(const char *) = (int (*)(const char *))t->stub;
    reset_recs();
    uint64_t c0 = c_entries, s0 = as_capture_slow_reads();
    assert_int_equal(f(s), ts_value(s));
    assert_ptr_equal(ts_seen, s);
    uint64_t c = c_entries - c0;
    if (slow)
        *slow = as_capture_slow_reads() - s0;
    assert_int_equal(collect(), 1);
    unsigned char general[512];
    uint64_t gpr[6] = {(uintptr_t)s};
    size_t ng = general_items(t->proto, t->max_string, gpr, general, sizeof general);
    if (want)
        same_items(general, ng, want, nwant, what);
    rec_items_are(0, t->id, general, ng, what);
    reset_recs();
    return c;
}

/* Proves: NULL gives {0, AS_CAP_NULL}, an address in the zero page gives {8, AS_CAP_BAD}
 * and the address, both in the assembly; an address above the zero page but unmapped, a
 * string in a fresh mmap'ed page (not known readable), one running into a PROT_NONE page
 * and one in a PROT_NONE page go to C, which reads through the kernel (slow reads go up)
 * and gives the general path's items. A string ending exactly at the end of the brk
 * heap's last page stays in the assembly; one with no NUL before that end goes to C and
 * is cut there (AS_CAP_TRUNC). */
static void test_null_bad_unknown(void **state) {
    typed_t t = typed_ts(ts_bad, "ts_bad", 64);
    const uint64_t via_asm = asm_possible() ? 0 : 1; /* C entries of a call the asm takes */
    unsigned char want[64];
    size_t n;
    uint64_t slow;

    n = word_item(want, AS_CAP_NULL, 0, NULL);
    assert_int_equal(call_one(&t, NULL, want, n, "NULL", NULL), via_asm);
    static const uintptr_t low[] = {1, 0x10, 0x800, 0xfff};
    for (size_t i = 0; i < sizeof low / sizeof low[0]; i++) {
        uint64_t a = low[i];
        n = word_item(want, AS_CAP_BAD, 0, &a);
        if (call_one(&t, (const char *)low[i], want, n, "zero page", NULL) != via_asm)
            fail_msg("%#lx: the zero page went through C", (unsigned long)low[i]);
    }
    uint64_t a = 0x1000; /* above the zero page, never mapped (mmap_min_addr) */
    n = word_item(want, AS_CAP_BAD, 0, &a);
    assert_int_equal(call_one(&t, (const char *)0x1000, want, n, "0x1000", NULL), 1);

    char *m = mmap(NULL, 3 * PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    assert_false(known_readable(m));
    strcpy(m + 100, "in a fresh mapping, read through the kernel");
    n = str_item(want, 0, m + 100, strlen(m + 100), 64);
    assert_int_equal(call_one(&t, m + 100, want, n, "mmap", &slow), 1);
    assert_int_equal(slow, 1); /* C read it through the kernel */

    assert_int_equal(mprotect(m + PAGE_SZ, PAGE_SZ, PROT_NONE), 0);
    memcpy(m + PAGE_SZ - 5, "cut!!", 5);                 /* no NUL before the PROT_NONE page */
    as_cap_item h = {5, AS_CAP_STR, 0, AS_CAP_TRUNC, 0}; /* cut by the unreadable page */
    memcpy(want, &h, 8);
    memcpy(want + 8, "cut!!\0\0\0", 8);
    assert_int_equal(call_one(&t, m + PAGE_SZ - 5, want, 16, "into PROT_NONE", &slow), 1);
    assert_int_equal(slow, 1);
    a = (uintptr_t)(m + PAGE_SZ + 16);
    n = word_item(want, AS_CAP_BAD, 0, &a);
    assert_int_equal(call_one(&t, m + PAGE_SZ + 16, want, n, "PROT_NONE", &slow), 1);
    assert_int_equal(slow, 1);
    munmap(m, 3 * PAGE_SZ);

    /* The end of the brk heap: grown here to a page boundary E, nothing mapped above. No
     * malloc may run until it is shrunk back (glibc's heap ends at the break). */
    char *cur = sbrk(0);
    intptr_t inc = (intptr_t)(PAGE_SZ + (PAGE_SZ - (uintptr_t)cur % PAGE_SZ) % PAGE_SZ);
    if (!as_cap_brk_lo || cur == (void *)-1 || sbrk(inc) == (void *)-1) {
        print_message("brk heap not usable here: its end is not tested\n");
        return;
    }
    char *e = cur + inc;
    char probe;
    int e_mapped = as_safe_read(&probe, e, 1) != 0;
    if (!e_mapped) {
        memcpy(e - 6, "edge!", 6); /* the NUL is the heap's last byte */
        n = str_item(want, 0, "edge!", 5, 64);
        uint64_t slow_edge, slow_cut;
        uint64_t c_edge = call_one(&t, e - 6, want, n, "brk end", &slow_edge);
        memset(e - 10, 'x', 10);                                /* no NUL before the end */
        as_cap_item cut = {10, AS_CAP_STR, 0, AS_CAP_TRUNC, 0}; /* cut at the end */
        memcpy(want, &cut, 8);
        memcpy(want + 8, "xxxxxxxxxx\0\0\0\0\0\0", 16);
        uint64_t c_cut = call_one(&t, e - 10, want, 24, "past brk end", &slow_cut);
        assert_true(sbrk(-inc) != (void *)-1);
        assert_int_equal(c_edge, via_asm);
        assert_int_equal(slow_edge, 0);
        assert_int_equal(c_cut, 1);
        assert_int_equal(slow_cut, 1);
    } else {
        assert_true(sbrk(-inc) != (void *)-1);
        print_message("memory right above the break is mapped: its end is not tested\n");
    }
}

/* ---- 3: six integer-register parameters ------------------------------------------- */

static struct {
    int a;
    const char *s;
    long b;
    const char *t;
    unsigned c;
    void *p;
} mix_in;

NOIPA long mix(int a, const char *s, long b, const char *t, unsigned c, void *p) {
    mix_in.a = a;
    mix_in.s = s;
    mix_in.b = b;
    mix_in.t = t;
    mix_in.c = c;
    mix_in.p = p;
    return (long)((unsigned long)a * 3 + (unsigned long)b * 5 + (unsigned long)c * 7 +
                  ((uintptr_t)p & 0xffff));
}

/* Calls fn with rdi..r9 = g[0..5] exactly (all 64 bits, as no C call sets them: an int's
 * upper half is whatever the caller left), al = 0; returns rax. */
uint64_t tt_call6(void *fn, const uint64_t *g);
/* clang-format off */
__asm__(".text\n"
        ".globl tt_call6\n.type tt_call6,@function\ntt_call6:\n"
        "pushq %rbx\n"                 /* rsp = 0 mod 16 at the call */
        "movq %rdi, %r11\n"
        "movq 0(%rsi), %rdi\nmovq 16(%rsi), %rdx\nmovq 24(%rsi), %rcx\n"
        "movq 32(%rsi), %r8\nmovq 40(%rsi), %r9\nmovq 8(%rsi), %rsi\n"
        "xorl %eax, %eax\n"
        "call *%r11\n"
        "popq %rbx\nret\n"
        ".size tt_call6, .-tt_call6\n");
/* clang-format on */

/* Proves a plan of six integer-register parameters (int, string, long, string, unsigned,
 * pointer) through the assembly: with every register set to all 64 bits (garbage in the
 * upper halves of the 32-bit ones) and strings on the stack, in .rodata, NULL, cut at
 * max_string, in the zero page and in a mapping only C may read, the items equal the
 * general path's for the same registers, and the function receives every argument
 * unchanged. */
static void test_six_params(void **state) {
    typed_t t =
        typed((void *)mix, "mix",
              "long mix(int a, const char *s, long b, const char *t, unsigned c, void *p)", 32);
    char on_stack[] = "a string on the caller's stack";
    char *m = mmap(NULL, PAGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    strcpy(m, "mapped: C reads this one");
    const char *strs[][2] = {
        {"literal", on_stack},
        {on_stack, NULL},
        {NULL, "a literal longer than thirty-two bytes, so it is cut"},
        {"", (const char *)0x20},
        {m, "second"}, /* through C */
    };
    static const uint64_t ints[][4] = {
        /* a (int), b (long), c (unsigned), p */
        {0xdeadbeef00000005ull, 1234567890123ull, 0xffffffff00000007ull, 0x7f00deadbeefull},
        {0x00000000fffffff9ull, (uint64_t)-42, 0x12345678ffffffffull, 0},
        {0x80000000ull, 0, 0x1ull, 0xffffffffffffffffull},
    };
    for (size_t k = 0; k < 1 + sizeof strs / sizeof strs[0] * 3; k++) {
        size_t si = k == 0 ? 0 : (k - 1) % (sizeof strs / sizeof strs[0]);
        const uint64_t *iv = ints[k % 3];
        uint64_t g[6] = {iv[0], (uintptr_t)strs[si][0], iv[1], (uintptr_t)strs[si][1], iv[2],
                         iv[3]};
        reset_recs();
        uint64_t c0 = c_entries;
        uint64_t r = tt_call6(t.stub, g);
        uint64_t c = c_entries - c0;
        char what[48];
        snprintf(what, sizeof what, "call %zu (strings %zu)", k, si);
        /* the first call makes the plan in C; the mapping's string needs C */
        if (asm_possible() && c != (k == 0 || strs[si][0] == m))
            fail_msg("%s: %llu C entries", what, (unsigned long long)c);
        assert_true(captures_of(t.id) & AS_CAPTURES_ASM);
        assert_int_equal(mix_in.a, (int)(uint32_t)g[0]);
        assert_ptr_equal(mix_in.s, strs[si][0]);
        assert_int_equal(mix_in.b, (long)g[2]);
        assert_ptr_equal(mix_in.t, strs[si][1]);
        assert_int_equal(mix_in.c, (unsigned)g[4]);
        assert_ptr_equal(mix_in.p, (void *)(uintptr_t)g[5]);
        long want_r = mix((int)(uint32_t)g[0], strs[si][0], (long)g[2], strs[si][1], (unsigned)g[4],
                          (void *)(uintptr_t)g[5]);
        assert_int_equal((long)r, want_r);
        assert_int_equal(collect(), 1);
        assert_int_equal(rec_at(0, NULL).rax, r);
        unsigned char general[512];
        size_t ng = general_items(t.proto, t.max_string, g, general, sizeof general);
        rec_items_are(0, t.id, general, ng, what);
    }
    reset_recs();
    munmap(m, PAGE_SZ);
}

/* ---- 4: varargs the prototype does not name ---------------------------------------- */

/* Returns the sum of (i + 1) * d_i over the doubles that follow tag, as many as the
 * number tag starts with (weighted: a swap of two registers changes it). */
NOIPA double vsum(const char *tag, ...) {
    int n = (int)strtol(tag, NULL, 10);
    va_list ap;
    va_start(ap, tag);
    double s = 0;
    for (int i = 0; i < n && i < 16; i++)
        s += (i + 1) * va_arg(ap, double);
    va_end(ap);
    return s;
}

/* Proves a varargs call whose prototype names only its string (int vsum(const char *tag))
 * keeps xmm0-7 and al for the function: eight doubles come through the assembly's capture
 * (which copies strings with xmm8-10) as passed, the weighted sum is exact, and the string
 * item is the general path's. */
static void test_varargs_survive(void **state) {
    typed_t t = typed((void *)vsum, "vsum", "int vsum(const char *tag)", 256);
    double (*f)(const char *, ...) = (double (*)(const char *, ...))t.stub;
    char tag_stack[] = "8 doubles, a tag on the stack longer than two 16-byte blocks";
    static const char tag_static[] = "8";
    for (int k = 0; k < 40; k++) {
        double d[8];
        for (int i = 0; i < 8; i++)
            d[i] = (k + 1) * 0.25 + i * 1.5 - 3; /* exact in binary */
        const char *tag = k % 2 ? tag_static : tag_stack;
        double want = 0;
        for (int i = 0; i < 8; i++)
            want += (i + 1) * d[i];
        reset_recs();
        uint64_t c0 = c_entries;
        double got = f(tag, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
        if (got != want)
            fail_msg("call %d: sum %.17g, expected %.17g", k, got, want);
        if (asm_possible() && k > 0)
            assert_int_equal(c_entries, c0); /* the assembly took it */
        assert_int_equal(collect(), 1);
        unsigned char general[512], hand[512];
        uint64_t gpr[6] = {(uintptr_t)tag};
        size_t ng = general_items(t.proto, 256, gpr, general, sizeof general);
        size_t nh = str_item(hand, 0, tag, strlen(tag), 256);
        same_items(general, ng, hand, nh, "vsum, general path");
        rec_items_are(0, t.id, general, ng, "vsum");
    }
    reset_recs();
}

/* ---- 5: a string returned ------------------------------------------------------------ */

NOIPA const char *echo(const char *s) {
    return s;
}

/* Proves a typed call returning a string: its argument is captured by the assembly (no C
 * entry) and the exit adds the return item {len, AS_CAP_STR, AS_CAP_RET, TRUNC when cut}
 * with the text; for lengths 0..40 around max_string 16, for NULL (two AS_CAP_NULL
 * items), and the function returns its argument. */
static void test_string_return(void **state) {
    typed_t t = typed((void *)echo, "echo", "const char *echo(const char *s)", 16);
    const char *(*f)(const char *) = (const char *(*)(const char *))t.stub;
    char buf[64];
    for (int len = -2; len <= 40; len++) {
        const char *s = NULL;
        if (len >= 0) {
            for (int i = 0; i < len; i++)
                buf[i] = (char)('A' + (i + len) % 26);
            buf[len] = '\0';
            s = buf;
        }
        reset_recs();
        uint64_t c0 = c_entries;
        assert_ptr_equal(f(s), s);
        if (asm_possible() && len > -2)
            assert_int_equal(c_entries, c0);
        assert_int_equal(collect(), 1);
        assert_true(captures_of(t.id) & AS_CAPTURES_ASM);
        unsigned char want[256];
        uint64_t gpr[6] = {(uintptr_t)s};
        size_t n = general_items(t.proto, 16, gpr, want, sizeof want);
        if (s)
            n += str_item(want + n, AS_CAP_RET, s, (size_t)len, 16);
        else
            n += word_item(want + n, AS_CAP_NULL, AS_CAP_RET, NULL);
        char what[32];
        snprintf(what, sizeof what, "echo, length %d", len);
        rec_items_are(0, t.id, want, n, what);
        assert_int_equal(rec_at(0, NULL).rax, (uintptr_t)s);
    }
    reset_recs();
    assert_int_equal(as_cap_ts.top, 0);
}

/* ---- 6: nested typed calls --------------------------------------------------------- */

static int (*inner_stub)(const char *);
static uint32_t top_in_outer, top_in_inner;

NOIPA int nest_inner(const char *s) {
    top_in_inner = as_cap_ts.top;
    return (int)strlen(s);
}

/* Calls nest_inner through its stub with a string of its own frame's. */
NOIPA int nest_outer(const char *s) {
    top_in_outer = as_cap_ts.top;
    char mine[64];
    snprintf(mine, sizeof mine, "inner call of a %zu-byte outer string", strlen(s));
    return inner_stub(mine) * 1000 + (int)strlen(s);
}

static int (*deep_stub)(const char *);
static uint32_t deep_top[24];

/* Calls itself through its stub until the number s starts with reaches 0, each level
 * with its own string on its own frame; deep_top[level] = the arena's top inside it. */
NOIPA int deep(const char *s) {
    int n = (int)strtol(s, NULL, 10);
    if (n >= 0 && n < 24)
        deep_top[n] = as_cap_ts.top;
    if (n <= 0)
        return 0;
    char next[64];
    snprintf(next, sizeof next, "%d levels left below this one, on its frame", n - 1);
    return 1 + deep_stub(next);
}

/* Proves nested typed calls through the assembly: an outer call whose function calls
 * another typed target through its stub with a different string, and a typed function
 * recursing 20 levels through its own stub: every record carries its own call's items
 * (the general path's), innermost first; inside each call the arena's top is the sum of
 * the items of the calls in flight; afterwards it is back where it started; and after the
 * first calls none goes through C. */
static void test_nested(void **state) {
    typed_t in = typed((void *)nest_inner, "nest_inner", "int nest_inner(const char *s)", 256);
    typed_t out = typed((void *)nest_outer, "nest_outer", "int nest_outer(const char *s)", 24);
    inner_stub = (int (*)(const char *))in.stub;
    int (*f)(const char *) = (int (*)(const char *))out.stub;
    static const char outer_text[] = "the outer call's string, cut at 24 bytes";
    for (int k = 0; k < 3; k++) { /* k = 0: both first calls (C) */
        reset_recs();
        uint32_t top0 = as_cap_ts.top;
        uint64_t c0 = c_entries;
        const char *s = outer_text + k;
        int r = f(s);
        if (asm_possible() && k > 0)
            assert_int_equal(c_entries, c0);
        assert_int_equal(as_cap_ts.top, top0);
        char mine[64];
        snprintf(mine, sizeof mine, "inner call of a %zu-byte outer string", strlen(s));
        assert_int_equal(r, (int)strlen(mine) * 1000 + (int)strlen(s));
        assert_int_equal(collect(), 2);
        unsigned char want[512];
        uint64_t g_in[6] = {(uintptr_t)mine}, g_out[6] = {(uintptr_t)s};
        size_t n_in = general_items(in.proto, 256, g_in, want, sizeof want);
        rec_items_are(0, in.id, want, n_in, "inner");
        size_t n_out = general_items(out.proto, 24, g_out, want, sizeof want);
        rec_items_are(1, out.id, want, n_out, "outer");
        assert_int_equal(top_in_outer, top0 + n_out);
        assert_int_equal(top_in_inner, top0 + n_out + n_in);
    }

    typed_t d = typed((void *)deep, "deep", "int deep(const char *s)", 256);
    deep_stub = (int (*)(const char *))d.stub;
    for (int k = 0; k < 2; k++) {
        reset_recs();
        uint32_t top0 = as_cap_ts.top;
        uint64_t c0 = c_entries;
        char first[64];
        snprintf(first, sizeof first, "%d levels left below this one, on its frame", 20);
        assert_int_equal(deep_stub(first), 20);
        if (asm_possible() && k > 0)
            assert_int_equal(c_entries, c0);
        assert_int_equal(as_cap_ts.top, top0);
        assert_int_equal(collect(), 21);
        uint32_t sum = top0;
        for (int level = 20; level >= 0; level--) { /* outermost first */
            char text[64];
            snprintf(text, sizeof text, "%d levels left below this one, on its frame", level);
            unsigned char want[512];
            size_t n = str_item(want, 0, text, strlen(text), 256);
            sum += (uint32_t)n;
            assert_int_equal(deep_top[level], sum);
            char what[32];
            snprintf(what, sizeof what, "level %d", level);
            rec_items_are((size_t)level, d.id, want, n, what); /* innermost recorded first */
        }
    }
    reset_recs();
}

/* ---- 7: a signal handler making typed calls ---------------------------------------- */

static int (*sig_ts)(const char *);
static volatile sig_atomic_t sig_calls, sig_bad;
static const char handler_text[] = "from the SIGALRM handler, a string of its own";

static void sig_typed_call(int sig) {
    (void)sig;
    int e = errno;
    if (sig_ts(handler_text) == ts_value(handler_text))
        sig_calls++;
    else
        sig_bad++;
    errno = e;
}

#define MAIN_FMT "main loop call %d: long enough for the 16-byte copy"

/* Checks the records held: the main loop's in order from *mains on, the handler's
 * counted in *handlers; drops them. */
static void check_sig_recs(int id, size_t *mains, size_t *handlers) {
    size_t n = collect();
    for (size_t i = 0; i < n; i++) {
        const unsigned char *items;
        as_callrec r = rec_at(i, &items);
        assert_int_equal(r.id, (uint32_t)id);
        assert_int_equal(r.flags, AS_CALL_RETURNED);
        assert_true(r.t1 >= r.t0);
        unsigned char want[256];
        size_t nw = str_item(want, 0, handler_text, strlen(handler_text), 256);
        if (r.ext == nw && memcmp(items, want, nw) == 0) {
            (*handlers)++;
            continue;
        }
        char text[96];
        snprintf(text, sizeof text, MAIN_FMT, (int)*mains);
        nw = str_item(want, 0, text, strlen(text), 256);
        char what[64];
        snprintf(what, sizeof what, "record of main loop call %zu", *mains);
        same_items(items, r.ext, want, nw, what);
        (*mains)++;
    }
    as_test_nrec = 0; /* all checked: the store is emptied (not read again) */
    as_test_blob_len = 0;
}

/* Proves a SIGALRM handler making typed calls through the stub (a timer about every
 * 50 us) while the main loop makes typed calls with other strings corrupts nothing:
 * every record holds exactly the items of the call it belongs to (the handler's string,
 * or the main loop's own numbered string, in order), no main-loop call is lost, and the
 * handler's calls are recorded at most once each (those interrupting the hook itself pass
 * through untracked). Bounded: 200000 calls or 5 s. */
static void test_signal_handler(void **state) {
    typed_t t = typed_ts(ts_sig, "ts_sig", 256);
    int (*f)(const char *) = (int (*)(const char *))t.stub;
    sig_ts = f;
    sig_calls = 0;
    sig_bad = 0;
    struct sigaction old;
    uint64_t c0 = c_entries;
    as_test_alarm_start(sig_typed_call, &old);
    enum { CALLS = 200000 };
    int64_t deadline = as_mono_ns() + 5000000000LL;
    size_t mains = 0, handlers = 0;
    int made = 0, wrong = 0;
    char text[96];
    for (int i = 0; i < CALLS && (i % 1024 || as_mono_ns() < deadline); i++, made++) {
        snprintf(text, sizeof text, MAIN_FMT, i);
        wrong += f(text) != ts_value(text);
        if (i % 4096 == 4095)
            check_sig_recs(t.id, &mains, &handlers);
    }
    as_test_alarm_stop(&old);
    uint64_t via_c = c_entries - c0;
    check_sig_recs(t.id, &mains, &handlers);
    assert_int_equal(wrong, 0);
    assert_int_equal(sig_bad, 0);
    assert_int_equal(mains, (size_t)made); /* none lost */
    assert_true(sig_calls > 0);            /* the handler did interrupt the loop */
    assert_true(handlers <= (size_t)sig_calls);
    assert_int_equal(as_hook_depth(), 0);
    assert_int_equal(as_cap_ts.top, 0);
    print_message("%d calls, %d from the handler, %zu of those tracked, %llu through C\n", made,
                  (int)sig_calls, handlers, (unsigned long long)via_c);
}

/* Stops the timer and the handler even when test_signal_handler failed half-way (a
 * timer left running would interrupt the next tests, threads' first calls included). */
static int sig_teardown(void **state) {
    (void)state;
    as_test_alarm_stop(NULL);
    return 0;
}

/* ---- 8: two threads -------------------------------------------------------------------- */

#define THR_CALLS 30000

typedef struct thr_arg {
    int (*f)(const char *);
    int which; /* 0: strings on the thread's stack; 1: in a static array */
    int32_t tid;
    uint64_t c_entries; /* its calls that went through C */
    int wrong;
    uint32_t top_after;
} thr_arg;

static char thr_static[96]; /* thread 1's strings (only it writes them) */

static void thr_text(char *buf, size_t cap, int which, int i) {
    if (which == 0)
        snprintf(buf, cap, "thread zero, call %d, its string on its own stack", i);
    else
        snprintf(buf, cap, "T1/%d", i);
}

static void *thr_main(void *p) {
    thr_arg *a = p;
    a->tid = (int32_t)syscall(SYS_gettid);
    char on_stack[96];
    char *buf = a->which == 0 ? on_stack : thr_static;
    for (int i = 0; i < THR_CALLS; i++) {
        thr_text(buf, 96, a->which, i);
        a->wrong += a->f(buf) != ts_value(buf);
    }
    a->c_entries = c_entries;
    a->top_after = as_cap_ts.top;
    return NULL;
}

/* Proves two threads making typed calls through one stub at once, with their own strings
 * (one on its stack, one in .data), each call's string numbered: every record's items are
 * its own thread's string for its call, in order, none lost or mixed; only each thread's
 * first call goes through C, and each thread's arena is empty afterwards. */
static void test_two_threads(void **state) {
    typed_t t = typed_ts(ts_thr, "ts_thr", 256);
    thr_arg args[2];
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        memset(&args[k], 0, sizeof args[k]);
        args[k].f = (int (*)(const char *))t.stub;
        args[k].which = k;
    }
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&th[k], NULL, thr_main, &args[k]), 0);
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
    size_t n = collect();
    assert_int_equal(n, 2 * THR_CALLS);
    int next[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        const unsigned char *items;
        as_callrec r = rec_at(i, &items);
        int k = r.tid == args[0].tid ? 0 : r.tid == args[1].tid ? 1 : -1;
        assert_true(k >= 0);
        assert_int_equal(r.id, (uint32_t)t.id);
        assert_int_equal(r.flags, AS_CALL_RETURNED);
        char text[96];
        thr_text(text, sizeof text, k, next[k]);
        unsigned char want[256];
        size_t nw = str_item(want, 0, text, strlen(text), 256);
        char what[48];
        snprintf(what, sizeof what, "thread %d, call %d", k, next[k]);
        same_items(items, r.ext, want, nw, what);
        next[k]++;
    }
    for (int k = 0; k < 2; k++) {
        assert_int_equal(next[k], THR_CALLS);
        assert_int_equal(args[k].wrong, 0);
        assert_int_equal(args[k].top_after, 0);
        if (asm_possible())
            assert_int_equal(args[k].c_entries, 1); /* its first call: shadow stack, arena */
    }
    reset_recs();
}

NOIPA static int no_params(void) {
    return 77;
}

/* Proves a typed target with no parameters (`int no_params(void)`) is taken by the
 * assembly too: its records carry no items (ext 0) and the right return value, and the
 * capture arena's top is where it was after each call. */
static void test_no_params(void **state) {
    (void)state;
    typed_t t = typed((void *)no_params, "no_params", "int no_params(void)", 256);
    int (*f)(void) = (int (*)(void))t.stub;
    for (int k = 0; k < 50; k++) {
        reset_recs();
        uint64_t c0 = c_entries;
        uint32_t top0 = as_cap_ts.top;
        assert_int_equal(f(), 77);
        if (asm_possible() && k > 0) {
            assert_true(captures_of(t.id) & AS_CAPTURES_ASM);
            assert_int_equal(c_entries, c0); /* the assembly took it */
        }
        assert_int_equal(as_cap_ts.top, top0);
        assert_int_equal(collect(), 1);
        as_callrec r = rec_at(0, NULL);
        assert_int_equal(r.id, t.id);
        assert_int_equal(r.ext, 0);
        assert_int_equal((int)r.rax, 77);
    }
    reset_recs();
}

/* Proves the assembly's exit leaves a record larger than half the ring to C, as the ring
 * itself would refuse it (as_ring_fits): through a 4 KiB ring, a typed call whose string
 * item alone takes 3 KiB gets its record without the items (ext 0, the call's values
 * right), while a short string still travels with its record. */
static void test_items_over_half_ring(void **state) {
    (void)state;
    typed_t t = typed_ts(ts_big, "ts_big", 4000);
    int (*f)(const char *) = (int (*)(const char *))t.stub;
    static char big[3001];
    memset(big, 'z', 3000);
    assert_int_equal(f("warm"), ts_value("warm")); /* the plan, the thread's arena */
    reset_recs();
    as_ring *small = as_ring_create(4096);
    assert_non_null(small);
    as_test_rings_add(small);
    as_ring *mine = as_pipe_tring;
    as_pipe_tring = small;
    int got_big = f(big), got_small = f("short");
    as_pipe_tring = mine;
    assert_int_equal(got_big, ts_value(big));
    assert_int_equal(got_small, ts_value("short"));
    assert_int_equal(collect(), 2);
    as_callrec r = rec_at(0, NULL);
    assert_int_equal(r.ext, 0);
    assert_int_equal((int)r.rax, ts_value(big));
    const unsigned char *items;
    r = rec_at(1, &items);
    unsigned char want[64];
    size_t nw = str_item(want, 0, "short", 5, 4000);
    same_items(items, r.ext, want, nw, "short string through the small ring");
    reset_recs();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_strings_match_general, setup),
        cmocka_unit_test_setup(test_null_bad_unknown, setup),
        cmocka_unit_test_setup(test_six_params, setup),
        cmocka_unit_test_setup(test_varargs_survive, setup),
        cmocka_unit_test_setup(test_string_return, setup),
        cmocka_unit_test_setup(test_nested, setup),
        cmocka_unit_test_setup_teardown(test_signal_handler, setup, sig_teardown),
        cmocka_unit_test_setup(test_two_threads, setup),
        cmocka_unit_test_setup(test_no_params, setup),
        cmocka_unit_test_setup(test_items_over_half_ring, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
