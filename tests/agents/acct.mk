# acct.mk - the accounting test agent (tests/integration/test_accounting.py) with its tool
# library: $(BUILD)/agents/libacct_tools.so beside $(BUILD)/agents/acct_agent.
ACCT_TOOLS_SO := $(BUILD)/agents/libacct_tools.so

$(ACCT_TOOLS_SO): tests/agents/acct_lib/acct_tools.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< \
		-Wl,-soname,libacct_tools.so

AGENT_LDFLAGS_acct_agent := -L$(BUILD)/agents -lacct_tools -Wl,-rpath,'$$ORIGIN'
$(BUILD)/agents/acct_agent: $(ACCT_TOOLS_SO)
AGENT_EXTRA += $(ACCT_TOOLS_SO)
