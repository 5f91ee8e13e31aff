# zcopy.mk - zcopy_agent exports its own inflateReset2 (as node exports its zlib).
AGENT_LDFLAGS_zcopy_agent := -rdynamic
