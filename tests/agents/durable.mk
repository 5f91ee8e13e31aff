# durable.mk - the delivery-guarantee agent calls labs() through the PLT (no builtin), so
# the interposer can wrap it.
AGENT_CFLAGS_durable_agent := -fno-builtin
