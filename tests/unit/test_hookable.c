/* test_hookable.c - unit tests of preload/hook/hookable.c (which symbols are never
 * wrapped, and the words that say why) and preload/hook/reach.c (how calls of a matched
 * function are reached under each hook= mode, which calls stay unseen, the object's own
 * relocations, executable segments). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <elf.h>
#include <link.h>

#include "hook/config.h"
#include "hook/hookable.h"
#include "hook/reach.h"

/* A function symbol with the given name, exported or not, sized, in executable code. */
static as_symfacts fn(const char *name, int exported) {
    as_symfacts f = {.name = name, .size = 64, .exported = exported, .exec = 1};
    return f;
}

/* Proves: every returns-twice spelling is refused, exported or local, and fork, _Fork,
 * longjmp, setcontext (which return once, or never) are not. */
static void test_returns_twice(void **state) {
    const char *twice[] = {"setjmp",      "_setjmp",      "__setjmp",    "sigsetjmp",
                           "__sigsetjmp", "_sigsetjmp",   "vfork",       "__vfork",
                           "getcontext",  "__getcontext", "swapcontext", "savectx"};
    for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
        as_symfacts f = fn(twice[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_RETURNS_TWICE);
        f.exported = 0;
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_RETURNS_TWICE);
    }
    const char *once[] = {"fork",        "_Fork",         "longjmp",  "siglongjmp", "setcontext",
                          "makecontext", "setjmp_helper", "my_vfork", "exit"};
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++) {
        as_symfacts f = fn(once[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_HOOKABLE);
    }
}

/* Proves: a symbol at the address of a returns-twice function (an alias under another
 * name) is refused, and its message names the function it is. */
static void test_returns_twice_alias(void **state) {
    as_symfacts f = fn("my_other_name", 1);
    f.alias_of = "vfork";
    assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_RETURNS_TWICE);
    char buf[256];
    as_nohook_why(AS_NOHOOK_RETURNS_TWICE, &f, buf, sizeof buf);
    assert_string_equal(buf, "'my_other_name' is 'vfork', which returns twice; a wrapped "
                             "call cannot return twice");
}

/* Proves: .cold and .cold.N fragments (also of clones) are refused, while .isra.N,
 * .constprop.N, .part.N, .lto_priv.N and names merely containing "cold" are functions. */
static void test_fragments_and_clones(void **state) {
    const char *frag[] = {"foo.cold", "foo.cold.1", "foo.part.0.cold", "foo.isra.0.cold.12"};
    for (size_t i = 0; i < sizeof frag / sizeof frag[0]; i++) {
        as_symfacts f = fn(frag[i], 0);
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_FRAGMENT);
    }
    const char *real[] = {"foo.isra.0", "foo.constprop.0", "foo.part.0", "foo.lto_priv.0",
                          "cold",       "cold_demo",       ".cold",      "foo.coldx",
                          "foo.cold.x", "foo.cold."};
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        as_symfacts f = fn(real[i], 0);
        assert_int_equal(as_nohook_classify(&f), AS_HOOKABLE);
    }
    char buf[256];
    as_symfacts f = fn("foo.part.0.cold", 0);
    as_nohook_why(AS_NOHOOK_FRAGMENT, &f, buf, sizeof buf);
    assert_string_equal(buf, "'foo.part.0.cold' is a compiler fragment of 'foo.part.0' "
                             "(entered by a jump inside it, never called); calls of "
                             "'foo.part.0' cover it");
}

/* Proves: entry points with no return address and functions with a convention of their
 * own are refused whatever their binding. */
static void test_not_called_and_convention(void **state) {
    const char *nc[] = {"_start", "__restore_rt", "__start_context"};
    for (size_t i = 0; i < sizeof nc / sizeof nc[0]; i++) {
        as_symfacts f = fn(nc[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_NOT_CALLED);
    }
    const char *cv[] = {"mcount",
                        "_mcount",
                        "__fentry__",
                        "__morestack",
                        "__tls_get_addr",
                        "_dl_tlsdesc_return",
                        "_dl_runtime_resolve_xsavec"};
    for (size_t i = 0; i < sizeof cv / sizeof cv[0]; i++) {
        as_symfacts f = fn(cv[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_CONVENTION);
    }
}

/* Proves the exception unwinder's functions are refused (a C++ program catching an
 * exception thrown through a wrapped call got a wrong register back when they were
 * wrapped too), and that names merely containing "personality" or "Unwind" are not. */
static void test_unwinder(void **state) {
    const char *uw[] = {"_Unwind_RaiseException", "_Unwind_Find_FDE",
                        "_Unwind_Resume",         "__gxx_personality_v0",
                        "__gcc_personality_v0",   "_dl_find_object",
                        "__register_frame_info",  "__deregister_frame_info_bases"};
    for (size_t i = 0; i < sizeof uw / sizeof uw[0]; i++) {
        as_symfacts f = fn(uw[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_UNWINDER);
    }
    const char *ok[] = {"agent_personality_load", "Unwind_stack", "find_object"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        as_symfacts f = fn(ok[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_HOOKABLE);
    }
    char buf[256];
    as_symfacts f = fn("_Unwind_Find_FDE", 1);
    assert_non_null(strstr(as_nohook_why(AS_NOHOOK_UNWINDER, &f, buf, sizeof buf),
                           "part of the exception unwinder"));
}

/* Proves: a label inside a function, an .L label, a zero-size local symbol and a symbol
 * outside executable segments are refused; an exported symbol of size 0 or inside another
 * one is still reachable through its GOT slots; an unknown exec state is no refusal. */
static void test_labels_sizes_segments(void **state) {
    as_symfacts f = fn("tail", 0);
    f.inside = "outer";
    assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_LABEL);
    char buf[256];
    as_nohook_why(AS_NOHOOK_LABEL, &f, buf, sizeof buf);
    assert_string_equal(buf, "'tail' is a label inside 'outer', not a function entered by a "
                             "call; calls of 'outer' cover it");
    f.exported = 1;
    assert_int_equal(as_nohook_classify(&f), AS_HOOKABLE);
    as_symfacts l = fn(".Lloop", 0);
    assert_int_equal(as_nohook_classify(&l), AS_NOHOOK_LABEL);
    as_symfacts z = fn("nosize", 0);
    z.size = 0;
    assert_int_equal(as_nohook_classify(&z), AS_NOHOOK_NO_SIZE);
    z.exported = 1;
    assert_int_equal(as_nohook_classify(&z), AS_HOOKABLE);
    as_symfacts d = fn("in_data", 1);
    d.exec = 0;
    assert_int_equal(as_nohook_classify(&d), AS_NOHOOK_NOT_EXEC);
    d.exec = -1;
    assert_int_equal(as_nohook_classify(&d), AS_HOOKABLE);
    as_symfacts none = {0};
    assert_int_equal(as_nohook_classify(&none), AS_NOHOOK_LABEL);
    assert_int_equal(as_nohook_classify(NULL), AS_NOHOOK_LABEL);
}

/* Proves: every kind has a name and a message quoting the symbol, and a short buffer is
 * cut, never overrun. */
static void test_messages(void **state) {
    as_symfacts f = fn("vfork", 1);
    char buf[256];
    for (int k = AS_HOOKABLE; k < AS_NOHOOK_KINDS; k++) {
        assert_non_null(as_nohook_kind_name(k));
        as_nohook_why(k, &f, buf, sizeof buf);
        assert_memory_equal(buf, "'vfork'", 7);
    }
    as_nohook_why(AS_NOHOOK_RETURNS_TWICE, &f, buf, sizeof buf);
    assert_string_equal(buf, "'vfork' returns twice; a wrapped call cannot return twice");
    char small[8];
    memset(small, 'x', sizeof small);
    as_nohook_why(AS_NOHOOK_RETURNS_TWICE, &f, small, 6);
    assert_string_equal(small, "'vfor");
    assert_int_equal(small[7], 'x');
}

static void index_get(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                      const char **name) {
    const as_fnrange *r = &((const as_fnrange *)ctx)[i];
    *value = r->lo;
    *size = r->hi - r->lo;
    *name = r->name;
}

/* Proves: the index finds the function whose body holds an address past its start,
 * never the function starting there, and nothing between functions. */
static void test_fnindex(void **state) {
    as_fnrange in[] = {{0x2000, 0x2040, "b"},
                       {0x1000, 0x1100, "a"},
                       {0x3000, 0x3000, "zero"},
                       {0x1000, 0x1010, "a_alias_short"}};
    as_fnindex idx;
    assert_int_equal(as_fnindex_build(&idx, 4, index_get, in), 0);
    assert_int_equal(idx.n, 3);
    assert_null(as_fnindex_inside(&idx, 0x1000));
    assert_string_equal(as_fnindex_inside(&idx, 0x1050), "a");
    assert_non_null(as_fnindex_inside(&idx, 0x1008));
    assert_null(as_fnindex_inside(&idx, 0x1100));
    assert_null(as_fnindex_inside(&idx, 0x1800));
    assert_string_equal(as_fnindex_inside(&idx, 0x203f), "b");
    assert_null(as_fnindex_inside(&idx, 0x3000));
    as_fnindex_free(&idx);
    assert_null(as_fnindex_inside(&idx, 0x1050));
}

/* Proves: the hook=auto rule: program functions, -Bsymbolic objects, protected symbols
 * and exports the object never calls through a slot of its own get the entry and the GOT;
 * an interposable export the GOT alone; the C library the GOT alone with its internal
 * calls named as unseen; a local function the entry; an IFUNC the GOT with its internal
 * calls unseen; an unpatchable entry falls back to the GOT, saying what is missed. */
static void test_reach_auto(void **state) {
    const char *blind;
    as_reach_facts base = {.hook = AS_HOOK_AUTO, .exported = 1, .self_ref = 1, .patchable = 1};
    as_reach_facts f = base;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT);
    assert_null(blind);
    f = base;
    f.in_program = 1;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT | AS_REACH_ENTRY);
    assert_null(blind);
    f = base;
    f.symbolic = 1;
    assert_int_equal(as_reach_decide(&f, NULL), AS_REACH_GOT | AS_REACH_ENTRY);
    f = base;
    f.protected_vis = 1;
    assert_int_equal(as_reach_decide(&f, NULL), AS_REACH_GOT | AS_REACH_ENTRY);
    f = base;
    f.self_ref = 0;
    assert_int_equal(as_reach_decide(&f, NULL), AS_REACH_GOT | AS_REACH_ENTRY);
    f.own_dep = 1;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT);
    assert_non_null(strstr(blind, "C library"));
    f = base;
    f.self_ref = 0;
    f.ifunc = 1;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT);
    assert_non_null(strstr(blind, "implementation"));
    f = base;
    f.self_ref = 0;
    f.patchable = 0;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT);
    assert_non_null(strstr(blind, "cannot be patched"));
    f = base;
    f.exported = 0;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_ENTRY);
    assert_null(blind);
    f.patchable = 0;
    assert_int_equal(as_reach_decide(&f, &blind), 0);
    assert_non_null(strstr(blind, "every call"));
}

/* Proves: hook=got never patches code and names the direct calls it misses; hook=entry
 * never takes GOT slots and refuses an IFUNC or an unpatchable entry. */
static void test_reach_got_entry(void **state) {
    const char *blind;
    as_reach_facts f = {.hook = AS_HOOK_GOT, .exported = 1, .self_ref = 1, .patchable = 1};
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT);
    assert_null(blind);
    f.self_ref = 0;
    assert_int_equal(as_reach_decide(&f, &blind), AS_REACH_GOT);
    assert_non_null(strstr(blind, "hook=got"));
    f.exported = 0;
    assert_int_equal(as_reach_decide(&f, &blind), 0);
    as_reach_facts e = {.hook = AS_HOOK_ENTRY, .exported = 1, .patchable = 1};
    assert_int_equal(as_reach_decide(&e, &blind), AS_REACH_ENTRY);
    assert_null(blind);
    e.ifunc = 1;
    assert_int_equal(as_reach_decide(&e, &blind), 0);
    assert_non_null(blind);
    e.ifunc = 0;
    e.patchable = 0;
    assert_int_equal(as_reach_decide(&e, &blind), 0);
    assert_string_equal(as_reach_name(AS_REACH_GOT), "got");
    assert_string_equal(as_reach_name(AS_REACH_ENTRY), "entry");
    assert_string_equal(as_reach_name(AS_REACH_GOT | AS_REACH_ENTRY), "got+entry");
    assert_string_equal(as_reach_name(0), "none");
}

/* Proves: JUMP_SLOT, GLOB_DAT and 64-bit relocations mark the symbol they name, RELATIVE
 * ones and out-of-range indices do not. */
static void test_selfrefs(void **state) {
    ElfW(Rela) plt[2] = {{.r_info = ELF64_R_INFO(3, R_X86_64_JUMP_SLOT)},
                         {.r_info = ELF64_R_INFO(99, R_X86_64_JUMP_SLOT)}};
    ElfW(Rela) dyn[3] = {{.r_info = ELF64_R_INFO(5, R_X86_64_GLOB_DAT)},
                         {.r_info = ELF64_R_INFO(6, R_X86_64_RELATIVE)},
                         {.r_info = ELF64_R_INFO(7, R_X86_64_64)}};
    unsigned char refs[10] = {0};
    as_reach_selfrefs(plt, sizeof plt, dyn, sizeof dyn, refs, sizeof refs);
    unsigned char want[10] = {0, 0, 0, 1, 0, 1, 0, 1, 0, 0};
    assert_memory_equal(refs, want, sizeof want);
    as_reach_selfrefs(NULL, 0, NULL, 0, refs, sizeof refs);
    as_reach_selfrefs(plt, sizeof plt, NULL, 0, NULL, 10);
}

/* Proves: only ranges wholly inside an executable PT_LOAD count. */
static void test_in_exec(void **state) {
    ElfW(Phdr) ph[3] = {
        {.p_type = PT_LOAD, .p_flags = PF_R, .p_vaddr = 0, .p_memsz = 0x1000},
        {.p_type = PT_LOAD, .p_flags = PF_R | PF_X, .p_vaddr = 0x1000, .p_memsz = 0x1000},
        {.p_type = PT_DYNAMIC, .p_flags = PF_R | PF_X, .p_vaddr = 0x3000, .p_memsz = 0x100}};
    uintptr_t base = 0x400000;
    assert_true(as_reach_in_exec(ph, 3, base, base + 0x1000, 0x10));
    assert_true(as_reach_in_exec(ph, 3, base, base + 0x1ff0, 0x10));
    assert_false(as_reach_in_exec(ph, 3, base, base + 0x1ff8, 0x10));
    assert_false(as_reach_in_exec(ph, 3, base, base + 0x800, 0));
    assert_false(as_reach_in_exec(ph, 3, base, base + 0x3000, 1));
    assert_false(as_reach_in_exec(NULL, 0, base, base + 0x1000, 1));
}

/* Proves: __errno_location and clock_gettime (and glibc's __GI_ aliases) are refused for
 * entry patching only, with their own kind and words; __sigjmp_save and __GI_ forms of
 * returns-twice names are refused for every hook; other names stay hookable. */
static void test_entry_own_use(void **state) {
    (void)state;
    const char *own[] = {"__errno_location", "clock_gettime", "__clock_gettime",
                         "__GI___clock_gettime", "__GI___errno_location"};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++) {
        as_symfacts f = fn(own[i], 1);
        assert_int_equal(as_nohook_classify(&f), AS_HOOKABLE);
        assert_int_equal(as_nohook_entry_classify(&f), AS_NOHOOK_OWN_USE);
    }
    as_symfacts g = fn("pthread_mutex_lock", 1);
    assert_int_equal(as_nohook_entry_classify(&g), AS_HOOKABLE);
    const char *twice[] = {"__sigjmp_save", "__GI___sigsetjmp", "__GI___vfork"};
    for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
        as_symfacts f = fn(twice[i], 0);
        assert_int_equal(as_nohook_classify(&f), AS_NOHOOK_RETURNS_TWICE);
    }
    char why[300];
    as_symfacts e = fn("__errno_location", 1);
    as_nohook_why(AS_NOHOOK_OWN_USE, &e, why, sizeof why);
    assert_non_null(strstr(why, "'__errno_location' is called by the interposer's thunk"));
    assert_string_equal(as_nohook_kind_name(AS_NOHOOK_OWN_USE), "used by the interposer");
}

/* as_fnindex_build reader over three fixed functions: [100,110) a, [110,200) b (the one
 * being patched), [200,260) c, and [5000,5100) far. */
static void near_get(const void *ctx, size_t i, uint64_t *value, uint64_t *size,
                     const char **name) {
    (void)ctx;
    static const uint64_t v[] = {100, 110, 200, 5000}, z[] = {10, 90, 60, 100};
    static const char *n[] = {"a", "b", "c", "far"};
    *value = v[i];
    *size = z[i];
    *name = n[i];
}

/* Proves: as_fnindex_near lists the functions around one (the one before first, then
 * the one after), never the function itself nor one outside the window. */
static void test_fnindex_near(void **state) {
    (void)state;
    as_fnindex idx;
    assert_int_equal(as_fnindex_build(&idx, 4, near_get, NULL), 0);
    as_fnrange out[8];
    size_t n = as_fnindex_near(&idx, 110, 1024, out, 8);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].name, "a");
    assert_string_equal(out[1].name, "c");
    as_fnindex_free(&idx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_returns_twice),
        cmocka_unit_test(test_returns_twice_alias),
        cmocka_unit_test(test_fragments_and_clones),
        cmocka_unit_test(test_not_called_and_convention),
        cmocka_unit_test(test_unwinder),
        cmocka_unit_test(test_labels_sizes_segments),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_fnindex),
        cmocka_unit_test(test_reach_auto),
        cmocka_unit_test(test_reach_got_entry),
        cmocka_unit_test(test_selfrefs),
        cmocka_unit_test(test_in_exec),
        cmocka_unit_test(test_entry_own_use),
        cmocka_unit_test(test_fnindex_near),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
