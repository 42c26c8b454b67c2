// JSON for HTTP handlers, with nlohmann-json (Debian: nlohmann-json3-dev).
// Optional: the net library does not use it; include this header where you
// want it and make nlohmann-json available to that target
// (find_package(nlohmann_json) and nlohmann_json::nlohmann_json).
//
//   router.post("/links", [](http::Request& req) {
//     auto body = http::parse_json(req);
//     if (!body) return std::move(body.error);            // 400, {"error": "..."}
//     return http::json_response(201, {{"id", make_id(body.value["url"])}});
//   });
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>

#include "ringshard/net/http/message.hpp"

namespace ringshard::net::http {

/// A response whose body is `value` serialised (Content-Type:
/// application/json). Strings that are not valid UTF-8 are sent with
/// U+FFFD in place of the bad bytes instead of throwing.
[[nodiscard]] inline Response json_response(int status, const nlohmann::json& value) {
  return Response::json(status, value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

/// The result of parse_json: the value, or the 400 response to answer with.
struct JsonBody {
  nlohmann::json value;
  Response error;  ///< 400 with {"error": "<why>"} when parsing failed
  bool ok = false;
  explicit operator bool() const noexcept { return ok; }
};

/// Parses the request body as JSON (an empty body is an error too). On
/// failure `error` is a 400 saying where the parse stopped.
[[nodiscard]] inline JsonBody parse_json(const Request& req) {
  JsonBody out;
  try {
    out.value = nlohmann::json::parse(req.body);
    out.ok = true;
  } catch (const nlohmann::json::exception& e) {
    out.error = json_response(400, {{"error", std::string("invalid JSON: ") + e.what()}});
  }
  return out;
}

}  // namespace ringshard::net::http
