// A C++ file for the benchmark suite's g++ workload (bench/suite.py): enough
// templates, containers and algorithms that the compiler allocates a lot.
#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

template <class K, class V> struct Table {
    std::map<K, std::vector<V>> rows;
    void add(const K &k, V v) { rows[k].push_back(std::move(v)); }
    template <class F> auto fold(F f) const
    {
        using R = decltype(f(std::declval<const V &>()));
        R acc{};
        for (auto &[k, vs] : rows)
            for (auto &v : vs)
                acc += f(v);
        return acc;
    }
};

using Value = std::variant<int, double, std::string>;

struct Visitor {
    double operator()(int i) const { return i; }
    double operator()(double d) const { return d; }
    double operator()(const std::string &s) const { return double(s.size()); }
};

int main()
{
    Table<std::string, Value> t;
    std::unordered_map<int, std::set<std::string>> idx;
    for (int i = 0; i < 1000; i++) {
        std::ostringstream k;
        k << "k" << i % 37;
        t.add(k.str(), i % 3 ? Value(i) : Value(std::to_string(i)));
        idx[i % 13].insert(k.str());
    }
    double s = t.fold([](const Value &v) { return std::visit(Visitor{}, v); });
    std::regex re("k([0-9]+)");
    std::vector<std::shared_ptr<std::string>> names;
    for (auto &[k, v] : idx)
        for (auto &n : v)
            if (std::regex_match(n, re))
                names.push_back(std::make_shared<std::string>(n));
    std::sort(names.begin(), names.end(),
              [](auto &a, auto &b) { return *a < *b; });
    std::function<long(long)> fib = [&](long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); };
    std::cout << s << ' ' << names.size() << ' ' << fib(20) << '\n';
}
