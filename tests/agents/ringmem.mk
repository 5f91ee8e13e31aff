# ringmem.mk - the ring memory agent calls labs() through the PLT (no builtin), so the
# interposer can wrap it.
AGENT_CFLAGS_ringmem_agent := -fno-builtin
