# hook.mk - build rules of the interposer's test agents (issue 3) and the demo agent:
# the tool library, a dlopen'ed plugin, a library in its own directory that dlopens a
# plugin through its $ORIGIN RUNPATH, and the agent built lazily, with -z now and with
# -fno-plt. Layout under $(BUILD)/agents:
#   libagent_tools.so            tools (tool_*), RUNPATH-less
#   plugins/libagent_plugin.so   dlopen'ed by path, calls tool_add
#   loader/libagent_loader.so    RUNPATH $ORIGIN/plugins, dlopens libagent_origin.so
#   loader/plugins/libagent_origin.so
#   libexample_tools.so          the demo agent's tools
#   hook_agent, hook_agent_now, hook_agent_noplt, example_agent

AGENTS_DIR := $(BUILD)/agents
HOOKLIB := tests/agents/hooklib
HOOK_SO_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared

HOOK_TOOLS_SO := $(AGENTS_DIR)/libagent_tools.so
HOOK_PLUGIN_SO := $(AGENTS_DIR)/plugins/libagent_plugin.so
HOOK_LOADER_SO := $(AGENTS_DIR)/loader/libagent_loader.so
HOOK_ORIGIN_SO := $(AGENTS_DIR)/loader/plugins/libagent_origin.so
EXAMPLE_TOOLS_SO := $(AGENTS_DIR)/libexample_tools.so
HOOK_SOS := $(HOOK_TOOLS_SO) $(HOOK_PLUGIN_SO) $(HOOK_LOADER_SO) $(HOOK_ORIGIN_SO)

$(HOOK_TOOLS_SO): $(HOOKLIB)/agent_tools.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOK_SO_CFLAGS) -o $@ $< -Wl,-soname,libagent_tools.so -ldl

$(HOOK_PLUGIN_SO): $(HOOKLIB)/agent_plugin.c $(HOOK_TOOLS_SO)
	@mkdir -p $(dir $@)
	$(CC) $(HOOK_SO_CFLAGS) -o $@ $< -L$(AGENTS_DIR) -lagent_tools -Wl,-rpath,'$$ORIGIN/..'

$(HOOK_ORIGIN_SO): $(HOOKLIB)/agent_origin.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOK_SO_CFLAGS) -o $@ $<

$(HOOK_LOADER_SO): $(HOOKLIB)/agent_loader.c $(HOOK_ORIGIN_SO)
	@mkdir -p $(dir $@)
	$(CC) $(HOOK_SO_CFLAGS) -o $@ $< -Wl,-soname,libagent_loader.so \
		-Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN/plugins' -ldl

$(EXAMPLE_TOOLS_SO): $(HOOKLIB)/example_tools.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOK_SO_CFLAGS) -o $@ $< -Wl,-soname,libexample_tools.so

HOOK_AGENT_LIBS := -L$(AGENTS_DIR) -lagent_tools -L$(AGENTS_DIR)/loader -lagent_loader \
	-rdynamic -Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/loader'

AGENT_LDFLAGS_hook_agent := $(HOOK_AGENT_LIBS)
$(AGENTS_DIR)/hook_agent: $(HOOK_SOS)

$(AGENTS_DIR)/hook_agent_now: tests/agents/hook_agent.c $(HOOK_SOS)
	@mkdir -p $(dir $@)
	$(CC) $(AGENT_CFLAGS) -o $@ $< $(HOOK_AGENT_LIBS) -Wl,-z,now -lpthread -ldl

$(AGENTS_DIR)/hook_agent_noplt: tests/agents/hook_agent.c $(HOOK_SOS)
	@mkdir -p $(dir $@)
	$(CC) $(AGENT_CFLAGS) -fno-plt -o $@ $< $(HOOK_AGENT_LIBS) -lpthread -ldl

AGENT_LDFLAGS_example_agent := -L$(AGENTS_DIR) -lexample_tools -Wl,-rpath,'$$ORIGIN'
$(AGENTS_DIR)/example_agent: $(EXAMPLE_TOOLS_SO)

AGENT_EXTRA += $(HOOK_SOS) $(EXAMPLE_TOOLS_SO) $(AGENTS_DIR)/hook_agent_now \
	$(AGENTS_DIR)/hook_agent_noplt

# agents.mk expanded its prerequisites before this file was read: add ours.
agents: $(HOOK_SOS) $(EXAMPLE_TOOLS_SO) $(AGENTS_DIR)/hook_agent_now $(AGENTS_DIR)/hook_agent_noplt
