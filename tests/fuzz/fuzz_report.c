/* fuzz_report.c - libFuzzer target for `agentsight report`'s reader and writers
 * (cli/cmd_report.c, cli/chrome.c): any JSONL input, read line by line as the command
 * reads its files, must give a --json array and a --format chrome trace that are valid
 * UTF-8 JSON, a table that is valid UTF-8, and rows whose counts add up to the calls
 * read. The first input byte picks the exact-sample cap (so the histogram path runs too)
 * and the sort key; the rest is the JSONL text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/chrome.h"
#include "cli/report.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A memory stream: what is written to f lands in buf (blen bytes) once f is closed. */
typedef struct mem {
    char *buf;
    size_t blen;
    FILE *f;
} mem;

static void mem_open(mem *m) {
    m->buf = NULL;
    m->blen = 0;
    m->f = open_memstream(&m->buf, &m->blen);
    if (!m->f)
        abort();
}

static void check_report(const char *text, size_t len, uint8_t opt) {
    as_report *r = as_report_new((size_t)(opt & 7));
    if (!r)
        return;
    as_report_set_max_line(r, (opt & 8) ? 64 : 1 << 20);
    FILE *in = fmemopen((void *)text, len ? len : 1, "r");
    if (!in) {
        as_report_free(r);
        return;
    }
    if (len == 0)
        fgetc(in);
    as_report_stream(r, in, "fuzz.jsonl");
    fclose(in);
    as_report_row *rows = NULL;
    long n = as_report_rows(r, (opt >> 4) % 6, &rows);
    if (n >= 0) {
        mem m;
        mem_open(&m);
        int rc = as_report_print_json(rows, (size_t)n, m.f);
        fclose(m.f);
        if (rc == 0)
            fuzz_json_ok("report --json", m.buf, m.blen);
        free(m.buf);
        mem_open(&m);
        rc = as_report_print_table(rows, (size_t)n, m.f);
        fclose(m.f);
        if (rc == 0)
            fuzz_utf8_ok("report table", m.buf, m.blen);
        free(m.buf);
        for (long i = 0; i < n; i++)
            if (rows[i].errors > rows[i].calls || rows[i].timed > rows[i].calls ||
                !rows[i].action_name)
                abort();
        free(rows);
    }
    mem m;
    mem_open(&m);
    as_report_print_bad(r, m.f, 1);
    fclose(m.f);
    fuzz_utf8_ok("report bad lines", m.buf, m.blen);
    free(m.buf);
    as_report_free(r);
}

static void check_chrome(const char *text, size_t len) {
    mem m;
    mem_open(&m);
    as_chrome *c = as_chrome_new(m.f);
    if (!c) {
        fclose(m.f);
        free(m.buf);
        return;
    }
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        as_chrome_line(c, p, n, NULL);
        p += n + (nl ? 1 : 0);
    }
    int rc = as_chrome_finish(c);
    as_chrome_free(c);
    fclose(m.f);
    if (rc == 0)
        fuzz_json_ok("report --format chrome", m.buf, m.blen);
    free(m.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    check_report(text, len, data[0]);
    check_chrome(text, len);
    return 0;
}
