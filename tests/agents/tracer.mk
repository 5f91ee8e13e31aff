# tracer.mk - tracer_agent links the tool library of typed.mk (multiply, tool_is_even).
AGENT_LDFLAGS_tracer_agent := -L$(BUILD)/agents -ltyped_tools -Wl,-rpath,'$$ORIGIN'
$(BUILD)/agents/tracer_agent: $(BUILD)/agents/libtyped_tools.so
