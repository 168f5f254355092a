//! Reading many items scattered over shared buffers with their cache misses overlapped.
//!
//! A walk's hop (a node's neighbours) and a scan's re-ranking (its round's full vectors) each
//! read a few dozen tuples on as many pages. Read one after the other, every one waits for its
//! buffer descriptor, its page's line pointer and its tuple in turn. [`visit_items`] pins a
//! batch of pages first and asks for those lines ahead, so that the misses overlap instead of
//! queueing.

use pgrx::pg_sys;

use super::buffer::{Buffer, Pin};
use super::page::{ItemRef, Page, BLCKSZ};

/// Pins held at once: batches of 8 keep them within the backend's fast private refcount slots.
const PIN_BATCH: usize = 8;

/// How much of a tuple to prefetch; the hardware streams the rest once the first lines arrive.
const PREFETCH_BYTES: usize = 8192;
const LINE_POINTERS: usize = core::mem::offset_of!(pg_sys::PageHeaderData, pd_linp);

/// Call `f(i, page, refs[i])` for every ref, each page share-locked while its refs are
/// visited, one page locked at a time. `refs` should be sorted by block (refs on one block are
/// visited under one pin); `bytes` is how much of each tuple to prefetch.
pub fn visit_items(rel: pg_sys::Relation, refs: &[ItemRef], bytes: usize, mut f: impl FnMut(usize, Page<'_>, ItemRef)) {
    let mut groups: Vec<core::ops::Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=refs.len() {
        if i == refs.len() || refs[i].block != refs[start].block {
            groups.push(start..i);
            start = i;
        }
    }
    let mut pins: Vec<Pin> = Vec::with_capacity(PIN_BATCH);
    for batch in groups.chunks(PIN_BATCH) {
        pins.clear();
        for g in batch {
            Buffer::prefetch_recent(rel, refs[g.start].block);
        }
        for g in batch {
            let pin = Buffer::pin_recent(rel, refs[g.start].block);
            for r in &refs[g.clone()] {
                prefetch_line_pointer(pin.page_addr(), r.offset);
            }
            pins.push(pin);
        }
        for (pin, g) in pins.iter().zip(batch) {
            for r in &refs[g.clone()] {
                prefetch_tuple(pin.page_addr(), r.offset, bytes);
            }
        }
        for (pin, g) in pins.iter().zip(batch) {
            let lock = pin.share();
            for i in g.clone() {
                f(i, lock.page(), refs[i]);
            }
        }
    }
}

/// Hint the cache about item `offset`'s line pointer on a pinned page.
#[inline(always)]
fn prefetch_line_pointer(page: *const u8, offset: u16) {
    prefetch(page.wrapping_add(LINE_POINTERS + (offset as usize).saturating_sub(1) * 4));
}

/// Hint the cache about the tuple item `offset` points at. The line pointer is read without
/// the content lock, which is fine for a hint: the address is only prefetched, never
/// dereferenced, and line pointers of existing items never change anyway.
#[inline(always)]
fn prefetch_tuple(page: *const u8, offset: u16, bytes: usize) {
    let lp = page.wrapping_add(LINE_POINTERS + (offset as usize).saturating_sub(1) * 4);
    // SAFETY: `lp` lies inside a pinned page (offset <= MAX_ITEMS); a volatile read of a u32
    // there cannot fault, and a torn value only makes the hint useless.
    let raw = unsafe { core::ptr::read_volatile(lp as *const u32) };
    let off = (raw & 0x7FFF) as usize;
    if off == 0 || off + bytes > BLCKSZ {
        return;
    }
    let start = page.wrapping_add(off);
    let mut line = 0;
    while line < bytes.min(PREFETCH_BYTES) {
        prefetch(start.wrapping_add(line));
        line += 64;
    }
}

#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
