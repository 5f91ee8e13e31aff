// typed_throw.cpp - a C++ agent whose wrapped tools throw: one exception crosses a
// tracked call and is caught by the caller, one is thrown and caught inside the tool, and
// one crosses two nested tracked calls. Prints what it caught and exits 5, so a test can
// compare the run bare and under the interposer (tests/integration/test_typed.py).
#include <cstdio>
#include <stdexcept>

extern "C" int throw_tool(int x);
extern "C" int catch_inside_tool(int x);
extern "C" int nested_tool(int x);

int main() {
    int caught = 0;
    for (int i = 0; i < 3; i++) {
        try {
            throw_tool(i);
        } catch (const std::runtime_error &e) {
            caught++;
            std::printf("caught %s\n", e.what());
        }
    }
    std::printf("inside %d\n", catch_inside_tool(4));
    try {
        nested_tool(2);
    } catch (const std::exception &e) {
        caught++;
        std::printf("caught nested %s\n", e.what());
    }
    std::printf("after %d\n", throw_tool(-1));
    std::printf("caught %d\n", caught);
    return 5;
}
