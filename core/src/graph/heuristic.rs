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
    mut dist: impl FnMut(&I, &I) -> f32,
    out: &mut Vec<Candidate<I>>,
) {
    out.clear();
    let mut pruned = Vec::new();
    for c in candidates {
        if out.len() >= m {
            break;
        }
        if out.iter().all(|kept| dist(&c.item, &kept.item) >= c.dist) {
            out.push(*c);
        } else {
            pruned.push(*c);
        }
    }
    for c in pruned {
        if out.len() >= m {
            break;
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_far_direction_over_a_tight_cluster() {
        // Base at 0 on a line; candidates at 1.0, 1.1, 1.2 (one cluster) and -2.0.
        let pos = [1.0f32, 1.1, 1.2, -2.0];
        let mut cands: Vec<Candidate<usize>> =
            (0..4).map(|i| Candidate::new(pos[i].abs(), i)).collect();
        cands.sort_by(|a, b| a.dist.total_cmp(&b.dist));
        let kept = |m| {
            let mut out = Vec::new();
            select_neighbors(&cands, m, |a: &usize, b: &usize| (pos[*a] - pos[*b]).abs(), &mut out);
            out.iter().map(|c| c.item).collect::<Vec<usize>>()
        };
        assert_eq!(kept(2), vec![0, 3]);
        // Spare places go to the pruned candidates, nearest first.
        assert_eq!(kept(3), vec![0, 3, 1]);
        assert_eq!(kept(8), vec![0, 3, 1, 2]);
    }

    #[test]
    fn stops_at_m() {
        let cands: Vec<Candidate<usize>> = (0..10).map(|i| Candidate::new(1.0 + i as f32, i)).collect();
        let mut out = Vec::new();
        // Every pair is far apart, so all would be kept without the cap.
        select_neighbors(&cands, 3, |_, _| 1e9, &mut out);
        assert_eq!(out.len(), 3);
    }
}
