# bench.mk - build rules for benchmark programs that link the library's internals
# (bench_format also builds cJSON trees itself, to compare: it links cJSON directly).
$(BUILD)/bench/bench_format: tests/bench/bench_format.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_A) $(LIBS_CORE) -lcjson -lm
