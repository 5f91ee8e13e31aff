# hookable.mk - build rules of the agent of issue 11 (what is never wrapped, calls that
# bypass the GOT). Layout under $(BUILD)/agents:
#   hookable_agent                   the program, -rdynamic (exports self_export)
#   hookable/libcold_demo.so         cold_demo with a cold_demo.cold fragment (gcc -O2)
#   hookable/libsc_nosi.so           nosi_api -> nosi_inner, -fno-semantic-interposition
#   hookable/libsc_symb.so           symb_api -> symb_inner, -Bsymbolic (DF_SYMBOLIC)
#   hookable/libsc_prot.so           prot_api -> prot_inner, protected visibility
#   hookable/libsc_interp.so         interp_api -> interp_inner through its own PLT

HOOKABLE_SRC := tests/agents/hookable
HOOKABLE_OUT := $(BUILD)/agents/hookable
HOOKABLE_SO_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Werror -fPIC -shared
HOOKABLE_SOS := $(HOOKABLE_OUT)/libcold_demo.so $(HOOKABLE_OUT)/libsc_nosi.so \
	$(HOOKABLE_OUT)/libsc_symb.so $(HOOKABLE_OUT)/libsc_prot.so $(HOOKABLE_OUT)/libsc_interp.so

$(HOOKABLE_OUT)/libcold_demo.so: $(HOOKABLE_SRC)/cold_demo.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOKABLE_SO_CFLAGS) -o $@ $< -Wl,-soname,libcold_demo.so

$(HOOKABLE_OUT)/libsc_nosi.so: $(HOOKABLE_SRC)/selfcall_lib.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOKABLE_SO_CFLAGS) -fno-semantic-interposition -DPREFIX=nosi -o $@ $< \
		-Wl,-soname,libsc_nosi.so

$(HOOKABLE_OUT)/libsc_symb.so: $(HOOKABLE_SRC)/selfcall_lib.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOKABLE_SO_CFLAGS) -DPREFIX=symb -o $@ $< -Wl,-Bsymbolic -Wl,-soname,libsc_symb.so

$(HOOKABLE_OUT)/libsc_prot.so: $(HOOKABLE_SRC)/selfcall_lib.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOKABLE_SO_CFLAGS) -DPREFIX=prot -DVIS='"protected"' -o $@ $< \
		-Wl,-soname,libsc_prot.so

$(HOOKABLE_OUT)/libsc_interp.so: $(HOOKABLE_SRC)/selfcall_lib.c
	@mkdir -p $(dir $@)
	$(CC) $(HOOKABLE_SO_CFLAGS) -DPREFIX=interp -o $@ $< -Wl,-soname,libsc_interp.so

AGENT_LDFLAGS_hookable_agent := -rdynamic -L$(HOOKABLE_OUT) -lcold_demo -lsc_nosi -lsc_symb \
	-lsc_prot -lsc_interp -Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN/hookable'
$(BUILD)/agents/hookable_agent: $(HOOKABLE_SOS)

AGENT_EXTRA += $(HOOKABLE_SOS)
agents: $(HOOKABLE_SOS)
