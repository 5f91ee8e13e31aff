# internal.mk - build rules of the entry-patching test agent (issue 6): the program as an
# -O2 PIE, its tool library built so that calls inside it are bound locally, and the
# plugin it loads while its threads run. Layout under $(BUILD)/agents:
#   internal_agent               the program (static tools, calls lib_api/lib_both)
#   libinternal_lib.so           lib_api -> lib_helper (static), lib_hidden, lib_both
#   libinternal_plugin.so        plugin_hot, loaded at run time beside the program

INTERNAL_DIR := tests/agents/internal
INTERNAL_OUT := $(BUILD)/agents
INTERNAL_LIB_SO := $(INTERNAL_OUT)/libinternal_lib.so
INTERNAL_PLUGIN_SO := $(INTERNAL_OUT)/libinternal_plugin.so
INTERNAL_SO_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared \
	-fvisibility=hidden

$(INTERNAL_LIB_SO): $(INTERNAL_DIR)/internal_lib.c
	@mkdir -p $(dir $@)
	$(CC) $(INTERNAL_SO_CFLAGS) -Wl,-Bsymbolic-functions -o $@ $< \
		-Wl,-soname,libinternal_lib.so

$(INTERNAL_PLUGIN_SO): $(INTERNAL_DIR)/internal_plugin.c
	@mkdir -p $(dir $@)
	$(CC) $(INTERNAL_SO_CFLAGS) -o $@ $< -Wl,-soname,libinternal_plugin.so

AGENT_CFLAGS_internal_agent := -fPIE
AGENT_LDFLAGS_internal_agent := -pie -L$(INTERNAL_OUT) -linternal_lib -Wl,-rpath,'$$ORIGIN'
$(INTERNAL_OUT)/internal_agent: $(INTERNAL_LIB_SO) $(INTERNAL_PLUGIN_SO)

AGENT_EXTRA += $(INTERNAL_LIB_SO) $(INTERNAL_PLUGIN_SO)
agents: $(INTERNAL_LIB_SO) $(INTERNAL_PLUGIN_SO)
