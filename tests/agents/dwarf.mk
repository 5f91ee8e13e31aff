# dwarf.mk - dwarf_tools is built without optimisation and with full DWARF, its functions
# exported (-rdynamic), so the DWARF reader sees every parameter as declared.
AGENT_CFLAGS_dwarf_tools := -g -O0
AGENT_LDFLAGS_dwarf_tools := -rdynamic
