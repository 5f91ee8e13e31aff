/* main.c - the `agentsight` command: finds the subcommand named by argv[1] and runs it;
 * --help, --version and `help COMMAND` are answered here. */
#include <stdio.h>
#include <string.h>

#include "agentsight.h"
#include "core/diag.h"
#include "core/sink.h"
#include "cli/cmds.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"run", as_cmd_run, "run a program with the interposer and summarise what it tracked"},
    {"report", as_cmd_report, "per-action statistics (calls, errors, percentiles) from JSONL"},
    {"symbols", as_cmd_symbols, "list the functions of a program or library a config can name"},
    {"check", as_cmd_check, "check a config file against a program without running it"},
    {"send", as_cmd_send, "send JSONL actions to a sink (the AgentSight API, OTLP, a file)"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Prints the general usage to f. This function can't fail. */
static void usage(FILE *f) {
    fputs("usage: agentsight COMMAND [ARGS...]\n"
          "       agentsight --help | --version | help COMMAND\n"
          "\n"
          "Track the functions of an unmodified program as AgentSight actions.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fputs("\nEvery command takes -h/--help.\n", f);
}

/* Returns the command named name, or NULL. */
static const command *find(const char *name) {
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* Returns the exit status: that of the command, 0 for --help/--version, 2 for a usage
 * error (message and usage on stderr). */
int main(int argc, char **argv) {
    as_diag_direct();  /* our messages answer the user, whatever AGENTSIGHT_LOG says */
    as_otlp_relay = 1; /* the actions this command ships are other processes' */
    if (argc < 2) {
        fputs("agentsight: no command given\n", stderr);
        usage(stderr);
        return 2;
    }
    const char *arg = argv[1];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
        printf("agentsight %s\n", AGENTSIGHT_VERSION);
        return 0;
    }
    if (strcmp(arg, "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return 0;
        }
        const command *c = find(argv[2]);
        if (!c) {
            fprintf(stderr, "agentsight: unknown command '%s'\n", argv[2]);
            usage(stderr);
            return 2;
        }
        char help[] = "--help";
        char *sub[] = {argv[2], help, NULL};
        return c->fn(2, sub);
    }
    const command *c = find(arg);
    if (!c) {
        fprintf(stderr, "agentsight: unknown command '%s'\n", arg);
        usage(stderr);
        return 2;
    }
    return c->fn(argc - 1, argv + 1);
}
