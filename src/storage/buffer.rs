//! RAII guards for buffers and WAL records.
//!
//! A [`Buffer`] is pinned and locked from construction to drop, and a [`Wal`] record is aborted
//! unless finished. Rust unwinds through both on every path out of a function — including an
//! `ERROR` raised inside a Postgres call, which pgrx turns into a panic before Postgres' own
//! abort processing runs. On a normal return the guards release their buffers; on an unwind
//! they leave them to the transaction's abort (see [`release_now`]).

use std::cell::RefCell;

use pgrx::pg_sys;

use super::page::{Page, PageMut};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lock {
    Share,
    Exclusive,
}

pub struct Buffer {
    id: pg_sys::Buffer,
}

/// InvalidSubTransactionId (not exported by pgrx).
const INVALID_SUBXID: pg_sys::SubTransactionId = 0;

/// `RelationNeedsWAL()`: permanent relations, unless created in this transaction under
/// wal_level=minimal.
pub(crate) fn relation_needs_wal(rel: pg_sys::Relation) -> bool {
    // SAFETY: `rel` is an open relation; rd_rel is valid while it is open.
    unsafe {
        (*(*rel).rd_rel).relpersistence == pg_sys::RELPERSISTENCE_PERMANENT as core::ffi::c_char
            && (pg_sys::wal_level >= pg_sys::WalLevel::WAL_LEVEL_REPLICA as i32
                || ((*rel).rd_createSubid == INVALID_SUBXID && (*rel).rd_firstRelfilenodeSubid == INVALID_SUBXID))
    }
}

impl Buffer {
    /// Pin and lock block `block` of the main fork.
    pub(crate) fn read(rel: pg_sys::Relation, block: u32, lock: Lock) -> Buffer {
        Self::read_fork(rel, pg_sys::ForkNumber::MAIN_FORKNUM, block, lock)
    }

    pub(crate) fn read_fork(rel: pg_sys::Relation, fork: pg_sys::ForkNumber::Type, block: u32, lock: Lock) -> Buffer {
        Self::read_fork_with(rel, fork, block, lock, core::ptr::null_mut())
    }

    /// [`Buffer::read`] through a buffer access strategy: a [`Strategy`]'s, or VACUUM's
    /// `info->strategy` (null: the default, shared buffers at large).
    pub(crate) fn read_with(rel: pg_sys::Relation, block: u32, lock: Lock, strategy: pg_sys::BufferAccessStrategy) -> Buffer {
        Self::read_fork_with(rel, pg_sys::ForkNumber::MAIN_FORKNUM, block, lock, strategy)
    }

    fn read_fork_with(
        rel: pg_sys::Relation,
        fork: pg_sys::ForkNumber::Type,
        block: u32,
        lock: Lock,
        strategy: pg_sys::BufferAccessStrategy,
    ) -> Buffer {
        // SAFETY: `rel` is open and locked by our caller, and `strategy` is null or a live
        // strategy; ReadBufferExtended pins the block or raises an ERROR (no pin then). A pin
        // guard exists before LockBuffer, so an ERROR there leaves a tracked pin, which the
        // abort releases.
        let id = unsafe { pg_sys::ReadBufferExtended(rel, fork, block, pg_sys::ReadBufferMode::RBM_NORMAL, strategy) };
        // Pinned but not locked yet: track the pin alone until the lock is held.
        let pinned = PinOnly(id);
        // SAFETY: `id` is pinned by us.
        unsafe { pg_sys::LockBuffer(id, lock_mode(lock)) };
        core::mem::forget(pinned);
        Buffer { id }
    }

    /// Hint the cache about the shared buffer that held `block` last time, so that a following
    /// [`Buffer::pin_recent`] finds its descriptor (which it locks and pins) already cached.
    #[inline]
    pub(crate) fn prefetch_recent(rel: pg_sys::Relation, block: u32) {
        // SAFETY: `rel` is open.
        let node = unsafe { (*rel).rd_node };
        let hint = RECENT.with(|r| r.borrow().get(node, block));
        if hint > 0 {
            // SAFETY: only an address is computed (never dereferenced): the descriptor array
            // has one padded entry per shared buffer, and hint is a shared buffer number.
            let desc = unsafe { pg_sys::BufferDescriptors.add(hint as usize - 1) };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: prefetch is a hint that never faults.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(desc.cast());
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = desc;
        }
    }

    /// Pin (without locking) a block for a search, using the same hints as
    /// [`Buffer::read_recent`]; lock it later with [`Pin::share`].
    pub(crate) fn pin_recent(rel: pg_sys::Relation, block: u32) -> Pin {
        Pin(Self::pin_hinted(rel, block))
    }

    /// Pin `block`, through the buffer that held it last time if it still does.
    #[inline]
    fn pin_hinted(rel: pg_sys::Relation, block: u32) -> pg_sys::Buffer {
        // SAFETY: `rel` is open; rd_node identifies its current relfilenode.
        let node = unsafe { (*rel).rd_node };
        let hint = RECENT.with(|r| r.borrow().get(node, block));
        // SAFETY: ReadRecentBuffer only pins `hint` if it is valid and holds exactly this block
        // of this relfilenode; otherwise it pins nothing and returns false.
        if hint != 0 && unsafe { pg_sys::ReadRecentBuffer(node, pg_sys::ForkNumber::MAIN_FORKNUM, block, hint) } {
            return hint;
        }
        // SAFETY: as in read_fork.
        let id = unsafe {
            pg_sys::ReadBufferExtended(
                rel,
                pg_sys::ForkNumber::MAIN_FORKNUM,
                block,
                pg_sys::ReadBufferMode::RBM_NORMAL,
                core::ptr::null_mut(),
            )
        };
        RECENT.with(|r| r.borrow_mut().set(node, block, id));
        id
    }

    /// [`Buffer::read`] for the hot paths of searches: remembers which shared buffer held each
    /// block and re-pins it with `ReadRecentBuffer`, which checks the buffer still holds the
    /// block and skips the buffer-mapping hash lookup and its partition lock. A stale hint
    /// costs one failed check and falls back to the normal lookup.
    pub(crate) fn read_recent(rel: pg_sys::Relation, block: u32, lock: Lock) -> Buffer {
        let id = Self::pin_hinted(rel, block);
        let pinned = PinOnly(id);
        // SAFETY: `id` is pinned by us.
        unsafe { pg_sys::LockBuffer(id, lock_mode(lock)) };
        core::mem::forget(pinned);
        Buffer { id }
    }

    /// Add a new, exclusively locked, zeroed page at the end of `fork`.
    pub(crate) fn extend(rel: pg_sys::Relation, fork: pg_sys::ForkNumber::Type) -> Buffer {
        let _ext = ExtensionLock::acquire(rel);
        // SAFETY: holding the relation extension lock, P_NEW appends one zeroed page and pins it.
        let id = unsafe {
            pg_sys::ReadBufferExtended(rel, fork, pg_sys::InvalidBlockNumber, pg_sys::ReadBufferMode::RBM_NORMAL, core::ptr::null_mut())
        };
        let pinned = PinOnly(id);
        // SAFETY: pinned by us; nobody else knows this page yet, so the lock is immediate.
        unsafe { pg_sys::LockBuffer(id, pg_sys::BUFFER_LOCK_EXCLUSIVE as i32) };
        core::mem::forget(pinned);
        Buffer { id }
    }

    pub fn id(&self) -> pg_sys::Buffer {
        self.id
    }

    pub fn block(&self) -> u32 {
        // SAFETY: the buffer is pinned.
        unsafe { pg_sys::BufferGetBlockNumber(self.id) }
    }

    pub fn page(&self) -> Page<'_> {
        // SAFETY: pinned and locked for as long as `self` lives.
        unsafe { Page::from_ptr(pg_sys::BufferGetPage(self.id).cast()) }
    }

    /// Write access without WAL, for `ambuild` (which logs the whole relation at the end) and
    /// for init forks (logged whole by the caller).
    ///
    /// # Safety
    /// The buffer must be exclusively locked, and the caller must WAL-log or mark the change
    /// as `ambuild` does.
    pub unsafe fn page_mut_unlogged(&mut self) -> PageMut<'_> {
        // SAFETY: per the function's contract.
        unsafe { PageMut::from_ptr(pg_sys::BufferGetPage(self.id).cast()) }
    }

    pub fn mark_dirty(&self) {
        // SAFETY: pinned and exclusively locked (callers only dirty pages they wrote).
        unsafe { pg_sys::MarkBufferDirty(self.id) };
    }
}

/// A buffer access strategy for a pass over a whole index (`GetAccessStrategy`), so that it
/// cycles through a small ring of buffers instead of evicting shared buffers that others use;
/// freed on drop.
pub struct Strategy(pg_sys::BufferAccessStrategy);

impl Strategy {
    /// The ring sequential scans of large tables use (`BAS_BULKREAD`).
    pub fn bulk_read() -> Strategy {
        // SAFETY: allocates a strategy in the current memory context (or raises an ERROR).
        Strategy(unsafe { pg_sys::GetAccessStrategy(pg_sys::BufferAccessStrategyType::BAS_BULKREAD) })
    }

    /// For [`Buffer::read_with`]; valid while `self` lives.
    pub fn as_ptr(&self) -> pg_sys::BufferAccessStrategy {
        self.0
    }
}

impl Drop for Strategy {
    fn drop(&mut self) {
        if release_now() {
            // SAFETY: allocated in bulk_read and not freed yet; buffers read through it keep
            // no reference to it once released. On an unwind its memory context goes instead.
            unsafe { pg_sys::FreeAccessStrategy(self.0) };
        }
    }
}

/// Whether a guard's drop should give its buffer back. Not while unwinding: the unwind is an
/// ERROR on its way to the transaction's abort (pgrx turns every ERROR into a panic, and every
/// panic back into an ERROR at the `#[pg_guard]` boundary; nothing here catches one and goes
/// on), and the abort releases everything itself — content locks in LWLockReleaseAll, pins
/// through the resource owner — as it does for C code, which never releases on its way out.
/// Releasing here instead is wrong when the ERROR came from Postgres: errfinish has already
/// zeroed InterruptHoldoffCount, and LWLockRelease's RESUME_INTERRUPTS would take it below
/// zero (an Assert on cassert builds, a wrapped counter otherwise), whereas LWLockReleaseAll
/// holds interrupts before each release to match.
fn release_now() -> bool {
    !std::thread::panicking()
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if release_now() {
            // SAFETY: we hold a pin and a lock on `id`, taken in the constructor.
            unsafe { pg_sys::UnlockReleaseBuffer(self.id) };
        }
    }
}

/// Block -> shared buffer hints of the index this backend searched last.
struct RecentBuffers {
    node: pg_sys::RelFileNode,
    slots: Vec<pg_sys::Buffer>,
}

thread_local! {
    static RECENT: RefCell<RecentBuffers> = RefCell::new(RecentBuffers { node: pg_sys::RelFileNode::default(), slots: Vec::new() });
}

/// Forget the buffer hints if their table holds more than `keep` bytes (at transaction end):
/// it is sized by the largest block number searched. Returns the bytes kept.
pub fn trim_recent(keep: usize) -> usize {
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        if r.slots.capacity() * core::mem::size_of::<pg_sys::Buffer>() > keep {
            r.slots = Vec::new();
            r.node = pg_sys::RelFileNode::default();
        }
        r.slots.capacity() * core::mem::size_of::<pg_sys::Buffer>()
    })
}

fn same_node(a: &pg_sys::RelFileNode, b: &pg_sys::RelFileNode) -> bool {
    a.relNode == b.relNode && a.dbNode == b.dbNode && a.spcNode == b.spcNode
}

impl RecentBuffers {
    fn get(&self, node: pg_sys::RelFileNode, block: u32) -> pg_sys::Buffer {
        if same_node(&self.node, &node) {
            self.slots.get(block as usize).copied().unwrap_or(0)
        } else {
            0
        }
    }

    fn set(&mut self, node: pg_sys::RelFileNode, block: u32, id: pg_sys::Buffer) {
        if !same_node(&self.node, &node) {
            self.node = node;
            self.slots.clear();
        }
        let i = block as usize;
        if i >= self.slots.len() {
            self.slots.resize(i + 1, 0);
        }
        self.slots[i] = id;
    }
}

fn lock_mode(lock: Lock) -> i32 {
    match lock {
        Lock::Share => pg_sys::BUFFER_LOCK_SHARE as i32,
        Lock::Exclusive => pg_sys::BUFFER_LOCK_EXCLUSIVE as i32,
    }
}

/// A pinned, unlocked buffer. Its page address is stable while pinned, but its contents may
/// only be read under [`Pin::share`].
pub struct Pin(pg_sys::Buffer);

impl Pin {
    pub fn block(&self) -> u32 {
        // SAFETY: the buffer is pinned.
        unsafe { pg_sys::BufferGetBlockNumber(self.0) }
    }

    /// Address of the page, for prefetch hints only.
    pub fn page_addr(&self) -> *const u8 {
        // SAFETY: a pinned buffer's page address does not change.
        unsafe { pg_sys::BufferGetPage(self.0).cast() }
    }

    /// Share-lock the page for reading; unlocked when the guard drops.
    pub fn share(&self) -> SharedLock<'_> {
        // SAFETY: the buffer is pinned by us and not locked by us.
        unsafe { pg_sys::LockBuffer(self.0, pg_sys::BUFFER_LOCK_SHARE as i32) };
        SharedLock(self)
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if release_now() {
            // SAFETY: we hold the pin (and no lock: SharedLock borrows the Pin, so it is gone).
            unsafe { pg_sys::ReleaseBuffer(self.0) };
        }
    }
}

/// A share lock on a pinned buffer.
pub struct SharedLock<'a>(&'a Pin);

impl SharedLock<'_> {
    pub fn page(&self) -> Page<'_> {
        // SAFETY: pinned and share-locked for as long as `self` lives.
        unsafe { Page::from_ptr(pg_sys::BufferGetPage(self.0 .0).cast()) }
    }
}

impl Drop for SharedLock<'_> {
    fn drop(&mut self) {
        if release_now() {
            // SAFETY: we locked it in Pin::share.
            unsafe { pg_sys::LockBuffer(self.0 .0, pg_sys::BUFFER_LOCK_UNLOCK as i32) };
        }
    }
}

/// A pin not yet locked: released if locking raises an ERROR.
struct PinOnly(pg_sys::Buffer);

impl Drop for PinOnly {
    fn drop(&mut self) {
        if release_now() {
            // SAFETY: we hold the pin, and no lock.
            unsafe { pg_sys::ReleaseBuffer(self.0) };
        }
    }
}

/// The relation extension lock, released on drop.
struct ExtensionLock(pg_sys::Relation);

impl ExtensionLock {
    fn acquire(rel: pg_sys::Relation) -> ExtensionLock {
        // SAFETY: `rel` is open; the lock is released in drop.
        unsafe { pg_sys::LockRelationForExtension(rel, pg_sys::ExclusiveLock as i32) };
        ExtensionLock(rel)
    }
}

impl Drop for ExtensionLock {
    fn drop(&mut self) {
        // SAFETY: acquired in `acquire`.
        unsafe { pg_sys::UnlockRelationForExtension(self.0, pg_sys::ExclusiveLock as i32) };
    }
}

/// How a change reaches disk safely.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Logging {
    /// GenericXLog record (a no-op log for relations that need no WAL).
    Wal,
    /// Inside ambuild: pages are dirtied directly; `log_newpage_range` logs them afterwards.
    Build,
}

/// One change to one page: GenericXLog when logging, direct otherwise. Made only through
/// [`Wal::edit`], which finishes the record when the change returns and aborts it (on drop)
/// when the change raises an ERROR: no call site can forget either.
pub struct Wal<'b> {
    state: *mut pg_sys::GenericXLogState,
    buffer: &'b Buffer,
    page: *mut u8,
}

impl<'b> Wal<'b> {
    /// Change one page: `change` edits it (GenericXLog's copy when logging), and the record is
    /// finished when it returns, whatever it returns. An ERROR (or panic) inside `change`
    /// unwinds through the record's guard, which aborts it: the buffer is left untouched.
    /// `new_page` logs a full image, for a page being initialized.
    pub(crate) fn edit<R>(
        rel: pg_sys::Relation,
        buffer: &'b Buffer,
        logging: Logging,
        new_page: bool,
        change: impl FnOnce(&mut PageMut<'_>) -> R,
    ) -> R {
        let mut wal = Wal::start(rel, buffer, logging, new_page);
        let result = change(&mut wal.page());
        wal.finish();
        result
    }

    /// Start changing `buffer` (exclusively locked). `full_image` logs the whole page, for pages
    /// being initialized.
    fn start(rel: pg_sys::Relation, buffer: &'b Buffer, logging: Logging, full_image: bool) -> Wal<'b> {
        if logging == Logging::Build {
            // SAFETY: the buffer is exclusively locked; ambuild logs the relation at the end.
            let page = unsafe { pg_sys::BufferGetPage(buffer.id).cast() };
            return Wal { state: core::ptr::null_mut(), buffer, page };
        }
        // SAFETY: GenericXLogStart allocates state for `rel`; if registering raises an ERROR,
        // the guard below aborts the state.
        let state = unsafe { pg_sys::GenericXLogStart(rel) };
        let mut w = Wal { state, buffer, page: core::ptr::null_mut() };
        let flags = if full_image { pg_sys::GENERIC_XLOG_FULL_IMAGE as i32 } else { 0 };
        // SAFETY: the buffer is pinned and exclusively locked by its guard, which outlives us.
        w.page = unsafe { pg_sys::GenericXLogRegisterBuffer(state, buffer.id, flags) }.cast();
        w
    }

    /// The page to modify: GenericXLog's working copy, or the buffer itself when building.
    fn page(&mut self) -> PageMut<'_> {
        // SAFETY: the copy (or the locked buffer) is ours until finish/abort.
        unsafe { PageMut::from_ptr(self.page) }
    }

    fn finish(mut self) {
        if self.state.is_null() {
            self.buffer.mark_dirty();
        } else {
            let state = core::mem::replace(&mut self.state, core::ptr::null_mut());
            // SAFETY: `state` is a live GenericXLog record; finish applies the copies to the
            // buffers, marks them dirty and writes the WAL record.
            unsafe { pg_sys::GenericXLogFinish(state) };
        }
        self.page = core::ptr::null_mut();
    }
}

impl Drop for Wal<'_> {
    fn drop(&mut self) {
        if !self.state.is_null() {
            // SAFETY: unfinished record: abort discards the copies, the buffer is untouched.
            unsafe { pg_sys::GenericXLogAbort(self.state) };
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::*;

    /// An ERROR raised inside a Postgres call while a guard holds a content lock: errfinish
    /// zeroes InterruptHoldoffCount before the unwind, so a guard that released its lock on
    /// the way out took the count below zero (an Assert on cassert builds; on others the
    /// counter wrapped to 2^32 - 1, holding interrupts off until the next ERROR reset it).
    #[pg_test]
    fn guards_leave_their_buffers_to_the_abort_after_an_error() {
        Spi::run("CREATE TABLE buf_err (v vector(2)); INSERT INTO buf_err VALUES ('[1,2]'), ('[3,4]')").unwrap();
        Spi::run("CREATE INDEX buf_err_idx ON buf_err USING hnsw (v vector_l2_ops)").unwrap();
        let oid = Spi::get_one::<pg_sys::Oid>("SELECT 'buf_err_idx'::regclass::oid").unwrap().unwrap();
        // SAFETY: the index is opened and closed here.
        let rel = unsafe { pg_sys::index_open(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
        let held = std::panic::AssertUnwindSafe(RefCell::new(Vec::new()));
        let caught = PgTryBuilder::new(|| {
            let meta = Buffer::read(rel, 0, Lock::Share);
            let pin = Buffer::pin_recent(rel, 1);
            held.borrow_mut().extend([meta.id(), pin.0]);
            // Past the end of the relation: ReadBufferExtended raises an ERROR.
            let _beyond = Buffer::read(rel, 1_000_000, Lock::Share);
            false
        })
        .catch_others(|_| true)
        .execute();
        assert!(caught);
        // SAFETY: a backend-local counter, read on the backend's thread.
        let holdoff = unsafe { pg_sys::InterruptHoldoffCount };
        assert_eq!(holdoff, 0);
        // What the abort would do: the content lock, then the pins.
        // SAFETY: the guards left exactly these held: one content lock and two pins.
        unsafe {
            pg_sys::LWLockReleaseAll();
            held.borrow().iter().for_each(|&b| pg_sys::ReleaseBuffer(b));
        }
        // SAFETY: opened above.
        unsafe { pg_sys::index_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
    }
}
