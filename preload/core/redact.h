/* redact.h - sink URIs as they may be shown: without passwords or query values. */
#ifndef AS_REDACT_H
#define AS_REDACT_H

#include <stddef.h>

/*
 * as_redact_uris - copies the comma-separated sink URI list in (NULL reads as "") into out
 * (cap bytes, cap > 0), fit for a message, a summary or a file: in each URL (an item
 * holding "://") the user information becomes "user:***@" (a user alone, which may be a
 * token, becomes "***@") and every query value becomes "***" ("?token=***&x=***"); other
 * items (file:PATH, stderr) are copied as they are. A result longer than cap is cut and
 * ends in "..." (never in the middle of a secret: secrets are replaced before cutting).
 * This function can't fail.
 */
void as_redact_uris(const char *in, char *out, size_t cap);

#endif
