# agents.mk - builds the test agents: every tests/agents/*.c becomes $(BUILD)/agents/NAME,
# linked with AGENT_LDFLAGS_NAME when a tests/agents/*.mk file sets it (special builds:
# -z now, -fno-plt, shared libraries, plugins are declared in those files).
AGENT_SRC := $(sort $(wildcard tests/agents/*.c))
AGENT_BIN := $(patsubst tests/agents/%.c,$(BUILD)/agents/%,$(AGENT_SRC))
AGENT_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -Iinclude

$(BUILD)/agents/%: tests/agents/%.c $(LIB_SO)
	@mkdir -p $(dir $@)
	$(CC) $(AGENT_CFLAGS) $(AGENT_CFLAGS_$*) -o $@ $< $(AGENT_LDFLAGS_$*) -lpthread -ldl

agents: $(AGENT_BIN) $(AGENT_EXTRA)

-include $(filter-out tests/agents/agents.mk,$(wildcard tests/agents/*.mk))
