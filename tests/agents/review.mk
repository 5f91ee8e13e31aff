# review.mk - build rules of the review regression agent (tests/agents/review_agent.c)
# and its libraries. Layout under $(BUILD)/agents:
#   review_agent
#   review/sub/libreview_dep.so      helper + tool, found by the plugin's RUNPATH
#   review/sub/libreview_plug.so     RUNPATH $ORIGIN, NEEDED libreview_dep.so
#   review/ctor/libreview_ctor_a.so  constructor dlopens libreview_ctor_b.so (RUNPATH $ORIGIN)
#   review/ctor/libreview_ctor_b.so
#   review/many/libreview_many_N.so  copies of one library with 256 tools (N = 1..12)
REVIEW_DIR := $(BUILD)/agents/review
REVIEW_SRC := tests/agents/review_lib
REVIEW_SO_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared
REVIEW_MANY := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12,$(REVIEW_DIR)/many/libreview_many_$(i).so)
REVIEW_SOS := $(REVIEW_DIR)/sub/libreview_dep.so $(REVIEW_DIR)/sub/libreview_plug.so \
	$(REVIEW_DIR)/ctor/libreview_ctor_a.so $(REVIEW_DIR)/ctor/libreview_ctor_b.so $(REVIEW_MANY)

$(REVIEW_DIR)/sub/libreview_dep.so: $(REVIEW_SRC)/review_dep.c
	@mkdir -p $(dir $@)
	$(CC) $(REVIEW_SO_CFLAGS) -o $@ $< -Wl,-soname,libreview_dep.so

$(REVIEW_DIR)/sub/libreview_plug.so: $(REVIEW_SRC)/review_plug.c $(REVIEW_DIR)/sub/libreview_dep.so
	@mkdir -p $(dir $@)
	$(CC) $(REVIEW_SO_CFLAGS) -o $@ $< -L$(REVIEW_DIR)/sub -lreview_dep \
		-Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN' -ldl

$(REVIEW_DIR)/ctor/libreview_ctor_b.so: $(REVIEW_SRC)/review_ctor_b.c
	@mkdir -p $(dir $@)
	$(CC) $(REVIEW_SO_CFLAGS) -o $@ $<

$(REVIEW_DIR)/ctor/libreview_ctor_a.so: $(REVIEW_SRC)/review_ctor_a.c $(REVIEW_DIR)/ctor/libreview_ctor_b.so
	@mkdir -p $(dir $@)
	$(CC) $(REVIEW_SO_CFLAGS) -o $@ $< -Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN' -ldl

$(REVIEW_DIR)/libreview_many.so: $(REVIEW_SRC)/review_many.c
	@mkdir -p $(dir $@)
	$(CC) $(REVIEW_SO_CFLAGS) -o $@ $<

# Copies, not links: each is a distinct file, so the loader loads each one anew.
$(REVIEW_DIR)/many/libreview_many_%.so: $(REVIEW_DIR)/libreview_many.so
	@mkdir -p $(dir $@)
	cp $< $@

$(BUILD)/agents/review_agent: $(REVIEW_SOS)

AGENT_EXTRA += $(REVIEW_SOS)
agents: $(REVIEW_SOS)
