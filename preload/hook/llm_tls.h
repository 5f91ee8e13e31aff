/* llm_tls.h - the plaintext side of OpenSSL (and its forks) and GnuTLS in every loaded
 * object: GOT slots of SSL_read/SSL_read_ex/SSL_write/SSL_write_ex/SSL_free and
 * gnutls_record_recv/gnutls_record_send/gnutls_deinit pointed at wrappers that hand each
 * connection's bytes to core/llm_detect.h; in an object with OpenSSL built in (node),
 * the entries of the SSL_* functions patched to the same wrappers instead. */
#ifndef AS_LLM_TLS_H
#define AS_LLM_TLS_H

#include <stddef.h>

/* Patches every object loaded now (again for later ones: as_llm_tls_scan). The objects
 * opened by the interposer itself (dynlib.h) and the TLS libraries themselves are never patched.
 * Returns the number of slots written. Call once, from the constructor. */
int as_llm_tls_start(void);

/* Patches objects loaded since (after a dlopen). Does nothing before as_llm_tls_start()
 * or while as_in_agentsight is set. Returns the slots written. */
int as_llm_tls_scan(void);

/* 1 after as_llm_tls_start(). */
int as_llm_tls_active(void);

/* For hooks found elsewhere (llm_sig.h): shows len bytes of plaintext of the connection
 * conn (any pointer naming it for its life) to its parser, wrote 1 for bytes the program
 * sent; as_llm_tls_end: conn ended, its state goes. Both do nothing inside the
 * interposer's own calls and preserve errno. */
void as_llm_tls_observe(void *conn, int wrote, const void *data, size_t len);
void as_llm_tls_end(void *conn);

#endif
