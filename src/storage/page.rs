//! Slotted-page access: item addresses, the special space, and bounded item reads.
//!
//! Items are read by pointer arithmetic on the page (no FFI per item), always bounds-checked
//! against `pd_lower`, `pd_upper` and the page size: a corrupt page must give an `ERROR`, never
//! an out-of-bounds read.

use core::marker::PhantomData;

use pgrx::pg_sys;
use pgrx::prelude::*;
use zerocopy::little_endian::{U16, U32};
use zerocopy::{native_endian, FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::types::raise;

pub const BLCKSZ: usize = pg_sys::BLCKSZ as usize;
/// At most this many items per page, so a page's items map to one u64 of the visited set.
pub const MAX_ITEMS: usize = 64;
/// Kind of page, in the special space.
pub const PAGE_META: u16 = 1;
pub const PAGE_DATA: u16 = 2;
/// Marks our special space, to catch pages that are not ours.
pub const PAGE_MAGIC: u16 = 0x4857;

const PAGE_HEADER: usize = core::mem::offset_of!(pg_sys::PageHeaderData, pd_linp);
const ITEM_ID: usize = core::mem::size_of::<pg_sys::ItemIdData>();
/// Bytes of one line pointer.
pub const ITEM_ID_SIZE: usize = ITEM_ID;

/// Special space of every page (the "special space" of the `storage` layout table). Native
/// byte order, like the page header around it.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct Opaque {
    pub kind: native_endian::U16,
    pub magic: native_endian::U16,
    /// The next page of an attribute page chain; 0 elsewhere.
    pub next: native_endian::U32,
}

pub const OPAQUE_SIZE: usize = core::mem::size_of::<Opaque>();
const _: () = assert!(OPAQUE_SIZE == 8);

impl Opaque {
    pub fn new(kind: u16, next: u32) -> Opaque {
        Opaque { kind: kind.into(), magic: PAGE_MAGIC.into(), next: next.into() }
    }
}

/// Bytes a fresh data page offers to items and their line pointers.
pub const fn page_capacity() -> usize {
    BLCKSZ - maxalign(PAGE_HEADER) - maxalign(OPAQUE_SIZE)
}

pub const fn maxalign(n: usize) -> usize {
    (n + 7) & !7
}

/// A ref as stored on disk (the "ref" row of the `storage` layout table): block u32 LE,
/// offset u16 LE, unaligned.
#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
pub struct DiskRef {
    block: U32,
    offset: U16,
}

const _: () = assert!(core::mem::size_of::<DiskRef>() == ItemRef::SIZE);

impl DiskRef {
    #[inline]
    pub fn get(&self) -> ItemRef {
        ItemRef { block: self.block.get(), offset: self.offset.get() }
    }

    #[inline]
    pub fn set(&mut self, r: ItemRef) {
        *self = DiskRef::from(r);
    }
}

impl From<ItemRef> for DiskRef {
    #[inline]
    fn from(r: ItemRef) -> DiskRef {
        DiskRef { block: U32::new(r.block), offset: U16::new(r.offset) }
    }
}

/// The address of a tuple in the index: block and 1-based line pointer offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ItemRef {
    pub block: u32,
    pub offset: u16,
}

impl ItemRef {
    pub const SIZE: usize = 6;
    pub const INVALID: ItemRef = ItemRef { block: u32::MAX, offset: 0 };

    pub fn new(block: u32, offset: u16) -> ItemRef {
        ItemRef { block, offset }
    }

    pub fn is_valid(self) -> bool {
        self.offset != 0 && self.block != u32::MAX
    }

    /// Key in the visited set: one 64-bit word per page.
    #[inline]
    pub fn visited_key(self) -> u64 {
        self.block as u64 * MAX_ITEMS as u64 + (self.offset as u64).wrapping_sub(1) % MAX_ITEMS as u64
    }
}

/// A page, readable for the lifetime of the lock that protects it.
#[derive(Clone, Copy)]
pub struct Page<'a> {
    ptr: *mut u8,
    _lock: PhantomData<&'a ()>,
}

/// A page that may be written: the buffer is exclusively locked (or it is GenericXLog's copy).
pub struct PageMut<'a> {
    ptr: *mut u8,
    _lock: PhantomData<&'a mut ()>,
}

fn corrupt(what: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED, format!("hnsw index page is corrupted: {what}"))
}

impl<'a> Page<'a> {
    /// # Safety
    /// `ptr` must point at a BLCKSZ page that stays pinned and at least share-locked for `'a`.
    pub unsafe fn from_ptr(ptr: *mut u8) -> Page<'a> {
        Page { ptr, _lock: PhantomData }
    }

    fn header(&self) -> &pg_sys::PageHeaderData {
        // SAFETY: from_ptr guarantees a whole page, which starts with its header.
        unsafe { &*(self.ptr as *const pg_sys::PageHeaderData) }
    }

    pub fn is_new(&self) -> bool {
        self.header().pd_upper == 0
    }

    pub fn opaque(&self) -> Opaque {
        let special = self.header().pd_special as usize;
        if special + OPAQUE_SIZE > BLCKSZ {
            corrupt("special space out of range");
        }
        // SAFETY: [special, special + OPAQUE_SIZE) is inside the page (checked above), which
        // stays locked for the borrow.
        let bytes = unsafe { core::slice::from_raw_parts(self.ptr.add(special), OPAQUE_SIZE) };
        Opaque::read_from_bytes(bytes).unwrap_or_else(|_| corrupt("special space out of range"))
    }

    /// Check that this is one of our pages of the given kind.
    pub fn expect_kind(&self, kind: u16) {
        let o = self.opaque();
        if o.magic.get() != PAGE_MAGIC || o.kind.get() != kind {
            corrupt("unexpected page kind");
        }
    }

    pub fn max_offset(&self) -> u16 {
        let lower = self.header().pd_lower as usize;
        if lower <= PAGE_HEADER {
            0
        } else {
            ((lower - PAGE_HEADER) / ITEM_ID) as u16
        }
    }

    /// The bytes of item `offset`, or `None` if there is no such live item.
    #[inline]
    pub fn item(&self, offset: u16) -> Option<&'a [u8]> {
        if offset == 0 || offset > self.max_offset() {
            return None;
        }
        // SAFETY: offset is within the line pointer array (checked against pd_lower).
        let id = unsafe { *(self.ptr.add(PAGE_HEADER + (offset as usize - 1) * ITEM_ID) as *const pg_sys::ItemIdData) };
        if id.lp_flags() != pg_sys::LP_NORMAL {
            return None;
        }
        let (off, len) = (id.lp_off() as usize, id.lp_len() as usize);
        if off < PAGE_HEADER || off + len > BLCKSZ {
            corrupt("item out of page bounds");
        }
        // SAFETY: [off, off+len) lies inside the page, which stays locked for 'a.
        Some(unsafe { core::slice::from_raw_parts(self.ptr.add(off), len) })
    }

    /// Free bytes for new items, line pointers included (PageGetExactFreeSpace).
    pub fn free_space(&self) -> usize {
        let h = self.header();
        (h.pd_upper as usize).saturating_sub(h.pd_lower as usize)
    }

    /// Whether items of these sizes fit (each needs its MAXALIGNed size and a line pointer).
    pub fn fits(&self, sizes: &[usize]) -> bool {
        let need: usize = sizes.iter().map(|&s| maxalign(s) + ITEM_ID).sum();
        self.max_offset() as usize + sizes.len() <= MAX_ITEMS && self.free_space() >= need
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl<'a> PageMut<'a> {
    /// # Safety
    /// `ptr` must point at a BLCKSZ page that is exclusively ours (exclusive buffer lock, or a
    /// GenericXLog copy) for `'a`.
    pub unsafe fn from_ptr(ptr: *mut u8) -> PageMut<'a> {
        PageMut { ptr, _lock: PhantomData }
    }

    pub fn as_page(&self) -> Page<'_> {
        // SAFETY: exclusive access implies read access for the borrow.
        unsafe { Page::from_ptr(self.ptr) }
    }

    /// PageInit with our special space.
    pub fn init(&mut self, kind: u16) {
        // SAFETY: the page is ours to write; PageInit zeroes and formats BLCKSZ bytes.
        unsafe {
            pg_sys::PageInit(self.ptr.cast(), BLCKSZ, OPAQUE_SIZE);
        }
        self.set_opaque(Opaque::new(kind, 0));
    }

    /// Overwrite the special space of an initialized page.
    pub fn set_opaque(&mut self, o: Opaque) {
        // SAFETY: the page is exclusively ours and starts with its header.
        let special = unsafe { (*(self.ptr as *const pg_sys::PageHeaderData)).pd_special } as usize;
        if special + OPAQUE_SIZE > BLCKSZ {
            corrupt("special space out of range");
        }
        // SAFETY: [special, special + OPAQUE_SIZE) is inside the exclusively held page.
        let bytes = unsafe { core::slice::from_raw_parts_mut(self.ptr.add(special), OPAQUE_SIZE) };
        bytes.copy_from_slice(o.as_bytes());
    }

    /// Append an item; `None` if it does not fit (space or the 64-item cap).
    pub fn add_item(&mut self, data: &[u8]) -> Option<u16> {
        if !self.as_page().fits(&[data.len()]) {
            return None;
        }
        // SAFETY: the page is exclusively ours; PageAddItemExtended copies `data` in and returns
        // InvalidOffsetNumber (0) if it cannot.
        let off = unsafe { pg_sys::PageAddItemExtended(self.ptr.cast(), data.as_ptr() as *mut _, data.len(), 0, 0) };
        (off != 0).then_some(off)
    }

    /// Mutable bytes of item `offset`.
    pub fn item_mut(&mut self, offset: u16) -> Option<&mut [u8]> {
        let (ptr, len) = {
            let item = self.as_page().item(offset)?;
            (item.as_ptr() as *mut u8, item.len())
        };
        // SAFETY: same bounds as Page::item, and we hold the page exclusively.
        Some(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
    }

    /// The meta page's contents area (PageGetContents), `len` bytes; sets pd_lower past it so
    /// the rest counts as the page's hole.
    pub fn contents_mut(&mut self, len: usize) -> &mut [u8] {
        let start = maxalign(PAGE_HEADER);
        // SAFETY: the meta struct is far smaller than a page; we own the page exclusively.
        unsafe {
            (*(self.ptr as *mut pg_sys::PageHeaderData)).pd_lower = (start + len) as u16;
            core::slice::from_raw_parts_mut(self.ptr.add(start), len)
        }
    }
}

impl<'a> Page<'a> {
    /// Bytes of the meta page's contents area (up to pd_lower).
    pub fn contents_len(&self) -> usize {
        (self.header().pd_lower as usize).saturating_sub(maxalign(PAGE_HEADER))
    }

    /// The meta page's contents area.
    pub fn contents(&self, len: usize) -> &'a [u8] {
        let start = maxalign(PAGE_HEADER);
        if (self.header().pd_lower as usize) < start + len {
            corrupt("meta page too short");
        }
        // SAFETY: pd_lower covers [start, start+len), inside the locked page.
        unsafe { core::slice::from_raw_parts(self.ptr.add(start), len) }
    }
}
