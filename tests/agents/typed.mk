# typed.mk - build rules of the typed-capture test agents (issue 4): typed_agent with its
# tool library, and the C++ agent typed_throw whose tools throw exceptions. Layout under
# $(BUILD)/agents: libtyped_tools.so, libthrow_tools.so, typed_agent, typed_throw.
CXX ?= g++
TYPED_TOOLS_SO := $(BUILD)/agents/libtyped_tools.so
THROW_TOOLS_SO := $(BUILD)/agents/libthrow_tools.so

$(TYPED_TOOLS_SO): tests/agents/typed_lib/typed_tools.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< \
		-Wl,-soname,libtyped_tools.so

$(THROW_TOOLS_SO): tests/agents/typed_lib/throw_tools.cpp
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -g -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< \
		-Wl,-soname,libthrow_tools.so

AGENT_LDFLAGS_typed_agent := -L$(BUILD)/agents -ltyped_tools -Wl,-rpath,'$$ORIGIN'
$(BUILD)/agents/typed_agent: $(TYPED_TOOLS_SO)

$(BUILD)/agents/typed_throw: tests/agents/typed_throw.cpp $(THROW_TOOLS_SO)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -g -O2 -Wall -Wextra -Werror -o $@ $< -L$(BUILD)/agents -lthrow_tools \
		-Wl,-rpath,'$$ORIGIN'

AGENT_EXTRA += $(TYPED_TOOLS_SO) $(THROW_TOOLS_SO) $(BUILD)/agents/typed_throw
agents: $(TYPED_TOOLS_SO) $(THROW_TOOLS_SO) $(BUILD)/agents/typed_throw
