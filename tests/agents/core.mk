# core.mk - the reproducers of the core fixes link with libagentsight.so.
AGENT_LDFLAGS_core_fixes := -L$(BUILD) -lagentsight -Wl,-rpath,$(abspath $(BUILD))
