# fix.mk - build rules of the fix regression agent (tests/agents/fix_agent.c) and its
# libraries. Layout under $(BUILD)/agents:
#   fix_agent                      linked with fix/libfix_tools.so (RUNPATH $ORIGIN/fix)
#   fix/libfix_tools.so            fix_add, fix_call, fix_exit
#   fix/libfix_plug.so             calls fix_add (loaded, unloaded, loaded again)
#   fix/libfix_swap_a.so, _b.so    fix_swap_tool, same size: one replaces the other
#   fix/libfix_ctor.so             constructor dlopens fix/libfix_ctor_dep.so ($ORIGIN)
#   fix/many/libfix_many_N.so      copies of a library with 90 tools (N = 1..12)
FIX_DIR := $(BUILD)/agents/fix
FIX_SRC := tests/agents/fix_lib
FIX_SO_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared
FIX_MANY := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12,$(FIX_DIR)/many/libfix_many_$(i).so)
FIX_SOS := $(FIX_DIR)/libfix_tools.so $(FIX_DIR)/libfix_plug.so $(FIX_DIR)/libfix_swap_a.so \
	$(FIX_DIR)/libfix_swap_b.so $(FIX_DIR)/libfix_ctor.so $(FIX_DIR)/libfix_ctor_dep.so $(FIX_MANY)

$(FIX_DIR)/libfix_tools.so: $(FIX_SRC)/fix_tools.c
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -o $@ $< -Wl,-soname,libfix_tools.so

$(FIX_DIR)/libfix_plug.so: $(FIX_SRC)/fix_plug.c $(FIX_DIR)/libfix_tools.so
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -o $@ $< -L$(FIX_DIR) -lfix_tools

$(FIX_DIR)/libfix_swap_a.so: $(FIX_SRC)/fix_plug.c $(FIX_DIR)/libfix_tools.so
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -DFIX_BIAS=1 -o $@ $< -L$(FIX_DIR) -lfix_tools

$(FIX_DIR)/libfix_swap_b.so: $(FIX_SRC)/fix_plug.c $(FIX_DIR)/libfix_tools.so
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -DFIX_BIAS=2 -o $@ $< -L$(FIX_DIR) -lfix_tools

$(FIX_DIR)/libfix_ctor_dep.so: $(FIX_SRC)/fix_ctor_dep.c
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -o $@ $<

$(FIX_DIR)/libfix_ctor.so: $(FIX_SRC)/fix_ctor.c $(FIX_DIR)/libfix_ctor_dep.so
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -o $@ $< -Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN' -ldl

$(FIX_DIR)/libfix_many.so: $(FIX_SRC)/fix_many.c
	@mkdir -p $(dir $@)
	$(CC) $(FIX_SO_CFLAGS) -o $@ $<

# Copies, not links: each is a distinct file, so the loader loads each one anew.
$(FIX_DIR)/many/libfix_many_%.so: $(FIX_DIR)/libfix_many.so
	@mkdir -p $(dir $@)
	cp $< $@

AGENT_LDFLAGS_fix_agent := -L$(FIX_DIR) -lfix_tools -Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN/fix'
$(BUILD)/agents/fix_agent: $(FIX_SOS)

AGENT_EXTRA += $(FIX_SOS)
agents: $(FIX_SOS)
