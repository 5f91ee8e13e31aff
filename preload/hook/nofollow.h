/* nofollow.h - `agentsight run --no-follow`: the traced process gives the programs it
 * executes the environment they would have had without agentsight.
 *
 * Protocol (set by preload/cli/run_env.c): AGENTSIGHT_NO_FOLLOW holds the comma-separated
 * names of the variables `run` set or changed; for each that existed before, its original
 * value is in AGENTSIGHT_SAVED_<NAME>. */
#ifndef AS_NOFOLLOW_H
#define AS_NOFOLLOW_H

#define AS_NOFOLLOW_ENV "AGENTSIGHT_NO_FOLLOW"
#define AS_SAVED_PREFIX "AGENTSIGHT_SAVED_"

/* When AGENTSIGHT_NO_FOLLOW is set: restores every listed variable to its saved value (or
 * removes it), then removes AGENTSIGHT_NO_FOLLOW and the saved copies, so that neither the
 * program nor what it executes sees them. Called once by the constructor, after every
 * read of the environment, before the program runs. Does nothing otherwise. Can't fail
 * (a variable that cannot be restored for lack of memory is removed). */
void as_nofollow_apply(void);

#endif
