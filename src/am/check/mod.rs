//! `hnsw_index_check(regclass)`: walks every page of an hnsw index and verifies the on-disk
//! graph — meta page, tuple formats, that the two tuples of each element point at each other,
//! that every link points at a live vector tuple of an element on that layer, and the entry
//! point — and returns a readable report. Read-only; takes share locks one page at a time.
//!
//! This file holds the SQL function and its report; `verify` the pass over the pages.

mod verify;

use pgrx::prelude::*;
use pgrx::{pg_sys, PgRelation};

use crate::storage::buffer::{Buffer, Lock, Strategy};
use crate::storage::element::nblocks;
use crate::storage::page::PAGE_DATA;
use crate::storage::tuple::{KIND_NODE, KIND_VECTOR};
use crate::types::raise;
pub(crate) use verify::check;

/// What a check found.
#[derive(Default, Debug)]
pub struct Report {
    pub pages: u32,
    pub elements: u64,
    pub deleted: u64,
    pub free: u64,
    /// Live elements whose rows are all gone, left for the next VACUUM to mark deleted (what a
    /// cancelled or crashed VACUUM leaves: searches never return them).
    pub rowless: u64,
    /// Live elements nothing links to whose rows are not visible now (inserts that did not
    /// commit, or are still running).
    pub unlinked_invisible: u64,
    pub heap_tids: u64,
    pub links: u64,
    pub max_level: usize,
    /// A quantized index's parameters: trained on this many rows and inserts so far (0: on
    /// enough), retrained by an insert, and codes of the first parameters left.
    pub provisional: u32,
    pub retrained: bool,
    pub first_generation_codes: u64,
    /// Layer-0 links of live elements whose node tuples can keep their neighbours' codes, and
    /// how many of them do (see `neighbor_codes`).
    pub code_slots: u64,
    pub codes_kept: u64,
    pub problems: Vec<String>,
}

impl Report {
    fn problem(&mut self, p: String) {
        // Enough to diagnose; a badly broken index should not produce a gigabyte of text.
        if self.problems.len() < 100 {
            self.problems.push(p);
        }
    }

    pub fn text(&self, name: &str) -> String {
        let mut s = format!(
            "hnsw index {name}: {} pages, {} elements ({} deleted, {} of them free), {} heap TIDs, {} links, top live level {}\n",
            self.pages, self.elements, self.deleted, self.free, self.heap_tids, self.links, self.max_level
        );
        if self.rowless > 0 {
            s.push_str(&format!("{} element(s) without rows, left for the next VACUUM\n", self.rowless));
        }
        if self.unlinked_invisible > 0 {
            s.push_str(&format!(
                "{} unreachable element(s) without a visible row (inserts that did not commit), left for the next VACUUM\n",
                self.unlinked_invisible
            ));
        }
        if self.provisional > 0 {
            s.push_str(&format!(
                "quantization parameters trained on few rows ({} rows and inserts so far); an insert retrains them at {}\n",
                self.provisional,
                crate::storage::meta::RETRAIN_AT
            ));
        }
        if self.retrained {
            s.push_str(&format!(
                "quantization parameters retrained by an insert; {} code(s) of the first parameters left (REINDEX re-encodes them)\n",
                self.first_generation_codes
            ));
        }
        if self.code_slots > 0 {
            s.push_str(&format!(
                "neighbour codes kept for {} of {} layer-0 links that have room for them (REINDEX restores the rest)\n",
                self.codes_kept, self.code_slots
            ));
        }
        if self.problems.is_empty() {
            s.push_str("OK");
        } else {
            s.push_str(&format!("{} PROBLEM(S):\n", self.problems.len()));
            for p in &self.problems {
                s.push_str("  ");
                s.push_str(p);
                s.push('\n');
            }
        }
        s
    }
}

/// A `regclass` argument, as its OID.
pub struct RegClass(pub pg_sys::Oid);

impl_sql_translatable!(RegClass, arg_only = "regclass");

impl FromDatum for RegClass {
    // SAFETY: unsafe by the trait's signature only; a regclass datum is an OID by value, read
    // without dereferencing anything.
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then(|| RegClass(pg_sys::Oid::from(datum.value() as u32)))
    }
}

// SAFETY: a regclass datum is an OID passed by value; FromDatum reads exactly that.
unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for RegClass {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        // SAFETY: pgrx calls this only for a non-null regclass argument.
        unsafe { arg.unbox_arg_using_from_datum() }.expect("regclass argument is null")
    }
}

/// Verify an hnsw index and describe it; the last line is `OK` or the problems found.
#[pg_extern(volatile, strict, parallel_safe)]
fn hnsw_index_check(index: RegClass) -> String {
    let rel = open_hnsw(index);
    check(rel.as_ptr()).text(rel.name())
}

/// Bytes of the index pages a graph walk reads: those holding elements' vector (or code) and
/// node tuples. Left out: the meta page, the full-precision vectors of a quantized index (read
/// only to re-rank a scan's results), attribute and parameter pages. Reads every page.
#[pg_extern(volatile, strict, parallel_safe)]
fn hnsw_walk_size(index: RegClass) -> i64 {
    let rel = open_hnsw(index);
    let index = rel.as_ptr();
    let strategy = Strategy::bulk_read();
    let mut pages = 0i64;
    for block in 1..nblocks(index) {
        let buf = Buffer::read_with(index, block, Lock::Share, strategy.as_ptr());
        let page = buf.page();
        if page.is_new() || page.opaque().kind != PAGE_DATA {
            continue;
        }
        let walked =
            (1..=page.max_offset()).any(|off| page.item(off).is_some_and(|d| matches!(d.first(), Some(&KIND_VECTOR | &KIND_NODE))));
        pages += walked as i64;
        drop(buf);
        check_for_interrupts!();
    }
    pages * pg_sys::BLCKSZ as i64
}

/// The index of a checking function's argument, after the privilege check, open and share-locked
/// until the result drops; `ERROR` if it is no hnsw index.
fn open_hnsw(index: RegClass) -> PgRelation {
    check_privileges(index.0);
    // SAFETY: with_lock opens the relation by OID (ERROR if there is none) and keeps it open
    // and locked until `rel` drops.
    let rel = unsafe { PgRelation::with_lock(index.0, pg_sys::AccessShareLock as pg_sys::LOCKMODE) };
    // SAFETY: the relation is open and locked for the duration of this call; the AM lookup
    // raises an ERROR if hnsw is missing, which cannot happen while this extension exists.
    let (relam, hnsw_am) = unsafe { ((*(*rel.as_ptr()).rd_rel).relam, pg_sys::get_index_am_oid(c"hnsw".as_ptr(), false)) };
    if !rel.is_index() || relam != hnsw_am {
        raise(PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE, format!("\"{}\" is not an hnsw index", rel.name()));
    }
    rel
}

/// The report shows how many rows a table holds and which pages the index has: the caller
/// must own the table (or be allowed to read every statistic). EXECUTE is revoked from PUBLIC
/// too, as amcheck does; this also covers a role it was granted to.
fn check_privileges(relid: pg_sys::Oid) {
    // SAFETY: catalog lookups on the backend's thread; IndexGetRelation returns InvalidOid
    // for a relation that is no index (missing_ok), pg_class_ownercheck raises an ERROR for an
    // OID that names no relation.
    let allowed = unsafe {
        let user = pg_sys::GetUserId();
        let heap = pg_sys::IndexGetRelation(relid, true);
        let owned = if heap != pg_sys::InvalidOid { heap } else { relid };
        pg_sys::pg_class_ownercheck(owned, user) || pg_sys::has_privs_of_role(user, pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    };
    if !allowed {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied: hnsw_index_check needs ownership of the index's table or the privileges of pg_read_all_stats",
        );
    }
}
