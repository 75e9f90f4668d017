// Workload of test-gxx.sh: compiled by g++ (under glibc and under
// buddymalloc), then run under both. Heavy on operator new/delete through
// the standard library: std::map, std::unordered_map, std::string,
// std::vector, std::list, std::set, shared_ptr/weak_ptr/unique_ptr,
// std::function, exceptions (each one allocated by the C++ runtime),
// over-aligned new, and objects made by threads and destroyed by others.
// Prints a deterministic text; exits 1 if one of its own checks fails.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string &what)
{
    if (!ok) {
        std::printf("CHECK FAILED: %s\n", what.c_str());
        failures++;
    }
}

std::uint64_t fnv(const std::string &s, std::uint64_t h = 1469598103934665603ULL)
{
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

struct Node {
    int id;
    std::string name;
    std::vector<int> values;
    std::weak_ptr<Node> parent;
    std::vector<std::shared_ptr<Node>> children;
    Node(int i, std::string n) : id(i), name(std::move(n)), values(i % 17, i) {}
};

struct Shape {
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual std::string label() const = 0;
};
struct Rect : Shape {
    double w, h;
    Rect(double a, double b) : w(a), h(b) {}
    double area() const override { return w * h; }
    std::string label() const override { return "rect" + std::to_string(int(w)) + "x" + std::to_string(int(h)); }
};
struct Tri : Shape {
    double b, h;
    Tri(double a, double c) : b(a), h(c) {}
    double area() const override { return b * h / 2; }
    std::string label() const override { return "tri" + std::to_string(int(b)); }
};

struct alignas(64) Cache {
    char line[64];
    std::uint64_t n;
};

class ParseError : public std::runtime_error {
public:
    int at;
    ParseError(const std::string &msg, int pos) : std::runtime_error(msg), at(pos) {}
};

int parse(const std::string &s)
{
    int v = 0;
    for (std::size_t i = 0; i < s.size(); i++) {
        if (s[i] < '0' || s[i] > '9')
            throw ParseError("bad digit '" + std::string(1, s[i]) + "' in \"" + s + "\"", int(i));
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

// 1. A map of strings to vectors of shared nodes, trees with weak parents.
void trees()
{
    std::map<std::string, std::vector<std::shared_ptr<Node>>> forest;
    for (int i = 0; i < 60000; i++) {
        std::string key = "group-" + std::to_string(i % 97);
        auto n = std::make_shared<Node>(i, "node-" + std::to_string(i) + "-" + key);
        auto &v = forest[key];
        if (!v.empty() && i % 3) {
            n->parent = v.back();
            v.back()->children.push_back(n);
        }
        v.push_back(std::move(n));
    }
    std::uint64_t h = 0;
    std::size_t kids = 0, values = 0, parents = 0;
    for (auto &[k, v] : forest) {
        for (auto &n : v) {
            kids += n->children.size();
            values += n->values.size();
            if (auto p = n->parent.lock())
                parents++;
            h = fnv(n->name, h);
        }
    }
    check(forest.size() == 97, "97 groups");
    check(kids == parents, "every child has its parent");
    // Erase every other group: shared_ptrs released, children freed.
    int i = 0;
    for (auto it = forest.begin(); it != forest.end(); i++)
        it = (i % 2) ? forest.erase(it) : std::next(it);
    std::printf("trees: groups %zu kids %zu values %zu hash %016llx left %zu\n", std::size_t(97), kids,
                values, (unsigned long long)h, forest.size());
}

// 2. Strings: building, splitting, an unordered_map word count, sorting.
void strings()
{
    const char *words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"};
    std::string text;
    for (int i = 0; i < 200000; i++) {
        text += words[(i * 7 + i / 11) % 8];
        text += (i % 13) ? ' ' : '\n';
    }
    std::unordered_map<std::string, int> count;
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        std::istringstream ls(line);
        for (std::string w; ls >> w;)
            count[w]++;
        lines.push_back(std::move(line));
    }
    std::sort(lines.begin(), lines.end());
    lines.erase(std::unique(lines.begin(), lines.end()), lines.end());
    std::vector<std::pair<std::string, int>> sorted(count.begin(), count.end());
    std::sort(sorted.begin(), sorted.end());
    std::ostringstream out;
    for (auto &[w, n] : sorted)
        out << w << '=' << n << ' ';
    int total = 0;
    for (auto &p : sorted)
        total += p.second;
    check(total == 200000, "200000 words counted");
    std::printf("strings: %zu bytes, %zu distinct lines, counts %s\n", text.size(), lines.size(),
                out.str().c_str());
}

// 3. Exceptions: thrown and caught many times (each one a runtime allocation).
void exceptions()
{
    int caught = 0, positions = 0, ok = 0;
    std::uint64_t h = 0;
    for (int i = 0; i < 30000; i++) {
        std::string s = std::to_string(i * 37);
        if (i % 3 == 0)
            s.insert(s.size() / 2, 1, char('a' + i % 26));
        try {
            try {
                ok += parse(s) == i * 37;
            } catch (const ParseError &e) {
                positions += e.at;
                h = fnv(e.what(), h);
                if (i % 5 == 0)
                    throw std::out_of_range(std::string("rethrown: ") + e.what());
                caught++;
            }
        } catch (const std::exception &e) {
            caught++;
            h = fnv(e.what(), h);
        }
    }
    check(caught == 10000 && ok == 20000, "10000 exceptions, 20000 numbers");
    std::printf("exceptions: caught %d ok %d positions %d hash %016llx\n", caught, ok, positions,
                (unsigned long long)h);
}

// 4. Polymorphic objects through unique_ptr, lists, sets, std::function.
void objects()
{
    std::vector<std::unique_ptr<Shape>> shapes;
    for (int i = 1; i <= 50000; i++) {
        if (i % 2)
            shapes.push_back(std::make_unique<Rect>(i % 10 + 1, i % 7 + 1));
        else
            shapes.push_back(std::make_unique<Tri>(i % 9 + 1, i % 5 + 1));
    }
    double area = 0;
    std::set<std::string> labels;
    for (auto &s : shapes) {
        area += s->area();
        labels.insert(s->label());
    }
    std::list<std::function<long(long)>> fs;
    for (int i = 0; i < 1000; i++) {
        std::string tag(i % 50 + 20, char('a' + i % 26));  // captured by value: a heap copy
        fs.push_back([i, tag](long x) { return x + i + long(tag.size()); });
    }
    long acc = 0;
    for (auto &f : fs)
        acc = f(acc) % 1000003;
    fs.remove_if([](const std::function<long(long)> &f) { return f(0) % 3 == 0; });
    std::vector<std::unique_ptr<Cache>> lines;
    for (int i = 0; i < 20000; i++) {
        lines.push_back(std::make_unique<Cache>());
        lines.back()->n = std::uint64_t(i);
        check(reinterpret_cast<std::uintptr_t>(lines.back().get()) % 64 == 0, "alignas(64) new is aligned");
    }
    std::uint64_t sum = 0;
    for (auto &c : lines)
        sum += c->n;
    shapes.erase(shapes.begin(), shapes.begin() + 25000);
    std::printf("objects: area %.1f labels %zu acc %ld functions left %zu aligned sum %llu\n", area,
                labels.size(), acc, fs.size(), (unsigned long long)sum);
}

// 5. Threads: each builds objects; the main thread destroys them after the
// threads have exited; then objects made by main are freed by a thread.
void threads()
{
    const int nthreads = 4;
    std::vector<std::vector<std::shared_ptr<Node>>> made(nthreads);
    std::vector<std::thread> ts;
    for (int t = 0; t < nthreads; t++)
        ts.emplace_back([t, &made] {
            std::map<int, std::string> local;
            for (int i = 0; i < 20000; i++) {
                made[t].push_back(std::make_shared<Node>(i, "t" + std::to_string(t) + "-" + std::to_string(i)));
                local[i] = made[t].back()->name + "/local";
                if (i % 3 == 0)
                    local.erase(i / 2);
            }
        });
    for (auto &t : ts)
        t.join();
    std::size_t names = 0;
    for (auto &v : made)
        for (auto &n : v)
            names += n->name.size();
    made.clear();  // freed by this thread, allocated by exited threads

    auto given = std::make_unique<std::vector<std::string>>();
    for (int i = 0; i < 50000; i++)
        given->push_back("main-" + std::to_string(i));
    std::size_t len = 0;
    std::thread eater([&given, &len] {
        for (auto &s : *given)
            len += s.size();
        given.reset();  // freed by this thread, allocated by main
    });
    eater.join();
    check(!given, "the thread freed the vector");
    std::printf("threads: names %zu main strings %zu\n", names, len);
}

}  // namespace

int main()
{
    trees();
    strings();
    exceptions();
    objects();
    threads();
    if (failures) {
        std::printf("%d checks failed\n", failures);
        return 1;
    }
    std::printf("stl workload ok\n");
    return 0;
}
