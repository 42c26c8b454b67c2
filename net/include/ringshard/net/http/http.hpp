// The HTTP/1.1 server core: messages, router, responder, session.
#pragma once

#include "ringshard/net/http/message.hpp"
#include "ringshard/net/http/metrics.hpp"
#include "ringshard/net/http/responder.hpp"
#include "ringshard/net/http/router.hpp"
#include "ringshard/net/http/server.hpp"
#include "ringshard/net/http/session.hpp"
