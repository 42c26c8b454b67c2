// The HTTP router's lookup, one find() per iteration (the time per
// iteration is the time per match): template routes ("/svc7/items/{id}",
// "/svc7/items/{id}/stats") and, for comparison, exact routes, with 10 and
// 100 routes registered. The paths looked up cycle over every route, so
// each is found at its own depth; the miss is a path no route has (404).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "ringshard/net/http/router.hpp"

namespace {

using namespace ringshard::net::http;

Response ok(Request&) { return Response(200); }

// `n` template routes: n/2 services with an item and its stats each.
Router templates(std::size_t n) {
  Router r;
  for (std::size_t i = 0; i < n / 2; ++i) {
    r.get("/svc" + std::to_string(i) + "/items/{id}", ok);
    r.get("/svc" + std::to_string(i) + "/items/{id}/stats", ok);
  }
  return r;
}

void BM_router_template_match(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const Router r = templates(n);
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < n / 2; ++i) {
    paths.push_back("/svc" + std::to_string(i) + "/items/k3Yx9" + std::to_string(i));
    paths.push_back("/svc" + std::to_string(i) + "/items/k3Yx9" + std::to_string(i) + "/stats");
  }
  std::vector<Request> reqs(paths.size());
  for (std::size_t i = 0; i < paths.size(); ++i) reqs[i].set_path(paths[i]);
  std::size_t i = 0, found = 0;
  for (auto _ : state) {
    Request& q = reqs[i];
    const Router::Match m = r.find(Method::get, q);
    found += m.status == 0 && !q.param("id").empty();
    benchmark::DoNotOptimize(m);
    if (++i == reqs.size()) i = 0;
  }
  if (found != static_cast<std::size_t>(state.iterations())) state.SkipWithError("a path was not matched");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_router_template_match)->Arg(10)->Arg(100);

void BM_router_template_miss(benchmark::State& state) {
  const Router r = templates(static_cast<std::size_t>(state.range(0)));
  Request q;
  q.set_path("/svc3/things/k3Yx9/stats");
  for (auto _ : state) {
    const Router::Match m = r.find(Method::get, q);
    if (m.status != 404) state.SkipWithError("the miss was found");
    benchmark::DoNotOptimize(m);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_router_template_miss)->Arg(10)->Arg(100);

void BM_router_exact_match(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  Router r;
  std::vector<Request> reqs(n);
  std::vector<std::string> paths;
  for (std::size_t i = 0; i < n; ++i) paths.push_back("/svc" + std::to_string(i) + "/items");
  for (std::size_t i = 0; i < n; ++i) {
    r.get(paths[i], ok);
    reqs[i].set_path(paths[i]);
  }
  std::size_t i = 0;
  for (auto _ : state) {
    const Router::Match m = r.find(Method::get, reqs[i]);
    if (m.status != 0) state.SkipWithError("a path was not matched");
    benchmark::DoNotOptimize(m);
    if (++i == reqs.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_router_exact_match)->Arg(10)->Arg(100);

}  // namespace
