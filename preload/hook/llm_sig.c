/* llm_sig.c - BoringSSL linked into a program without its symbols (bun, and the programs
 * bun compiles, such as Claude Code's native executable) found by what the library leaves
 * behind: the file name its error reports carry ("ssl/s3_pkt.cc") and its table of record
 * functions (SSL_PROTOCOL_METHOD), whose entries for reading and writing application data
 * and for freeing a connection are then entry-patched (llm_sig.h). */
#include "hook/llm_sig.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/dynlib.h"
#include "core/log.h"
#include "hook/dl_capstone.h"
#include "hook/llm_tls.h"
#include "hook/patch.h"

/* Pointer encodings of .eh_frame (the LSB "DWARF extensions" of the x86-64 ABI). */
enum {
    EH_ABSPTR = 0x00,
    EH_UDATA4 = 0x03,
    EH_UDATA8 = 0x04,
    EH_SDATA4 = 0x0b,
    EH_SDATA8 = 0x0c,
    EH_PCREL = 0x10,
    EH_DATAREL = 0x30,
};

/* The file name BoringSSL's s3_pkt.cc passes to its error reports (OPENSSL_PUT_ERROR puts
 * __FILE__ in every call), with its terminating NUL. Every function of that file that can
 * fail references it. */
static const char k_file[] = "ssl/s3_pkt.cc";

/* Address ranges of one object, in memory. */
#define MAX_RANGES 16
typedef struct ranges {
    uintptr_t lo[MAX_RANGES], hi[MAX_RANGES];
    long long off[MAX_RANGES]; /* where the same bytes are in the file, or -1 */
    int n;
} ranges;

static void range_add(ranges *r, uintptr_t lo, uintptr_t hi, long long off) {
    if (r->n < MAX_RANGES && lo < hi) {
        r->lo[r->n] = lo;
        r->hi[r->n] = hi;
        r->off[r->n] = off;
        r->n++;
    }
}

static int in_ranges(const ranges *r, uintptr_t a, size_t len) {
    for (int i = 0; i < r->n; i++)
        if (a >= r->lo[i] && a + len <= r->hi[i] && a + len >= a)
            return 1;
    return 0;
}

/* What is known of one object's code while its table is looked for. */
#define MAX_SITES 4096
#define MAX_FN 16384 /* the longest record function considered, in bytes */
typedef struct fdes {
    const uint8_t *hdr; /* .eh_frame_hdr, or NULL: then function ends are found by decoding */
    const int32_t *tab; /* pairs (initial location, FDE), relative to hdr, sorted */
    size_t count;
    const ranges *text;
    uintptr_t *sites; /* code addresses that name the file name string, sorted */
    size_t nsites;
    csh cs; /* the instruction decoder (detail on), or 0 */
    cs_insn *insn;
} fdes;

/* Reads a pointer encoded as enc at *pp (advancing it); returns 0 when enc is not one the
 * compilers emit for code addresses. */
static int read_enc(const uint8_t **pp, uint8_t enc, uintptr_t *out) {
    const uint8_t *p = *pp;
    intptr_t v;
    switch (enc & 0x0f) {
    case EH_ABSPTR:
    case EH_UDATA8:
    case EH_SDATA8: {
        uint64_t u;
        memcpy(&u, p, 8);
        v = (intptr_t)u;
        *pp = p + 8;
        break;
    }
    case EH_UDATA4: {
        uint32_t u;
        memcpy(&u, p, 4);
        v = (intptr_t)u;
        *pp = p + 4;
        break;
    }
    case EH_SDATA4: {
        int32_t s;
        memcpy(&s, p, 4);
        v = s;
        *pp = p + 4;
        break;
    }
    default:
        return 0;
    }
    switch (enc & 0x70) {
    case 0:
        break;
    case EH_PCREL:
        v += (intptr_t)p;
        break;
    default:
        return 0;
    }
    *out = (uintptr_t)v;
    return 1;
}

static uint64_t uleb(const uint8_t **pp, const uint8_t *end) {
    uint64_t v = 0;
    unsigned sh = 0;
    while (*pp < end) {
        uint8_t b = *(*pp)++;
        if (sh < 64)
            v |= (uint64_t)(b & 0x7f) << sh;
        sh += 7;
        if (!(b & 0x80))
            break;
    }
    return v;
}

/* The size of the function whose FDE is at fde (from its CIE's pointer encoding), or 0. */
static size_t fde_size(const uint8_t *fde, uintptr_t start) {
    uint32_t len, cieoff;
    memcpy(&len, fde, 4);
    if (len == 0 || len == 0xffffffffu)
        return 0;
    memcpy(&cieoff, fde + 4, 4);
    const uint8_t *cie = fde + 4 - cieoff;
    uint32_t clen;
    memcpy(&clen, cie, 4);
    if (clen == 0 || clen == 0xffffffffu)
        return 0;
    const uint8_t *p = cie + 9, *end = cie + 4 + clen; /* after length, id, version */
    const char *aug = (const char *)p;
    size_t alen = strnlen(aug, (size_t)(end - p));
    if (p + alen >= end)
        return 0;
    p += alen + 1;
    uleb(&p, end); /* code alignment */
    uleb(&p, end); /* data alignment (sleb: skipped the same way) */
    if (cie[8] == 1)
        p++; /* return register, one byte in version 1 */
    else
        uleb(&p, end);
    uint8_t enc = EH_ABSPTR;
    if (aug[0] == 'z') {
        uleb(&p, end); /* augmentation data length */
        for (size_t i = 1; i < alen && p < end; i++) {
            if (aug[i] == 'R') {
                enc = *p++;
            } else if (aug[i] == 'L') {
                p++;
            } else if (aug[i] == 'P') {
                uint8_t penc = *p++;
                uintptr_t dummy;
                if (!read_enc(&p, penc & 0x7f, &dummy))
                    return 0;
            } else if (aug[i] != 'S' && aug[i] != 'B') {
                return 0;
            }
        }
    }
    const uint8_t *q = fde + 8;
    uintptr_t pc, range;
    if (!read_enc(&q, enc, &pc) || !read_enc(&q, enc & 0x0f, &range) || pc != start)
        return 0;
    return range < (1u << 20) ? (size_t)range : 0;
}

/* Where the function starting at a ends when no unwind table says it: decoded from a
 * until an instruction that ends the flow (ret, jmp, int3, ud2, hlt, or a call followed
 * by padding) with no forward branch seen reaching further. Returns the extent in bytes,
 * 0 when the bytes do not decode. */
static size_t walk(const fdes *f, uintptr_t a) {
    uintptr_t end = a + MAX_FN, reach = a, pc = a;
    for (int i = 0; i < f->text->n; i++) /* never decode past the segment's end */
        if (a >= f->text->lo[i] && a < f->text->hi[i] && f->text->hi[i] < end)
            end = f->text->hi[i];
    while (pc < end) {
        const uint8_t *code = (const uint8_t *)pc;
        size_t left = end - pc;
        uint64_t addr = pc;
        if (!as_cs.cs_disasm_iter(f->cs, &code, &left, &addr, f->insn))
            return 0;
        const cs_insn *in = f->insn;
        uintptr_t next = pc + in->size;
        int stop = 0;
        if (as_cs.cs_insn_group(f->cs, in, CS_GRP_JUMP)) {
            const cs_x86 *x = &in->detail->x86;
            for (int i = 0; i < x->op_count; i++)
                if (x->operands[i].type == X86_OP_IMM) {
                    uintptr_t t = (uintptr_t)x->operands[i].imm;
                    if (t > next && t < end && t > reach)
                        reach = t;
                }
            stop = in->id == X86_INS_JMP || in->id == X86_INS_LJMP;
        } else if (as_cs.cs_insn_group(f->cs, in, CS_GRP_RET) || in->id == X86_INS_INT3 ||
                   in->id == X86_INS_UD2 || in->id == X86_INS_HLT) {
            stop = 1;
        } else if (as_cs.cs_insn_group(f->cs, in, CS_GRP_CALL)) {
            stop =
                next < end && (*(const uint8_t *)next == 0xcc || *(const uint8_t *)next == 0x90 ||
                               (*(const uint8_t *)next == 0x66 && next + 1 < end &&
                                ((const uint8_t *)next)[1] == 0x2e));
        }
        if (stop && next >= reach)
            return next - a;
        pc = next;
    }
    return 0;
}

/* The size of the function starting exactly at a: from its FDE when the object has an
 * unwind table (0 when no FDE starts at a), else by decoding it. */
static size_t fn_size(const fdes *f, uintptr_t a) {
    size_t sz = 0;
    if (f->hdr) {
        intptr_t want = (intptr_t)(a - (uintptr_t)f->hdr);
        size_t l = 0, h = f->count;
        while (l < h) {
            size_t mid = l + (h - l) / 2;
            intptr_t loc = f->tab[2 * mid];
            if (loc == want) {
                sz = fde_size(f->hdr + f->tab[2 * mid + 1], a);
                break;
            }
            if (loc < want)
                l = mid + 1;
            else
                h = mid;
        }
    } else if (f->cs) {
        sz = walk(f, a);
    }
    return sz && in_ranges(f->text, a, sz) ? sz : 0;
}

/* The size of the function starting exactly at a, when a code site naming the string lies
 * within MAX_FN bytes after it (else 0: not a function of that file); 0 too when an unwind
 * table exists and no FDE starts at a. *named: that site lies inside the function. */
static size_t func_at(const fdes *f, uintptr_t a, int *named) {
    *named = 0;
    if (!in_ranges(f->text, a, 1))
        return 0;
    size_t lo = 0, hi = f->nsites; /* the first site at or after a */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->sites[mid] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == f->nsites || f->sites[lo] - a >= MAX_FN)
        return 0;
    size_t sz = fn_size(f, a);
    if (!sz || !in_ranges(f->text, a, sz))
        return 0;
    *named = f->sites[lo] < a + sz;
    return sz;
}

/* Collects into f->sites the code addresses that name the address s among the bytes
 * buf[0, len), which are the code at address at: as a 32-bit immediate (objects linked at
 * a fixed address: memchr for its first byte, then the other three) or, in a
 * position-independent object (pic), as a RIP-relative displacement ending its
 * instruction. A site is recorded when its four bytes lie inside buf. */
static void find_sites(fdes *f, const uint8_t *buf, size_t len, uintptr_t at, uintptr_t s,
                       int pic) {
    const uint8_t *p = buf, *e = buf + len;
    if (!pic && s <= UINT32_MAX) {
        uint8_t want[4] = {(uint8_t)s, (uint8_t)(s >> 8), (uint8_t)(s >> 16), (uint8_t)(s >> 24)};
        while (e - p >= 4 && f->nsites < MAX_SITES) {
            const uint8_t *hit = memchr(p, want[0], (size_t)(e - p - 3));
            if (!hit)
                break;
            if (memcmp(hit + 1, want + 1, 3) == 0)
                f->sites[f->nsites++] = at + (uintptr_t)(hit - buf);
            p = hit + 1;
        }
        return;
    }
    for (; e - p >= 4 && f->nsites < MAX_SITES; p++) {
        int32_t d;
        memcpy(&d, p, 4);
        uintptr_t a = at + (uintptr_t)(p - buf);
        if (a + 4 + (intptr_t)d == s)
            f->sites[f->nsites++] = a;
    }
}

/* find_sites over the code [lo, hi), whose bytes are also at offset off of the object's
 * file fd: read from the file in chunks when it can be (copying from the page cache costs
 * a fraction of mapping tens of megabytes of code page by page), else from memory. */
#define CHUNK (1u << 20)
static void sites_in(fdes *f, int fd, off_t off, uintptr_t lo, uintptr_t hi, uintptr_t s, int pic) {
    uint8_t *buf = fd >= 0 ? malloc(CHUNK + 3) : NULL;
    size_t done = 0, len = hi - lo;
    while (buf && done < len) {
        size_t want = len - done < CHUNK + 3 ? len - done : CHUNK + 3;
        ssize_t got = pread(fd, buf, want, off + (off_t)done);
        if (got != (ssize_t)want)
            break;
        find_sites(f, buf, want, lo + done, s, pic);
        if (want < CHUNK + 3)
            done = len;
        else
            done += CHUNK; /* the last three bytes again: a site across the boundary */
    }
    if (!buf || done < len) {
        if (buf)
            f->nsites = 0; /* the file is not what is mapped: all from memory */
        find_sites(f, (const uint8_t *)lo, len, lo, s, pic);
    }
    free(buf);
}

static int cmp_addr(const void *a, const void *b) {
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* The record functions found in one table: [0] open_change_cipher_spec, [1] open_app_data,
 * [2] write_app_data, [3] dispatch_alert. */
typedef struct found {
    uintptr_t fn[4];
    size_t size[4];
    uintptr_t at; /* where the table holds fn[0] */
} found;

/* The state of the search for SSL_PROTOCOL_METHOD: the one run of exactly four
 * consecutive function pointers that all point at functions of s3_pkt.cc. Since 2017 the
 * structure lists open_handshake (s3_both.cc), open_change_cipher_spec, open_app_data,
 * write_app_data, dispatch_alert (the four of s3_pkt.cc), then functions of other files. */
typedef struct tsearch {
    int run;
    found cur;
    int seen; /* distinct tables seen: 0, 1, or more (ambiguous) */
    found out;
} tsearch;

static void run_end(tsearch *t) {
    if (t->run == 4) {
        if (t->seen == 0 || memcmp(&t->cur, &t->out, sizeof t->cur) != 0)
            t->seen++;
        if (t->seen == 1)
            t->out = t->cur;
    }
    t->run = 0;
}

/* Feeds n aligned words (their values, wherever read from) to the search. */
static void find_table(const fdes *f, const uintptr_t *words, size_t n, uintptr_t at, tsearch *t) {
    for (size_t i = 0; i < n; i++) {
        uintptr_t w = words[i];
        int hit = 0;
        size_t sz = 0;
        /* most words are not addresses shortly before a site: one comparison each */
        if (w - f->sites[0] + MAX_FN <= f->sites[f->nsites - 1] - f->sites[0] + MAX_FN)
            sz = func_at(f, w, &hit);
        if (!hit) {
            run_end(t);
            continue;
        }
        if (t->run < 4) {
            if (t->run == 0)
                t->cur.at = at + 8 * i;
            t->cur.fn[t->run] = w;
            t->cur.size[t->run] = sz;
        }
        t->run++;
    }
}

/* find_table over the data [lo, hi), read from the object's file fd at offset off (data no
 * relocation touches: the read-only segment) in chunks, or from memory (fd < 0: the
 * relocated .data.rel.ro, or when the file cannot be read). */
static void table_in(const fdes *f, int fd, off_t off, uintptr_t lo, uintptr_t hi, tsearch *t) {
    uintptr_t a = (lo + 7) & ~(uintptr_t)7;
    if (a >= hi)
        return;
    size_t n = (hi - a) / 8, done = 0;
    off += (off_t)(a - lo);
    uintptr_t *buf = fd >= 0 ? malloc(CHUNK) : NULL;
    while (buf && done < n) {
        size_t want = n - done < CHUNK / 8 ? n - done : CHUNK / 8;
        if (pread(fd, buf, want * 8, off + (off_t)(done * 8)) != (ssize_t)(want * 8))
            break;
        find_table(f, buf, want, a + 8 * done, t);
        done += want;
    }
    free(buf);
    if (done < n)
        find_table(f, (const uintptr_t *)a + done, n - done, a + 8 * done, t);
    run_end(t);
}

/* Ends of the connection: the wrappers, and the originals (trampolines). */
typedef struct span {
    uint8_t *data;
    size_t size;
} span;
typedef int (*open_fn)(void *ssl, span *out, size_t *consumed, uint8_t *alert, uint8_t *in,
                       size_t len);
typedef int (*write_fn)(void *ssl, _Bool *needs_handshake, size_t *written, const uint8_t *in,
                        size_t len);
static open_fn real_open;
static write_fn real_write;

/* ssl_open_record_t: the record was application data (out: its plaintext), or the peer
 * closed the connection (close_notify). */
enum { OPEN_SUCCESS = 0, OPEN_CLOSE_NOTIFY = 3 };

static int w_open_app_data(void *ssl, span *out, size_t *consumed, uint8_t *alert, uint8_t *in,
                           size_t len) {
    int r = real_open(ssl, out, consumed, alert, in, len);
    if (r == OPEN_SUCCESS && out && out->data && out->size)
        as_llm_tls_observe(ssl, 0, out->data, out->size);
    else if (r == OPEN_CLOSE_NOTIFY)
        as_llm_tls_end(ssl);
    return r;
}

/* 1: every byte of in[0, *written) is on its way (earlier attempts that returned -1
 * included: the caller must retry with the same bytes). */
static int w_write_app_data(void *ssl, _Bool *needs_handshake, size_t *written, const uint8_t *in,
                            size_t len) {
    int r = real_write(ssl, needs_handshake, written, in, len);
    /* in below 64 KiB: not a buffer. Older BoringSSL passed (const uint8_t *buf, int len)
     * where (written, in) are now: there r == 1 means len == 1, so in == 1 is refused. */
    if (r == 1 && written && (uintptr_t)in >= 65536 && *written <= len)
        as_llm_tls_observe(ssl, 1, in, *written);
    return r;
}

typedef void (*free_fn)(void *ssl);
static free_fn real_free;

static void w_ssl_free(void *ssl) {
    as_llm_tls_end(ssl);
    real_free(ssl);
}

/* ssl_free of the table whose run of s3_pkt.cc functions t found: SSL_PROTOCOL_METHOD
 * begins with is_dtls (a bool, 0 for TLS, padded to 8 bytes), then six function pointers
 * before open_change_cipher_spec (ssl_new, ssl_free, get_message, next_message,
 * has_unprocessed_handshake_data, open_handshake), as in both builds checked (bun 1.4.5,
 * Claude Code 2.1.197). Returns its address (*size its extent), or 0 when the words there
 * do not look so: then connections end only with close_notify. */
static uintptr_t table_free(const fdes *f, const ranges *ro, const found *t, size_t *size) {
    uintptr_t start = t->at - 7 * 8;
    if (t->at < 7 * 8 || !in_ranges(ro, start, 7 * 8))
        return 0;
    const uintptr_t *w = (const uintptr_t *)start;
    if (w[0] != 0)
        return 0;
    for (int i = 1; i < 7; i++)
        if (!fn_size(f, w[i]))
            return 0;
    *size = fn_size(f, w[2]);
    return w[2];
}

#define MAX_DONE 256
static uintptr_t g_done[MAX_DONE];
static int g_ndone;
static int g_patched;
static as_patch g_patch[3];

static int done_before(uintptr_t lo) {
    for (int i = 0; i < g_ndone; i++)
        if (g_done[i] == lo)
            return 1;
    if (g_ndone < MAX_DONE)
        g_done[g_ndone++] = lo;
    return 0;
}

/* The start of the NUL-terminated string that ends with k_file at hit, within [lo, hit]. */
static uintptr_t string_start(uintptr_t lo, const char *hit) {
    const char *p = hit;
    while ((uintptr_t)p > lo && p[-1] >= 0x20 && p[-1] < 0x7f && hit - p < 512)
        p--;
    return (uintptr_t)p;
}

/* Whether the NUL-terminated k_file at address a (mapped) ends a path ("/ssl/s3_pkt.cc")
 * or is the whole string; then the string's start, else 0. */
static uintptr_t string_at(uintptr_t lo, uintptr_t a) {
    const char *hit = (const char *)a;
    if (a == lo || hit[-1] == '/' || hit[-1] == '\0')
        return string_start(lo, hit);
    return 0;
}

/* The address of BoringSSL's file name in the read-only data [lo, hi), or 0: read from
 * the object's file fd at offset off in chunks (fd < 0: from memory). */
#define SMALL (2u << 20)
#define SCHUNK (64u << 10)
static uintptr_t string_in(int fd, off_t off, uintptr_t lo, uintptr_t hi) {
    size_t len = hi - lo, done = 0;
    /* small segments (the C library's) are cheaper to search in place than to copy */
    char *buf = fd >= 0 && len >= SMALL ? malloc(SCHUNK + sizeof k_file) : NULL;
    while (buf && done < len) {
        size_t want = len - done < SCHUNK + sizeof k_file ? len - done : SCHUNK + sizeof k_file;
        if (pread(fd, buf, want, off + (off_t)done) != (ssize_t)want)
            break;
        const char *p = buf, *hit;
        while ((hit = memmem(p, want - (size_t)(p - buf), k_file, sizeof k_file)) != NULL) {
            uintptr_t a = lo + done + (uintptr_t)(hit - buf);
            if (memcmp((const void *)a, k_file, sizeof k_file) == 0 && string_at(lo, a)) {
                free(buf);
                return string_at(lo, a);
            }
            p = hit + 1;
        }
        done += want < SCHUNK + sizeof k_file ? want : SCHUNK;
    }
    free(buf);
    if (done >= len)
        return 0;
    const char *p = (const char *)lo + done, *hit; /* the rest from memory */
    while ((hit = memmem(p, hi - (uintptr_t)p, k_file, sizeof k_file)) != NULL) {
        uintptr_t a = string_at(lo, (uintptr_t)hit);
        if (a)
            return a;
        p = hit + 1;
    }
    return 0;
}

/* One object: 1 when its BoringSSL was patched, 0 when it has none, -1 when it has one
 * that could not be found or patched (said once). */
static int scan_obj(const as_obj *o) {
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    ranges text = {0}, ro = {0};
    const uint8_t *hdr = NULL;
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        uintptr_t lo = o->base + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            range_add(&text, lo, hi, (long long)ph->p_offset);
        else if (ph->p_type == PT_LOAD && (ph->p_flags & (PF_R | PF_W)) == PF_R)
            range_add(&ro, lo, lo + ph->p_filesz, (long long)ph->p_offset);
        else if (ph->p_type == PT_GNU_RELRO)
            range_add(&ro, lo, hi, -1); /* .data.rel.ro: the table in a position-independent
                                       object, where its pointers are relocated */
        else if (ph->p_type == PT_GNU_EH_FRAME)
            hdr = (const uint8_t *)lo;
    }
    /* The object's file: what is read from it is not faulted into this process. */
    int big = 0;
    for (int i = 0; i < ro.n; i++)
        big |= ro.hi[i] - ro.lo[i] >= SMALL;
    int file = big ? open(o->name[0] ? o->name : "/proc/self/exe", O_RDONLY | O_CLOEXEC) : -1;
    uintptr_t s = 0;
    for (int i = 0; i < ro.n && !s; i++)
        s = string_in(ro.off[i] >= 0 ? file : -1, (off_t)ro.off[i], ro.lo[i], ro.hi[i]);
    if (!s) {
        if (file >= 0)
            close(file);
        return 0;
    }
    const char *who = o->name[0] ? o->name : program_invocation_name;
    const char *why = "out of memory";
    found fd = {0};
    uintptr_t free_at = 0;
    size_t free_size = 0;
    int seen = 0;
    tsearch ts = {0};
    fdes f = {.text = &text};
    f.sites = malloc(MAX_SITES * sizeof *f.sites);
    if (!f.sites)
        goto report;
    int pic = 0;
    for (int i = 0; i < o->phnum; i++)
        if (o->phdr[i].p_type == PT_LOAD && o->phdr[i].p_vaddr == 0)
            pic = 1; /* linked at 0: loaded anywhere */
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
            sites_in(&f, file, (off_t)ph->p_offset, o->base + ph->p_vaddr,
                     o->base + ph->p_vaddr + ph->p_filesz, s, pic);
    }
    qsort(f.sites, f.nsites, sizeof *f.sites, cmp_addr);
    why = "no code names its error-report file name";
    if (!f.nsites)
        goto report;
    if (hdr && hdr[0] == 1 && hdr[2] == EH_UDATA4 && hdr[3] == (EH_DATAREL | EH_SDATA4)) {
        const uint8_t *p = hdr + 4;
        uintptr_t ehf;
        if (read_enc(&p, hdr[1], &ehf)) {
            uint32_t count;
            memcpy(&count, p, 4);
            f.hdr = hdr;
            f.tab = (const int32_t *)(p + 4);
            f.count = count;
        }
    }
    if (!f.hdr) {
        why = "no unwind table, and the instruction decoder libcapstone.so.4 is not installed";
        if (as_dynlib_load(&as_cs_lib) != 0)
            goto report;
        if (as_cs.cs_open(CS_ARCH_X86, CS_MODE_64, &f.cs) != CS_ERR_OK)
            goto report;
        as_cs.cs_option(f.cs, CS_OPT_DETAIL, CS_OPT_ON);
        f.insn = as_cs.cs_malloc(f.cs);
        if (!f.insn)
            goto report;
    }
    for (int i = 0; i < ro.n; i++)
        table_in(&f, ro.off[i] >= 0 ? file : -1, (off_t)ro.off[i], ro.lo[i], ro.hi[i], &ts);
    seen = ts.seen;
    fd = ts.out;
    if (seen == 1)
        free_at = table_free(&f, &ro, &fd, &free_size);
    why = seen ? "several candidate tables" : "its table of record functions not found";
report:
    if (file >= 0)
        close(file);
    if (f.insn)
        as_cs.cs_free(f.insn, 1);
    if (f.cs)
        as_cs.cs_close(&f.cs);
    free(f.sites);
    char msg[160] = "";
    if (seen == 1) {
        if (as_patch_prepare((void *)fd.fn[1], fd.size[1], &g_patch[0], msg, sizeof msg) != 0 ||
            as_patch_prepare((void *)fd.fn[2], fd.size[2], &g_patch[1], msg, sizeof msg) != 0)
            why = msg;
        else
            seen = -1;
    }
    if (seen != -1) {
        as_warn("llm: %s has BoringSSL built in without symbols and its record layer cannot be "
                "hooked (%s): its LLM calls are not decoded",
                who, why);
        return -1;
    }
    /* The trampolines are the originals from now on, set before any jump is written. */
    __atomic_store_n(&real_open, (open_fn)(void *)g_patch[0].tramp, __ATOMIC_RELEASE);
    __atomic_store_n(&real_write, (write_fn)(void *)g_patch[1].tramp, __ATOMIC_RELEASE);
    if (as_patch_install(&g_patch[0], (void *)w_open_app_data, msg, sizeof msg) != 0 ||
        as_patch_install(&g_patch[1], (void *)w_write_app_data, msg, sizeof msg) != 0) {
        as_warn("llm: %s: its built-in BoringSSL not patched (%s): some LLM calls may be missed",
                who, msg);
        return -1;
    }
    /* ssl_free: the connection's state goes with it (else with close_notify only) */
    if (free_at &&
        as_patch_prepare((void *)free_at, free_size, &g_patch[2], msg, sizeof msg) == 0) {
        __atomic_store_n(&real_free, (free_fn)(void *)g_patch[2].tramp, __ATOMIC_RELEASE);
        if (as_patch_install(&g_patch[2], (void *)w_ssl_free, msg, sizeof msg) != 0)
            free_at = 0;
    } else {
        free_at = 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
    as_debug("llm: BoringSSL without symbols in %s: open_app_data %#lx, write_app_data %#lx, "
             "ssl_free %#lx entry-patched (found in %ld ms, %ld ms of CPU)",
             who, (unsigned long)(fd.fn[1] - o->base), (unsigned long)(fd.fn[2] - o->base),
             free_at ? (unsigned long)(free_at - o->base) : 0ul,
             (long)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000),
             (long)((c1.tv_sec - c0.tv_sec) * 1000 + (c1.tv_nsec - c0.tv_nsec) / 1000000));
    return 1;
}

int as_llm_sig_scan(const as_obj *objs, int n) {
    int patched = 0;
    /* the interposer itself holds the file name it looks for */
    uintptr_t self = (uintptr_t)(void *)&as_llm_sig_scan;
    for (int i = 0; i < n && !g_patched; i++) {
        const as_obj *o = &objs[i];
        if ((o->lo <= self && self < o->hi) || as_dynlib_owns(o->base, o->name) ||
            strstr(o->name, "linux-vdso") || done_before(o->lo))
            continue;
        int r = scan_obj(o);
        if (r != 0)
            g_patched = 1; /* one copy per process: the wrappers have one original each */
        if (r > 0)
            patched++;
    }
    return patched;
}
