# crash.mk - the crash-safe capture agent links the public library and calls labs()
# through the PLT (no builtin), so the interposer can wrap it.
AGENT_CFLAGS_crash_agent := -fno-builtin
AGENT_LDFLAGS_crash_agent := -L$(BUILD) -lagentsight -Wl,-rpath,$(abspath $(BUILD))

# crash_agent_static: the same program linked with the static library (libagentsight.a,
# system libraries dynamic), to prove a static link gets every sink, the HTTP ones too.
$(BUILD)/agents/crash_agent_static: tests/agents/crash_agent.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(AGENT_CFLAGS) -fno-builtin -o $@ $< $(LIB_A) $(LDSAN) $(LIBS_CORE) -lm
AGENT_EXTRA += $(BUILD)/agents/crash_agent_static
agents: $(BUILD)/agents/crash_agent_static
