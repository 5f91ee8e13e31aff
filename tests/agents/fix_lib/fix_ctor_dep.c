/* fix_ctor_dep.c - what the constructor of libfix_ctor.so opens. */
int fix_ctor_dep_func(void) {
    return 1;
}
