# crash.mk - the crash-safe capture agent links the public library and calls labs()
# through the PLT (no builtin), so the interposer can wrap it.
AGENT_CFLAGS_crash_agent := -fno-builtin
AGENT_LDFLAGS_crash_agent := -L$(BUILD) -lagentsight -Wl,-rpath,$(abspath $(BUILD))
