/* llm_sig.h - the plaintext side of a BoringSSL linked into a program without symbols
 * (bun; Claude Code's native executable is a bun program), found by code signatures:
 * the functions of BoringSSL's record layer that read and write application data are
 * recognised by the error-report file name they reference and by the method table that
 * lists them, then entry-patched to show their plaintext to llm_tls.c's parsers. */
#ifndef AS_LLM_SIG_H
#define AS_LLM_SIG_H

#include "hook/got.h"

/*
 * as_llm_sig_scan - examines each object of objs[0, n) not examined before: one whose
 * read-only data holds BoringSSL's "ssl/s3_pkt.cc" gets the entries of the functions its
 * SSL_PROTOCOL_METHOD table names as open_app_data and write_app_data patched (their
 * trampolines become the originals), and ssl_free's where the table's head is recognised. An object whose copy cannot be found or patched is
 * said once (a warning) and runs unchanged. At most one copy per process is patched.
 * Returns the number of objects patched by this call. Reads memory of the objects only
 * (their program headers, read-only segments and .eh_frame_hdr); allocates only through
 * the patcher. Call with llm_tls.c's scan lock held, never from a dl_iterate_phdr callback.
 */
int as_llm_sig_scan(const as_obj *objs, int n);

#endif
