//! Graph maintenance against brute force, on small in-memory graphs of 2-d points.

use super::*;
use crate::graph::build::splitmix64;
use crate::graph::heuristic::select_neighbors;

struct Rng(u64);

impl Rng {
    fn f(&mut self) -> f32 {
        self.0 = splitmix64(self.0);
        (self.0 >> 11) as f32 / (1u64 << 53) as f32
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 = splitmix64(self.0);
        (self.0 % n as u64) as usize
    }
}

fn d(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Candidates 1..n around owner 0, nearest first.
fn candidates(pts: &[(f32, f32)], ids: impl Iterator<Item = u32>) -> Vec<Candidate<u32>> {
    let mut c: Vec<Candidate<u32>> = ids.map(|i| Candidate::new(d(pts[0], pts[i as usize]), i)).collect();
    c.sort_by(|a, b| a.dist.total_cmp(&b.dist));
    c
}

#[test]
fn rank_starts_with_the_selection_and_ends_with_the_rest() {
    let mut rng = Rng(7);
    for cap in [1usize, 2, 4, 8] {
        for _ in 0..100 {
            let pts: Vec<(f32, f32)> = (0..cap + 2).map(|_| (rng.f(), rng.f())).collect();
            let cands = candidates(&pts, 1..pts.len() as u32);
            let dist = |a: &u32, b: &u32| d(pts[*a as usize], pts[*b as usize]);
            let order = rank(&cands, cap, dist);
            let mut sel = Vec::new();
            select_neighbors(&cands, cap, true, dist, &mut sel);
            let sel: Vec<u32> = sel.iter().map(|c| c.item).collect();
            assert_eq!(order[..cap], sel[..], "cap {cap}");
            let mut all = order.clone();
            all.sort();
            assert_eq!(all, (1..pts.len() as u32).collect::<Vec<_>>());
        }
    }
}

#[test]
fn reselect_keeps_the_list_when_the_newcomer_is_pruned_last() {
    // Owner at 0 on a line, entries at 1 and 2, newcomer at 3: pruned by 1, and farthest.
    let pos = [0.0f32, 1.0, 2.0, 3.0];
    let cands: Vec<Candidate<u32>> = (1..4).map(|i| Candidate::new(pos[i], i as u32)).collect();
    let dist = |a: &u32, b: &u32| (pos[*a as usize] - pos[*b as usize]).abs();
    let r = reselect(&cands, 3, 2, false, dist, |_, _| Some(()), |_| Some(()));
    assert_eq!(r, Reselect::Keep);
    // Forced, the newcomer goes in and the farthest other entry with a witness goes.
    let r = reselect(&cands, 3, 2, true, dist, |x, _| (x == 2).then_some(9u32), |_| None);
    assert_eq!(r, Reselect::Replace { list: vec![1, 3], dropped: 2, witness: 9 });
    // Forced with no witness anywhere: the newcomer adopts the farthest entry.
    let r = reselect(&cands, 3, 2, true, dist, |_, _| None, |x| (x == 2).then_some(3u32));
    assert_eq!(r, Reselect::Replace { list: vec![1, 3], dropped: 2, witness: 3 });
    // Not forced, no witness: nothing changes.
    let cands: Vec<Candidate<u32>> = [(0.5f32, 3u32), (1.0, 1), (2.0, 2)].iter().map(|&(dd, i)| Candidate::new(dd, i)).collect();
    let pos = [0.0f32, 1.0, 2.0, -0.5];
    let dist = |a: &u32, b: &u32| (pos[*a as usize] - pos[*b as usize]).abs();
    assert_eq!(reselect(&cands, 3, 2, false, dist, |_, _| None::<()>, |_| None), Reselect::Keep);
}

/// Random full lists and random "who links to whom": whatever reselect does, the result is the
/// old entries plus the newcomer minus one, the dropped entry has a witness in the new list
/// that links to it, and the newcomer stays unless nothing changes.
#[test]
fn reselect_never_drops_an_entry_without_a_witness() {
    let mut rng = Rng(99);
    let mut replaced = 0;
    for cap in [2usize, 4, 8] {
        for round in 0..300 {
            let n = cap + 2; // owner 0, cap entries, newcomer n - 1
            let pts: Vec<(f32, f32)> = (0..n).map(|_| (rng.f(), rng.f())).collect();
            let links: Vec<Vec<bool>> = (0..n).map(|_| (0..n).map(|_| rng.below(3) == 0).collect()).collect();
            let newcomer = (n - 1) as u32;
            let cands = candidates(&pts, 1..n as u32);
            let force = round % 2 == 1;
            let dist = |a: &u32, b: &u32| d(pts[*a as usize], pts[*b as usize]);
            let witness = |x: u32, rest: &[u32]| rest.iter().copied().find(|&w| links[w as usize][x as usize]);
            let adopt = |_x: u32| if rng.below(2) == 0 { Some(newcomer) } else { None };
            match reselect(&cands, newcomer, cap, force, dist, witness, adopt) {
                Reselect::Keep => {}
                Reselect::Replace { list, dropped, witness } => {
                    replaced += 1;
                    assert_eq!(list.len(), cap);
                    assert!(list.contains(&newcomer) && !list.contains(&dropped) && dropped != newcomer);
                    assert!(list.contains(&witness));
                    assert!(witness == newcomer || links[witness as usize][dropped as usize]);
                    let mut all = list.clone();
                    all.push(dropped);
                    all.sort();
                    assert_eq!(all, (1..n as u32).collect::<Vec<_>>());
                }
            }
        }
    }
    assert!(replaced > 300, "only {replaced} lists changed: the test says little");
}

#[test]
fn refill_keeps_every_live_entry_and_prefers_the_heuristic() {
    let mut rng = Rng(3);
    for cap in [2usize, 4, 8, 16] {
        for _ in 0..100 {
            let n = 1 + cap + 10;
            let pts: Vec<(f32, f32)> = (0..n).map(|_| (rng.f(), rng.f())).collect();
            let n_live = rng.below(cap + 1);
            let live = candidates(&pts, 1..1 + n_live as u32);
            let fresh = candidates(&pts, 1 + n_live as u32..n as u32);
            let dist = |a: &u32, b: &u32| d(pts[*a as usize], pts[*b as usize]);
            let out = refill(&live, &fresh, cap, dist);
            assert_eq!(out.len(), cap.min(n - 1));
            assert!(out.iter().zip(&live).all(|(a, b)| a.item == b.item && a.dist == b.dist));
            // Brute force: walk the fresh ones in order; one is kept iff no entry chosen
            // before it (live or kept) is closer to it than the owner, while room remains.
            let mut kept: Vec<u32> = live.iter().map(|c| c.item).collect();
            let mut pruned = Vec::new();
            for c in &fresh {
                if kept.len() < cap && kept.iter().all(|&k| dist(&c.item, &k) >= c.dist) {
                    kept.push(c.item);
                } else {
                    pruned.push(c.item);
                }
            }
            kept.extend(pruned.into_iter().take(cap.saturating_sub(kept.len())));
            assert_eq!(out.iter().map(|c| c.item).collect::<Vec<_>>(), kept);
        }
    }
}

/// A graph of 2-d points with plain id lists, some elements deleted, and writes that can be
/// made to fail (a concurrent change).
struct TestGraph {
    pts: Vec<(f32, f32)>,
    lists: Vec<Vec<u32>>,
    versions: Vec<u64>,
    live: Vec<bool>,
    /// Deleted elements route searches (VACUUM's cleanup pass) or not (its first pass).
    deleted_route: bool,
    entry: Option<u32>,
    /// Writes that fail before one succeeds, per call to `write`.
    fail_writes: usize,
}

impl RepairGraph for TestGraph {
    fn len(&self) -> usize {
        self.pts.len()
    }
    fn entry(&self) -> Option<u32> {
        self.entry
    }
    fn routes(&self, id: u32) -> bool {
        self.deleted_route || self.live[id as usize]
    }
    fn is_live(&self, id: u32) -> bool {
        self.live[id as usize]
    }
    fn links(&self, id: u32, out: &mut Vec<u32>) {
        out.clear();
        if self.routes(id) {
            out.extend_from_slice(&self.lists[id as usize]);
        }
    }
    fn nearest(&mut self, id: u32, out: &mut Vec<u32>) {
        let mut all: Vec<(f32, u32)> = (0..self.pts.len() as u32).map(|i| (d(self.pts[id as usize], self.pts[i as usize]), i)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.clear();
        out.extend(all.iter().take(8).map(|x| x.1));
    }
    fn distance(&mut self, a: u32, b: u32) -> f32 {
        d(self.pts[a as usize], self.pts[b as usize])
    }
    fn read(&mut self, from: u32, out: &mut Vec<u32>) -> Option<u64> {
        out.clear();
        out.extend_from_slice(&self.lists[from as usize]);
        Some(self.versions[from as usize])
    }
    fn write(&mut self, from: u32, version: u64, list: &[u32]) -> bool {
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            self.versions[from as usize] += 1;
            return false;
        }
        assert_eq!(self.versions[from as usize], version);
        self.versions[from as usize] += 1;
        self.lists[from as usize] = list.to_vec();
        true
    }
}

/// Each element links to its `cap` nearest; then a share of all links is cut and some
/// elements deleted, which loses many elements.
fn damaged(seed: u64, n: usize, cap: usize, deleted_route: bool) -> TestGraph {
    let mut rng = Rng(seed);
    let pts: Vec<(f32, f32)> = (0..n).map(|_| (rng.f(), rng.f())).collect();
    let mut g =
        TestGraph { pts, lists: Vec::new(), versions: vec![0; n], live: vec![true; n], deleted_route, entry: Some(0), fail_writes: 0 };
    let mut near = Vec::new();
    for i in 0..n as u32 {
        g.nearest(i, &mut near);
        let list: Vec<u32> = near.iter().copied().filter(|&x| x != i && rng.below(3) != 0).take(cap).collect();
        g.lists.push(list);
    }
    for i in 1..n {
        if rng.below(10) == 0 {
            g.live[i] = false;
        }
    }
    g
}

#[test]
fn connect_unreachable_reaches_every_live_element() {
    for (seed, cap, deleted_route) in [(1, 4, false), (2, 4, true), (3, 8, false), (4, 2, false), (5, 3, true)] {
        let mut g = damaged(seed, 400, cap, deleted_route);
        let before: Vec<Vec<u32>> = g.lists.clone();
        assert!(!all_reachable(&g), "seed {seed}: nothing to repair");
        let added = connect_unreachable(&mut g, cap);
        assert!(added > 0);
        assert!(all_reachable(&g), "seed {seed} cap {cap}");
        assert!(g.lists.iter().all(|l| l.len() <= cap));
        // Only live elements took links, and each list changed by at most what was added.
        for (i, (old, new)) in before.iter().zip(&g.lists).enumerate() {
            if old != new {
                assert!(g.live[i], "deleted element {i} took a link");
            }
        }
        // Running it again finds nothing to do.
        assert_eq!(connect_unreachable(&mut g, cap), 0);
    }
}

#[test]
fn connect_unreachable_prefers_a_free_place_and_gives_one_place_per_element() {
    // 0 (entry) <-> 1, both full of each other and a far element 3; 2 is lost, nearest to 1.
    // 1 has a free place: it takes 2 without giving anything up.
    let mut g = TestGraph {
        pts: vec![(0.0, 0.0), (1.0, 0.0), (1.1, 0.0), (5.0, 0.0)],
        lists: vec![vec![1, 3], vec![0], vec![1], vec![0]],
        versions: vec![0; 4],
        live: vec![true; 4],
        deleted_route: false,
        entry: Some(0),
        fail_writes: 0,
    };
    assert_eq!(connect_unreachable(&mut g, 2), 1);
    assert_eq!(g.lists[1], vec![0, 2]);
    assert_eq!(g.lists[0], vec![1, 3]);

    // Lost elements all nearest to one hub: the hub gives one place, the rest hang off the
    // elements reconnected before them.
    let n = 12;
    let mut pts = vec![(0.0, 0.0), (1.0, 0.0)];
    pts.extend((2..n).map(|i| (1.0 + 0.01 * i as f32, 0.0)));
    let mut lists = vec![vec![1], vec![0]];
    lists.extend((2..n).map(|_| vec![1]));
    let mut g = TestGraph { pts, lists, versions: vec![0; n], live: vec![true; n], deleted_route: false, entry: Some(0), fail_writes: 0 };
    assert_eq!(connect_unreachable(&mut g, 4), n - 2);
    assert!(all_reachable(&g));
    let into_hub = (2..n).filter(|&i| g.lists[1].contains(&(i as u32))).count();
    assert_eq!(into_hub, 1, "hub list {:?}", g.lists[1]);
}

#[test]
fn link_retries_a_list_that_changed_and_never_drops_a_tree_link() {
    let mut g = TestGraph {
        pts: vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (3.0, 0.0)],
        lists: vec![vec![1, 2], vec![], vec![], vec![]],
        versions: vec![0; 4],
        live: vec![true; 4],
        deleted_route: false,
        entry: Some(0),
        fail_writes: 2,
    };
    // 2 may not go (a tree link): 1 goes although 2 is farther.
    assert!(link(&mut g, 0, 3, Room::Displace, 2, |x| x != 2));
    assert_eq!(g.lists[0], vec![2, 3]);
    assert!(!link(&mut g, 0, 1, Room::Free, 2, |_| true));
    assert!(!link(&mut g, 0, 1, Room::Displace, 2, |_| false));
    assert!(link(&mut g, 0, 3, Room::Free, 2, |_| true), "already linked");
}
