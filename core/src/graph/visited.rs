//! The visited set of a graph walk: a bitmap over dense keys that is cleared in time
//! proportional to what the walk touched, not to the size of the index, so one allocation can
//! serve every search a thread or backend runs.
//!
//! Keys are node numbers for the in-memory graph and `block * 64 + (offset - 1)` for pages,
//! which hold at most 64 items: one word per page.

#[derive(Default)]
pub struct Visited {
    words: Vec<u64>,
    touched: Vec<u32>,
}

impl Visited {
    /// A set for keys below `capacity`; it grows on demand past that.
    pub fn with_capacity(capacity: usize) -> Visited {
        Visited { words: vec![0; capacity.div_ceil(64)], touched: Vec::new() }
    }

    /// Mark `key`; true if it was not marked before.
    #[inline]
    pub fn insert(&mut self, key: u64) -> bool {
        let w = (key >> 6) as usize;
        if w >= self.words.len() {
            self.words.resize((w + 1).next_power_of_two(), 0);
        }
        let bit = 1u64 << (key & 63);
        let word = &mut self.words[w];
        if *word & bit != 0 {
            return false;
        }
        if *word == 0 {
            self.touched.push(w as u32);
        }
        *word |= bit;
        true
    }

    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        let w = (key >> 6) as usize;
        w < self.words.len() && self.words[w] & (1u64 << (key & 63)) != 0
    }

    /// Forget every key, touching only the words that were set.
    pub fn clear(&mut self) {
        for &w in &self.touched {
            self.words[w as usize] = 0;
        }
        self.touched.clear();
    }

    /// Heap bytes the set holds on to.
    pub fn bytes(&self) -> usize {
        self.words.capacity() * 8 + self.touched.capacity() * 4
    }

    /// Number of 64-key words currently marked (pages, for page keys).
    pub fn touched_words(&self) -> usize {
        self.touched.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_contains_clear_and_grow() {
        let mut v = Visited::with_capacity(100);
        assert!(v.insert(5));
        assert!(!v.insert(5));
        assert!(v.insert(64 * 1000 + 3)); // grows
        assert!(v.contains(5) && v.contains(64 * 1000 + 3) && !v.contains(6));
        assert_eq!(v.touched_words(), 2);
        v.clear();
        assert!(!v.contains(5) && !v.contains(64 * 1000 + 3));
        assert!(v.words.iter().all(|&w| w == 0));
        assert!(v.insert(5));
    }
}
