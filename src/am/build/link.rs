//! The link phase of a build: the graph is linked on a rayon pool while the backend's thread
//! keeps checking for interrupts and reporting progress; no signal is delivered to the pool.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hnsw_core::graph::Graph;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{progress, PHASE_LINK};
use crate::am::graph::Elem;
use crate::types::raise;

/// Sets the flag when dropped: stops the pool if the backend's thread unwinds (an ERROR from
/// CHECK_FOR_INTERRUPTS) while the pool is still working.
struct CancelOnDrop<'a>(&'a AtomicBool);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Blocks every signal on the calling thread until dropped, so that the threads it starts
/// meanwhile inherit a full mask. Postgres' handlers (SIGINT for cancel, SIGALRM for
/// statement_timeout, SIGUSR1 for latches and barriers, SIGTERM...) set backend-local flags
/// and latches and must run on the backend's own thread; the kernel delivers a signal sent to
/// the process to any thread that does not block it. The backend's mask is restored on drop.
struct SignalsBlocked(libc::sigset_t);

impl SignalsBlocked {
    fn new() -> SignalsBlocked {
        // SAFETY: sigfillset initializes `all`; pthread_sigmask changes only this thread's mask
        // and writes the previous one into `old` (it cannot fail with a valid `how`).
        unsafe {
            let mut all = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            let mut old = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
            SignalsBlocked(old.assume_init())
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new` on the same thread (the guard never leaves
        // the scope that made it); signals that arrived meanwhile are delivered now.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, core::ptr::null_mut()) };
    }
}

/// Link every node on the pool, while this thread checks interrupts and reports progress.
pub(super) fn link<E: Elem>(graph: &Graph<E>, threads: usize) {
    progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, PHASE_LINK);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, graph.len() as i64);
    let pool = {
        // rayon starts its threads here, and they inherit this mask.
        let _blocked = SignalsBlocked::new();
        rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("hnsw-build-{i}")).build()
    }
    .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES, format!("could not start build threads: {e}")));
    let done = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let outcome = std::thread::scope(|s| {
        let backend = std::thread::current();
        let (pool, done, cancel) = (&pool, &done, &cancel);
        let worker = {
            let _blocked = SignalsBlocked::new();
            std::thread::Builder::new().name("hnsw-build".into()).spawn_scoped(s, move || {
                let r = graph.build(pool, done, cancel);
                backend.unpark();
                r
            })
        }
        .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES, format!("could not start build threads: {e}")));
        let _stop = CancelOnDrop(cancel);
        while !worker.is_finished() {
            check_for_interrupts!();
            progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, done.load(Ordering::Relaxed) as i64);
            std::thread::park_timeout(Duration::from_millis(20));
        }
        worker.join()
    });
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => raise(PgSqlErrorCode::ERRCODE_QUERY_CANCELED, "hnsw build cancelled"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
