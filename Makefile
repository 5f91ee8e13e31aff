# Makefile - builds the agentsight libraries, the interposer, the CLI, the tests and the
# benchmarks. `make demo` and `make test` install missing Debian packages first.
#
# Variables: BUILD (output folder, default build), SAN (sanitizers, e.g. address,undefined
# or thread: used for the sanitizer passes of `make test`), PREFIX/DESTDIR for install
# and uninstall.

BUILD   ?= build
SAN     ?=
PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PYTHON  ?= python3

# The libraries load with the C library alone: libcurl, cJSON, libdw and capstone are
# opened on demand (preload/core/dynlib.h). The CLI reads JSON itself (cJSON) and reads
# section facts for `check` with libelf (cli/check_facts.c); the unit tests call those
# libraries directly too.
LIBS_CORE := -lpthread -ldl
LIBS_HOOK :=
LIBS_CLI  := -lcjson -lelf
LIBS_TEST := -lcurl -lcjson -lelf -ldw -lcapstone

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC \
	-fvisibility=hidden -ftls-model=initial-exec -ffunction-sections -Iinclude -Ipreload
ifneq ($(SAN),)
CFLAGS_BASE += -fsanitize=$(SAN) -fno-omit-frame-pointer -O1
LDSAN := -fsanitize=$(SAN)
endif
CFLAGS ?=
# Shared objects with no undefined symbol of their own (the assembly calls C by name); not
# under sanitizers, whose runtime provides some at load time.
ZDEFS := $(if $(SAN),,-Wl,-z,defs)
ALL_CFLAGS := $(CFLAGS_BASE) $(CFLAGS)
# Where `agentsight run` also looks for the interposer when libdir is lib/TRIPLET.
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
$(BUILD)/obj/preload/cli/cmd_run.o: ALL_CFLAGS += -DAS_MULTIARCH='"$(MULTIARCH)"'

CORE_SRC := $(sort $(wildcard preload/core/*.c))
HOOK_ASM := $(sort $(wildcard preload/hook/x86_64/*.S))
# preload_main.c (the constructor) and dlwrap.c (exported dlopen/dlsym/exec wrappers) go
# only into the interposer, never into the CLI or the unit tests.
PRELOAD_ONLY := preload/hook/preload_main.c preload/hook/dlwrap.c
HOOK_SRC := $(filter-out $(PRELOAD_ONLY),$(sort $(wildcard preload/hook/*.c preload/hook/x86_64/*.c)))
MAIN_SRC := $(wildcard $(PRELOAD_ONLY))
CLI_SRC  := $(sort $(wildcard preload/cli/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(patsubst %.S,$(BUILD)/obj/%.o,$(1)))
CORE_OBJ := $(call obj,$(CORE_SRC))
HOOK_OBJ := $(call obj,$(HOOK_SRC) $(HOOK_ASM))
MAIN_OBJ := $(call obj,$(MAIN_SRC))
CLI_OBJ  := $(call obj,$(CLI_SRC))
CLI_MAIN_OBJ := $(call obj,preload/cli/main.c)
CLI_LIB_OBJ  := $(filter-out $(CLI_MAIN_OBJ),$(CLI_OBJ))

# The shared library is versioned: libagentsight.so.SO_MAJOR.MINOR.PATCH is the file,
# libagentsight.so.SO_MAJOR (its SONAME, what programs record as NEEDED) and
# libagentsight.so (what -lagentsight finds) link to it. MINOR.PATCH follow
# AGENTSIGHT_VERSION in include/agentsight.h; SO_MAJOR changes only when the ABI breaks (a
# function removed or changed, a public struct's layout changed).
VERSION  := $(shell sed -n 's/^\#define AGENTSIGHT_VERSION "\(.*\)"/\1/p' include/agentsight.h)
SO_MAJOR := 0
SO_NAME  := libagentsight.so.$(SO_MAJOR)
SO_FILE  := $(SO_NAME).$(word 2,$(subst ., ,$(VERSION))).$(word 3,$(subst ., ,$(VERSION)))
LIB_REAL    := $(BUILD)/$(SO_FILE)
LIB_SO      := $(BUILD)/libagentsight.so
LIB_A       := $(BUILD)/libagentsight.a
PRELOAD_SO  := $(BUILD)/libagentsight-preload.so
CLI         := $(BUILD)/agentsight
INTERNAL_A  := $(BUILD)/libagentsight-internal.a

UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps demo test test-unit test-san test-tsan test-integration fuzz bench \
	install uninstall clean format agents man

all: $(LIB_SO) $(LIB_A) $(PRELOAD_SO) $(CLI)

deps:
	@bash scripts/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB_REAL): $(CORE_OBJ)
	$(CC) -shared -o $@ $^ $(LDSAN) $(ZDEFS) -Wl,-soname,$(SO_NAME) $(LIBS_CORE)

# The links are made after the file, so make sees them up to date (it follows links).
$(LIB_SO): $(LIB_REAL)
	ln -sf $(SO_FILE) $(BUILD)/$(SO_NAME)
	ln -sf $(SO_FILE) $@

$(LIB_A): $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(INTERNAL_A): $(CORE_OBJ) $(HOOK_OBJ) $(CLI_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# Start-up order: the functions a process runs from load to exit when it calls nothing
# tracked (preload/hook/startup-functions, written by scripts/startup-order.sh) are moved
# to .text.hot.NAME in copies of the objects (each function has its section:
# -ffunction-sections), which the linker places together at the start of .text. Start-up
# then touches two or three 64 KB fault-around windows of the text instead of five or six,
# each a page fault. A name missing from the list costs a fault, never a wrong result.
STARTUP_FNS := $(shell cat preload/hook/startup-functions 2>/dev/null)
PRELOAD_OBJ := $(patsubst $(BUILD)/obj/%,$(BUILD)/obj-preload/%,$(CORE_OBJ) $(HOOK_OBJ) $(MAIN_OBJ))
$(BUILD)/obj-preload/%.o: $(BUILD)/obj/%.o preload/hook/startup-functions
	@mkdir -p $(dir $@)
	@objcopy $(foreach f,$(STARTUP_FNS),--rename-section .text.$(f)=.text.hot.$(f)) $< $@

$(PRELOAD_SO): $(PRELOAD_OBJ)
	$(CC) -shared -o $@ $^ $(LDSAN) $(ZDEFS) -Wl,-z,now -Wl,-soname,libagentsight-preload.so \
		$(LIBS_HOOK) $(LIBS_CORE)

$(CLI): $(CLI_MAIN_OBJ) $(INTERNAL_A)
	$(CC) -o $@ $(CLI_MAIN_OBJ) $(INTERNAL_A) $(LDSAN) $(LIBS_CLI) $(LIBS_HOOK) $(LIBS_CORE) -lm

# Unit tests: one cmocka binary per tests/unit/test_*.c, linked against every internal
# object; tests/unit/test_X.ldflags may add flags such as -Wl,--wrap=write.
$(BUILD)/tests/%: tests/unit/%.c $(INTERNAL_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-unused-parameter -o $@ $< $(INTERNAL_A) $(LDSAN) \
		$(shell cat tests/unit/$*.ldflags 2>/dev/null) -lcmocka $(LIBS_TEST) $(LIBS_HOOK) $(LIBS_CORE) -lm

-include tests/agents/agents.mk
-include tests/bench/bench.mk

test-unit: $(UNIT_BIN)
	@bash scripts/run-unit.sh $(UNIT_BIN)

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# pipeline's tests under ThreadSanitizer.
test-san:
	@$(MAKE) --no-print-directory BUILD=build/asan SAN=address,undefined test-unit
test-tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan SAN=thread \
		UNIT_BIN="$(patsubst tests/unit/%.c,build/tsan/tests/%,$(wildcard tests/unit/test_pipeline*.c))" \
		test-unit

test-integration: all agents
	@$(PYTHON) tests/integration/run.py

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-unit
	@$(MAKE) --no-print-directory test-san
	@$(MAKE) --no-print-directory test-tsan
	@$(MAKE) --no-print-directory test-integration

demo: deps
	@$(MAKE) --no-print-directory all agents
	@bash scripts/demo.sh

bench: deps
	@$(MAKE) --no-print-directory all agents
	@bash scripts/bench.sh

# Man pages generated from the references they document (scripts/man.py): agentsight(1)
# and agentsight-COMMAND(1) from preload/cli/README.md and config/README.md,
# agentsight.conf(5) from config/README.md, libagentsight(3) (and a link page per
# function) from the comments of include/agentsight.h.
MAN_SRC := preload/cli/README.md config/README.md include/agentsight.h README.md scripts/man.py
MAN_STAMP := $(BUILD)/man/man1/agentsight.1
man: $(MAN_STAMP)
$(MAN_STAMP): $(MAN_SRC)
	@rm -rf $(BUILD)/man
	@$(PYTHON) scripts/man.py $(BUILD)/man

# Install layout (PREFIX, staged under DESTDIR). The interposer is not a library to link
# with: it goes to its own folder, PREFIX/lib/agentsight/, where `agentsight run` looks
# for it (../lib/agentsight/ from the binary); LD_PRELOAD users name it by that path.
# uninstall removes exactly the files install puts (the man pages listed by
# `man.py --list`) and the interposer's folder, nothing else.
bindir     := $(PREFIX)/bin
libdir     := $(PREFIX)/lib
pkglibdir  := $(libdir)/agentsight
includedir := $(PREFIX)/include
pkgconfigdir := $(libdir)/pkgconfig
mandir     := $(PREFIX)/share/man
INSTALLED := $(bindir)/agentsight $(libdir)/$(SO_FILE) $(libdir)/$(SO_NAME) \
	$(libdir)/libagentsight.so $(libdir)/libagentsight.a $(pkglibdir)/libagentsight-preload.so \
	$(includedir)/agentsight.h $(pkgconfigdir)/agentsight.pc

install: $(LIB_SO) $(LIB_A) $(PRELOAD_SO) $(CLI) $(MAN_STAMP)
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir) $(DESTDIR)$(pkglibdir) \
		$(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir) \
		$(DESTDIR)$(mandir)/man1 $(DESTDIR)$(mandir)/man3 $(DESTDIR)$(mandir)/man5
	install -m 0755 $(CLI) $(DESTDIR)$(bindir)/
	install -m 0644 $(LIB_REAL) $(LIB_A) $(DESTDIR)$(libdir)/
	ln -sf $(SO_FILE) $(DESTDIR)$(libdir)/$(SO_NAME)
	ln -sf $(SO_FILE) $(DESTDIR)$(libdir)/libagentsight.so
	install -m 0644 $(PRELOAD_SO) $(DESTDIR)$(pkglibdir)/
	install -m 0644 include/agentsight.h $(DESTDIR)$(includedir)/
	sed -e 's|@prefix@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
		-e 's|@libdir@|$(patsubst $(PREFIX)/%,$${exec_prefix}/%,$(libdir))|g' \
		-e 's|@includedir@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(includedir))|g' \
		scripts/agentsight.pc.in > $(DESTDIR)$(pkgconfigdir)/agentsight.pc
	for p in $$($(PYTHON) scripts/man.py --list); do \
		install -m 0644 $(BUILD)/man/$$p $(DESTDIR)$(mandir)/$$p || exit 1; done

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	for p in $$($(PYTHON) scripts/man.py --list); do rm -f $(DESTDIR)$(mandir)/$$p; done
	rmdir $(DESTDIR)$(pkglibdir) 2>/dev/null || true

# libFuzzer targets: every tests/fuzz/fuzz_*.c (or those named in FUZZ_TARGETS, e.g.
# "llm spool"), built with clang against an instrumented archive of the library sources,
# each run for FUZZ_SECONDS (default 20) from the seeds in tests/fuzz/corpus/NAME/.
FUZZ_SECONDS ?= 20
FUZZ_TARGETS ?=
fuzz: deps
	@bash scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# C sources only: preload/hook/x86_64/asm.h is an assembler header.
format:
	clang-format -i $$(git ls-files '*.c' '*.h' | grep -v 'x86_64/asm.h')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
