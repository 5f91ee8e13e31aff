# api.mk - the test programs of the public API link with libagentsight.so.
API_AGENT_LDFLAGS := -L$(BUILD) -lagentsight -Wl,-rpath,$(abspath $(BUILD))
AGENT_LDFLAGS_api_stress := $(API_AGENT_LDFLAGS)
AGENT_LDFLAGS_api_validate := $(API_AGENT_LDFLAGS)
AGENT_LDFLAGS_readme_examples := $(API_AGENT_LDFLAGS)
AGENT_LDFLAGS_api_disable := $(API_AGENT_LDFLAGS)
