//! Attribute pages: the filter values of every element, condensed to fixed-size records, so
//! that a filtered scan can find the matching elements without reading their vector pages.
//!
//! Records are packed from the start of the page contents to `pd_lower` (the rest is the page's
//! hole, which GenericXLog does not log); the special space names the next attribute page, so
//! the pages form one chain from `Meta::attr_first`. A record is addressed like a tuple, by an
//! [`ItemRef`] whose offset is the record's index plus one.

use pgrx::pg_sys;
use pgrx::prelude::*;
use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::buffer::{Buffer, Lock, Logging, Wal};
use super::meta::Meta;
use super::page::{maxalign, DiskRef, ItemRef, Opaque, Page, PageMut, BLCKSZ, OPAQUE_SIZE};
use crate::types::raise;

pub const PAGE_ATTR: u16 = 3;
/// The element's filter values are stale: it was deleted (VACUUM) and not reused yet.
pub const ATTR_DELETED: u8 = 1;
/// The fixed part of an attribute record ("attribute pages" in the `storage` layout table);
/// one little-endian u64 per filter column follows.
#[repr(C)]
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
struct RecordHeader {
    flags: u8,
    nulls: u8,
    vector: DiskRef,
}

/// Bytes before the per-column values: flags, NULL bitmap, vector ref.
pub const ATTR_HEADER: usize = core::mem::size_of::<RecordHeader>();
const _: () = assert!(ATTR_HEADER == 8);

const CONTENTS: usize = maxalign(core::mem::offset_of!(pg_sys::PageHeaderData, pd_linp));

/// Records of `size` bytes that fit one attribute page.
pub const fn records_per_page(size: usize) -> usize {
    (BLCKSZ - CONTENTS - maxalign(OPAQUE_SIZE)) / size
}

fn corrupt(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw attribute page is corrupted: {what}"))
}

/// Encode a record: flags, NULL bitmap, the element's vector ref, one u64 per filter column.
pub fn encode_record(flags: u8, nulls: u8, vector: ItemRef, slots: &[u64], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(RecordHeader { flags, nulls, vector: vector.into() }.as_bytes());
    for &s in slots {
        out.extend_from_slice(U64::new(s).as_bytes());
    }
}

/// One record, read in place.
#[derive(Clone, Copy)]
pub struct Record<'a>(pub &'a [u8]);

impl<'a> Record<'a> {
    fn header(&self) -> &'a RecordHeader {
        match RecordHeader::ref_from_prefix(self.0) {
            Ok((h, _)) => h,
            Err(_) => corrupt("record shorter than its header"),
        }
    }
    pub fn flags(&self) -> u8 {
        self.header().flags
    }
    pub fn nulls(&self) -> u8 {
        self.header().nulls
    }
    pub fn vector(&self) -> ItemRef {
        self.header().vector.get()
    }
    /// The condensed column values, 8 bytes each.
    pub fn slots(&self) -> &'a [u8] {
        &self.0[ATTR_HEADER..]
    }
    /// The condensed value of column `col`.
    #[inline]
    pub fn slot(&self, col: usize) -> u64 {
        let at = ATTR_HEADER + col * 8;
        match self.0.get(at..).map(U64::read_from_prefix) {
            Some(Ok((v, _))) => v.get(),
            _ => corrupt("column beyond the record"),
        }
    }
}

impl<'a> Page<'a> {
    /// Number of records on an attribute page of `size`-byte records.
    pub fn attr_count(&self, size: usize) -> usize {
        self.expect_kind(PAGE_ATTR);
        // SAFETY: a locked page starts with its header.
        let lower = unsafe { (*(self.as_ptr() as *const pg_sys::PageHeaderData)).pd_lower } as usize;
        if lower < CONTENTS || !(lower - CONTENTS).is_multiple_of(size) || lower - CONTENTS > records_per_page(size) * size {
            corrupt("bad record area");
        }
        (lower - CONTENTS) / size
    }

    /// Record `index` of an attribute page.
    pub fn attr_record(&self, index: usize, size: usize) -> Record<'a> {
        if index >= self.attr_count(size) {
            corrupt("record index out of range");
        }
        // SAFETY: the record lies below pd_lower, inside the locked page (checked above).
        Record(unsafe { core::slice::from_raw_parts(self.as_ptr().add(CONTENTS + index * size), size) })
    }

    /// Every record of an attribute page, in order.
    pub fn attr_records(&self, size: usize) -> impl Iterator<Item = Record<'a>> + 'a {
        let n = self.attr_count(size);
        // SAFETY: records 0..n lie below pd_lower, inside the locked page (attr_count checked).
        let all = unsafe { core::slice::from_raw_parts(self.as_ptr().add(CONTENTS), n * size) };
        all.chunks_exact(size).map(Record)
    }

    /// The next page of the chain, or 0 at its end.
    pub fn attr_next(&self) -> u32 {
        self.expect_kind(PAGE_ATTR);
        self.opaque().next.get()
    }
}

impl PageMut<'_> {
    /// Link this attribute page to the next one.
    pub fn set_attr_next(&mut self, next: u32) {
        self.set_opaque(Opaque::new(PAGE_ATTR, next));
    }

    /// Append a record; its index, or `None` when the page is full.
    pub fn attr_push(&mut self, record: &[u8]) -> Option<usize> {
        let size = record.len();
        let n = self.as_page().attr_count(size);
        if n >= records_per_page(size) {
            return None;
        }
        let p = self.as_page().as_ptr();
        // SAFETY: record n fits below the special space (records_per_page); the page is ours.
        unsafe {
            core::ptr::copy_nonoverlapping(record.as_ptr(), p.add(CONTENTS + n * size), size);
            (*(p as *mut pg_sys::PageHeaderData)).pd_lower = (CONTENTS + (n + 1) * size) as u16;
        }
        Some(n)
    }

    /// Overwrite record `index` (same size).
    pub fn attr_write(&mut self, index: usize, record: &[u8]) {
        let size = record.len();
        if index >= self.as_page().attr_count(size) {
            corrupt("record index out of range");
        }
        // SAFETY: an existing record's bytes, inside the exclusively held page.
        unsafe { core::ptr::copy_nonoverlapping(record.as_ptr(), self.as_page().as_ptr().add(CONTENTS + index * size), size) };
    }

    /// Set the flags of record `index`.
    pub fn attr_set_flags(&mut self, index: usize, size: usize, flags: u8) {
        if index >= self.as_page().attr_count(size) {
            corrupt("record index out of range");
        }
        // SAFETY: the first byte of an existing record, inside the exclusively held page.
        unsafe { *self.as_page().as_ptr().add(CONTENTS + index * size) = flags };
    }
}

/// The address of record `index` on `block`.
pub fn record_ref(block: u32, index: usize) -> ItemRef {
    ItemRef::new(block, index as u16 + 1)
}

/// Append a record (an insert's), extending the chain when its last page is full.
pub fn append(rel: pg_sys::Relation, logging: Logging, record: &[u8]) -> ItemRef {
    let size = record.len();
    let mut block = Meta::read(rel).attr_last;
    loop {
        if block == 0 {
            raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, "hnsw index with filter columns has no attribute pages");
        }
        {
            let buf = Buffer::read(rel, block, Lock::Exclusive);
            let page = buf.page();
            let next = page.attr_next();
            if next != 0 {
                // The meta page's hint is behind (another backend extended the chain).
                block = next;
                continue;
            }
            if page.attr_count(size) < records_per_page(size) {
                let index = Wal::edit(rel, &buf, logging, false, |page| page.attr_push(record).expect("room checked under the lock"));
                return record_ref(block, index);
            }
        }
        block = extend_chain(rel, logging, block);
    }
}

/// Add a page after `last` (found full), unless another backend did; the chain's new end.
fn extend_chain(rel: pg_sys::Relation, logging: Logging, last: u32) -> u32 {
    // The meta page's exclusive lock serializes extensions of the chain. Lock order: meta, then
    // the old last page; nobody waits for the meta page while holding an attribute page.
    let mut result = 0;
    Meta::update(rel, logging, |meta| {
        let old = Buffer::read(rel, last, Lock::Exclusive);
        let next = old.page().attr_next();
        if next != 0 {
            result = next;
            return false;
        }
        let new = Buffer::extend(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
        Wal::edit(rel, &new, logging, true, |page| page.init(PAGE_ATTR));
        // A crash between these records leaves an unlinked empty page: harmless, never read.
        Wal::edit(rel, &old, logging, false, |page| page.set_attr_next(new.block()));
        result = new.block();
        meta.attr_last = result;
        true
    });
    result
}

/// Overwrite the record at `r` (an insert reusing a freed element's place).
pub fn write(rel: pg_sys::Relation, logging: Logging, r: ItemRef, record: &[u8]) {
    let buf = Buffer::read(rel, r.block, Lock::Exclusive);
    Wal::edit(rel, &buf, logging, false, |page| page.attr_write(r.offset as usize - 1, record));
}

/// Mark the records at `refs` deleted (VACUUM), one WAL record per page.
pub fn set_deleted(rel: pg_sys::Relation, size: usize, refs: &mut [ItemRef]) {
    refs.sort_unstable_by_key(|r| (r.block, r.offset));
    for group in refs.chunk_by(|a, b| a.block == b.block) {
        let buf = Buffer::read(rel, group[0].block, Lock::Exclusive);
        Wal::edit(rel, &buf, Logging::Wal, false, |page| {
            for r in group {
                page.attr_set_flags(r.offset as usize - 1, size, ATTR_DELETED);
            }
        });
    }
}

/// Visit every attribute page in chain order, share-locked, with its block number, running
/// `pause` after each page with no buffer locked (to work on what the pages gave so far); both
/// get `state`.
pub(crate) fn for_each_page_pausing<S>(
    rel: pg_sys::Relation,
    first: u32,
    state: &mut S,
    mut visit: impl FnMut(&mut S, u32, Page<'_>),
    mut pause: impl FnMut(&mut S),
) {
    let blocks = || {
        // SAFETY: `rel` is open and locked by the caller.
        unsafe { pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM) }
    };
    let mut limit = blocks();
    let mut block = first;
    let mut seen = 0u32;
    while block != 0 {
        check_for_interrupts!();
        block = {
            let buf = Buffer::read(rel, block, Lock::Share);
            let page = buf.page();
            visit(state, block, page);
            page.attr_next()
        };
        pause(state);
        seen += 1;
        // More pages than the relation has: a cycle (unless the chain grew meanwhile).
        if seen > limit {
            limit = blocks();
            if seen > limit {
                corrupt("attribute page chain has a cycle");
            }
        }
    }
}
