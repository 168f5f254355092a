//! Neighbour selection (Malkov & Yashunin, algorithm 4, without candidate extension).
//!
//! A candidate is kept only if it is closer to the base node than to every neighbour kept so
//! far. Plain "closest M" keeps clusters of near-duplicates and leaves the graph badly connected
//! between clusters; the heuristic spreads the links over directions, which is where HNSW's
//! recall comes from.
//!
//! Places the heuristic leaves empty are then filled with the closest pruned candidates (the
//! paper's "keepPrunedConnections", as pgvector does). Measured on MiniLM-384 100k (M=16,
//! efC=64), that reaches a given recall with fewer distance computations per query: 0.959 at
//! 902 distances against 0.950 without, 0.990 at 2100 against 0.988.

use super::search::Candidate;

/// Select at most `m` of `candidates` (sorted nearest-first by distance to the base node):
/// first those the heuristic keeps, then pruned ones nearest-first while places remain.
/// `dist(a, b)` measures two candidates against each other.
pub fn select_neighbors<I: Copy>(
    candidates: &[Candidate<I>],
    m: usize,
    keep_pruned: bool,
    dist: impl FnMut(&I, &I) -> f32,
    out: &mut Vec<Candidate<I>>,
) {
    out.clear();
    let mut pruned = Vec::new();
    split(candidates, m, dist, out, &mut pruned);
    if keep_pruned {
        let room = m - out.len();
        out.extend(pruned.into_iter().take(room));
    }
}

/// The heuristic's verdict on `candidates` (nearest first) given the entries already in `kept`
/// (which stay, and prune like any kept entry): a candidate closer to some kept entry than to
/// the base node is pruned, any other is kept, until `kept` holds `max_kept`; the rest go to
/// `pruned`, nearest first. Every selection — a new element's lists, a full list taking a
/// newcomer ([`super::maintain::rank`]), a list refilled around deleted elements
/// ([`super::maintain::refill`]) — is this one loop.
pub fn split<I: Copy>(
    candidates: &[Candidate<I>],
    max_kept: usize,
    mut dist: impl FnMut(&I, &I) -> f32,
    kept: &mut Vec<Candidate<I>>,
    pruned: &mut Vec<Candidate<I>>,
) {
    for c in candidates {
        if kept.len() < max_kept && !kept.iter().any(|k| dist(&c.item, &k.item) < c.dist) {
            kept.push(*c);
        } else {
            pruned.push(*c);
        }
    }
}

/// A neighbour-list entry that remembers why it is there: its distance to the list's owner,
/// and, for an entry the heuristic pruned (kept only to fill a place), one kept entry that
/// pruned it. With that, adding a link re-runs the heuristic over the changed part of the list
/// only, instead of over the whole list with all its pairwise distances (pgvector caches the
/// same facts): a build spends most of its distance computations on these updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    pub id: u32,
    pub dist: f32,
    /// [`KEPT`], or the id of a kept entry closer to this one than the owner is.
    pub pruner: u32,
}

/// `Link::pruner` of an entry the heuristic keeps.
pub const KEPT: u32 = u32::MAX;

impl Link {
    #[inline]
    pub fn is_kept(&self) -> bool {
        self.pruner == KEPT
    }
}

/// [`select_neighbors`] with `keep_pruned`, recording each entry's status. `out` is sorted
/// nearest-first.
pub fn select_links(candidates: &[Candidate<u32>], cap: usize, mut dist: impl FnMut(u32, u32) -> f32, out: &mut Vec<Link>) {
    out.clear();
    let mut pruned: Vec<Link> = Vec::new();
    let mut kept = 0;
    for c in candidates {
        if kept >= cap {
            break;
        }
        match out.iter().find(|r| dist(c.item, r.id) < c.dist) {
            Some(r) => pruned.push(Link { id: c.item, dist: c.dist, pruner: r.id }),
            None => {
                out.push(Link { id: c.item, dist: c.dist, pruner: KEPT });
                kept += 1;
            }
        }
    }
    let room = cap - kept;
    out.extend(pruned.into_iter().take(room));
    out.sort_by(|a, b| a.dist.total_cmp(&b.dist));
}

/// Add `new` (at distance `d_new` from the owner) to a list built by [`select_links`]: the
/// result is what [`select_neighbors`] with `keep_pruned` gives for the old entries plus `new`.
/// Returns false when the list is unchanged.
pub fn insert_link(list: &mut Vec<Link>, cap: usize, new: u32, d_new: f32, mut dist: impl FnMut(u32, u32) -> f32) -> bool {
    if list.iter().any(|l| l.id == new) {
        return false;
    }
    let j = list.partition_point(|l| l.dist <= d_new);
    let pruner = list[..j].iter().find(|r| r.is_kept() && dist(new, r.id) < d_new).map_or(KEPT, |r| r.id);
    // A pruned newcomer farther than every pruned entry is the one that would be dropped.
    if pruner != KEPT && list.len() >= cap && list[j..].iter().all(Link::is_kept) {
        return false;
    }
    list.insert(j, Link { id: new, dist: d_new, pruner });
    if pruner == KEPT {
        // Entries after `new` are judged again, nearest first, as the heuristic would: a kept
        // one can only be pruned by an entry that became kept; a pruned one needs a full check
        // only if its pruner stopped being kept.
        let mut became_pruned: Vec<u32> = Vec::new();
        let mut became_kept: Vec<u32> = vec![new];
        for i in j + 1..list.len() {
            let c = list[i];
            if c.is_kept() {
                if let Some(&p) = became_kept.iter().find(|&&p| dist(c.id, p) < c.dist) {
                    list[i].pruner = p;
                    became_pruned.push(c.id);
                }
            } else if became_pruned.contains(&c.pruner) {
                match list[..i].iter().find(|r| r.is_kept() && dist(c.id, r.id) < c.dist) {
                    Some(r) => list[i].pruner = r.id,
                    None => {
                        list[i].pruner = KEPT;
                        became_kept.push(c.id);
                    }
                }
            }
        }
    }
    if list.len() > cap {
        let drop = list.iter().rposition(|l| !l.is_kept()).unwrap_or(list.len() - 1);
        list.remove(drop);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_far_direction_over_a_tight_cluster() {
        // Base at 0 on a line; candidates at 1.0, 1.1, 1.2 (one cluster) and -2.0.
        let pos = [1.0f32, 1.1, 1.2, -2.0];
        let mut cands: Vec<Candidate<usize>> = (0..4).map(|i| Candidate::new(pos[i].abs(), i)).collect();
        cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
        let kept = |m| {
            let mut out = Vec::new();
            select_neighbors(&cands, m, true, |a: &usize, b: &usize| (pos[*a] - pos[*b]).abs(), &mut out);
            out.iter().map(|c| c.item).collect::<Vec<usize>>()
        };
        assert_eq!(kept(2), vec![0, 3]);
        // Spare places go to the pruned candidates, nearest first.
        assert_eq!(kept(3), vec![0, 3, 1]);
        assert_eq!(kept(8), vec![0, 3, 1, 2]);
    }

    /// The incremental list must always equal a from-scratch selection over its old entries
    /// plus the new one.
    #[test]
    fn insert_link_matches_full_reselection() {
        let mut state = 12345u64;
        let mut rnd = || {
            state = crate::graph::build::splitmix64(state);
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        for cap in [1usize, 2, 4, 8, 16] {
            for _ in 0..50 {
                let pts: Vec<(f32, f32)> = (0..60).map(|_| (rnd(), rnd())).collect();
                let owner = (0.5f32, 0.5f32);
                let d = |a: (f32, f32), b: (f32, f32)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
                let dist = |a: u32, b: u32| d(pts[a as usize], pts[b as usize]);
                let mut list: Vec<Link> = Vec::new();
                for (i, p) in pts.iter().enumerate() {
                    let (id, dq) = (i as u32, d(*p, owner));
                    let mut cands: Vec<Candidate<u32>> = list.iter().map(|l| Candidate::new(l.dist, l.id)).collect();
                    cands.push(Candidate::new(dq, id));
                    cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
                    let mut expect = Vec::new();
                    select_neighbors(&cands, cap, true, |a, b| dist(*a, *b), &mut expect);
                    let mut expect: Vec<u32> = expect.iter().map(|c| c.item).collect();
                    insert_link(&mut list, cap, id, dq, dist);
                    let mut got: Vec<u32> = list.iter().map(|l| l.id).collect();
                    expect.sort();
                    got.sort();
                    assert_eq!(got, expect, "cap {cap} after inserting {i}");
                    assert!(list.windows(2).all(|w| w[0].dist <= w[1].dist));
                    for l in &list {
                        if !l.is_kept() {
                            assert!(list.iter().any(|r| r.id == l.pruner && r.is_kept()), "dangling pruner");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn select_links_matches_select_neighbors() {
        let pos: Vec<f32> = vec![1.0, 1.1, 1.2, -2.0, 3.0, -0.5];
        let cands: Vec<Candidate<u32>> = {
            let mut c: Vec<_> = (0..pos.len() as u32).map(|i| Candidate::new(pos[i as usize].abs(), i)).collect();
            c.sort_by(|a, b| a.dist.total_cmp(&b.dist));
            c
        };
        for cap in 1..7 {
            let mut a = Vec::new();
            select_neighbors(&cands, cap, true, |x, y| (pos[*x as usize] - pos[*y as usize]).abs(), &mut a);
            let mut b = Vec::new();
            select_links(&cands, cap, |x, y| (pos[x as usize] - pos[y as usize]).abs(), &mut b);
            let mut a: Vec<u32> = a.iter().map(|c| c.item).collect();
            let mut b: Vec<u32> = b.iter().map(|l| l.id).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "cap {cap}");
        }
    }

    #[test]
    fn stops_at_m() {
        let cands: Vec<Candidate<usize>> = (0..10).map(|i| Candidate::new(1.0 + i as f32, i)).collect();
        let mut out = Vec::new();
        // Every pair is far apart, so all would be kept without the cap.
        select_neighbors(&cands, 3, true, |_, _| 1e9, &mut out);
        assert_eq!(out.len(), 3);
    }
}
