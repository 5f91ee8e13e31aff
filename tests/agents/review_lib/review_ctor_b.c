/* review_ctor_b.c - the library review_ctor_a's constructor loads. */
int review_ctor_b_tool(int x) {
    return x + 2;
}
