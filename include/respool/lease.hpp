// respool/lease.hpp — Lease<T>, the move-only RAII handle to a pooled resource.
#pragma once

#include <cstdint>
#include <utility>

#include "respool/detail/pool_core.hpp"

namespace respool {

template <class T>
class Resource;

// Holds one resource of a Resource<T> pool, like a unique_ptr that gives the
// resource back to its pool instead of deleting it. Move-only and
// nothrow-movable; empty after release(), discard() or a move.
//
// A lease may outlive its pool: the resource is then closed when the lease
// lets go. After fork(), a lease inherited from the parent lets go of nothing
// (the child must not touch the parent's resources).
//
// Thread safety: one lease is used by one thread at a time; different leases
// of the same pool may be used and released concurrently.
template <class T>
class Lease {
 public:
  using element_type = T;

  // An empty lease.
  Lease() noexcept = default;

  Lease(Lease&& other) noexcept
      : core_(std::exchange(other.core_, nullptr)),
        slot_(std::exchange(other.slot_, nullptr)),
        generation_(other.generation_) {}

  // Releases what this lease held, then takes over `other`'s resource.
  Lease& operator=(Lease&& other) noexcept {
    if (this != &other) {
      release();
      core_ = std::exchange(other.core_, nullptr);
      slot_ = std::exchange(other.slot_, nullptr);
      generation_ = other.generation_;
    }
    return *this;
  }

  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Gives the resource back to its pool.
  ~Lease() { release(); }

  // The resource. Precondition: the lease is not empty.
  T& operator*() const noexcept { return slot_->value; }
  T* operator->() const noexcept { return &slot_->value; }
  // The resource, or nullptr if the lease is empty.
  T* get() const noexcept { return slot_ ? &slot_->value : nullptr; }

  // True while the lease holds a resource.
  explicit operator bool() const noexcept { return slot_ != nullptr; }

  // Give the resource back to the pool now (to the longest waiter, or idle).
  // Idempotent: releasing an empty lease does nothing.
  void release() noexcept {
    if (slot_ == nullptr) return;
    auto* core = std::exchange(core_, nullptr);
    core->release(std::exchange(slot_, nullptr), generation_);
  }

  // Close the resource and free its slot in the pool (kombu's `replace`): use
  // it for a resource you found broken. Idempotent.
  void discard() noexcept {
    if (slot_ == nullptr) return;
    auto* core = std::exchange(core_, nullptr);
    core->discard(std::exchange(slot_, nullptr), generation_);
  }

  // Internal: adopt a slot handed out by the pool core.
  Lease(detail::pool_core<T>* core, detail::slot<T>* slot) noexcept
      : core_(core), slot_(slot), generation_(detail::fork_generation()) {}

 private:
  detail::pool_core<T>* core_ = nullptr;
  detail::slot<T>* slot_ = nullptr;
  std::uint32_t generation_ = 0;
};

}  // namespace respool
