//! Heavyweight locks an index takes besides buffer locks, and the interrupt holdoff that
//! brackets an insert's linking.
//!
//! Inserts and VACUUM coordinate through two page locks on block numbers no data page has
//! (see `am::insert`): [`FIRST_INSERT_LOCK`] serializes inserts into an empty index, so that
//! two first inserts cannot both become unconnected entry points; [`INSERT_LOCK`] is shared by
//! every insert and taken exclusively by VACUUM for a moment after it marks elements deleted,
//! so that afterwards no insert can still link to an element it saw alive.

use pgrx::pg_sys;

/// Heavyweight page lock (on the meta block number) serializing inserts into an empty index.
pub const FIRST_INSERT_LOCK: u32 = 0;
/// Heavyweight page lock (on a block number no page has) that inserts share and VACUUM takes
/// exclusively.
pub const INSERT_LOCK: u32 = 0xFFFF_FFFE;

/// Heavyweight page lock, released on drop.
pub struct PageLock(pg_sys::Relation, u32, pg_sys::LOCKMODE);

impl PageLock {
    pub(crate) fn exclusive(rel: pg_sys::Relation, block: u32) -> PageLock {
        Self::take(rel, block, pg_sys::ExclusiveLock as pg_sys::LOCKMODE)
    }

    pub(crate) fn share(rel: pg_sys::Relation, block: u32) -> PageLock {
        Self::take(rel, block, pg_sys::ShareLock as pg_sys::LOCKMODE)
    }

    fn take(rel: pg_sys::Relation, block: u32, mode: pg_sys::LOCKMODE) -> PageLock {
        // SAFETY: the relation is open; released in drop.
        unsafe { pg_sys::LockPage(rel, block, mode) };
        PageLock(rel, block, mode)
    }
}

impl Drop for PageLock {
    fn drop(&mut self) {
        // SAFETY: taken in `take` on the same relation, block and mode.
        unsafe { pg_sys::UnlockPage(self.0, self.1, self.2) };
    }
}

/// HOLD_INTERRUPTS() until dropped (RESUME_INTERRUPTS()); an ERROR's cleanup resets the count
/// anyway, and our drop then only brings it back down to where it was.
pub struct HoldInterrupts;

impl HoldInterrupts {
    pub fn new() -> HoldInterrupts {
        // SAFETY: a backend-local counter, touched only on the backend's thread.
        unsafe { pg_sys::InterruptHoldoffCount += 1 };
        HoldInterrupts
    }
}

impl Default for HoldInterrupts {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HoldInterrupts {
    fn drop(&mut self) {
        // SAFETY: as in new(); never below zero.
        unsafe { pg_sys::InterruptHoldoffCount = pg_sys::InterruptHoldoffCount.saturating_sub(1) };
    }
}
