// The uring layer in one include: Ring, every prep_* helper, BufferRing, Probe.
#pragma once

#include "ringshard/framework/uring/abi.hpp"
#include "ringshard/framework/uring/buffer_ring.hpp"
#include "ringshard/framework/uring/prep.hpp"
#include "ringshard/framework/uring/probe.hpp"
#include "ringshard/framework/uring/ring.hpp"
#include "ringshard/framework/uring/types.hpp"
