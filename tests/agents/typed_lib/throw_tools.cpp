// throw_tools.cpp - tools of typed_throw that throw C++ exceptions through their callers
// (built as libthrow_tools.so by tests/agents/typed.mk).
#include <stdexcept>
#include <string>

extern "C" __attribute__((visibility("default"))) int throw_tool(int x);
extern "C" __attribute__((visibility("default"))) int catch_inside_tool(int x);
extern "C" __attribute__((visibility("default"))) int nested_tool(int x);

int throw_tool(int x) {
    if (x >= 0)
        throw std::runtime_error("tool failed " + std::to_string(x));
    return -x;
}

int catch_inside_tool(int x) {
    try {
        if (x > 0)
            throw std::runtime_error("inner");
    } catch (const std::exception &) {
        return x * 10;
    }
    return 0;
}

int nested_tool(int x) {
    return throw_tool(x) + 1; // through the PLT: a tracked call inside a tracked call
}
