/* keptenv.h - the environment as the process image started with it, for every setting the
 * interposer reads: the program may replace or free environ's array later (bash does), and
 * `run --no-follow` removes the variables it set from environ for the program's children,
 * while this process must still read them. */
#ifndef AS_KEPTENV_H
#define AS_KEPTENV_H

/* as_keptenv_keep - takes a snapshot of environ (pointers to its strings, which the kernel
 * placed on the initial stack and nobody frees), once; the preload's constructor calls it
 * first, before it puts back what `run --no-follow` changed (hook/nofollow.h). Under
 * AT_SECURE nothing is kept (every variable then reads as unset, as with secure_getenv).
 * This function can't fail: without memory, as_keptenv_get asks secure_getenv. */
void as_keptenv_keep(void);

/* as_keptenv_get - the value of variable name in the snapshot; before as_keptenv_keep ran
 * (the CLI, the C API library and unit tests never keep), secure_getenv(name). NULL when
 * unset. */
const char *as_keptenv_get(const char *name);

#endif
