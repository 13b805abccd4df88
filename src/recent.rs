//! A handful of values kept by key, least recently used first: the per-shape state (taper
//! masks) that frames of one size, or the few scales of an automatic-diameter frame, would
//! otherwise rebuild on every call.

/// How many values a [`Recent`] keeps (automatic diameter runs up to three scales a frame).
const CAPACITY: usize = 4;

/// Values by key, least recently used first. Once it holds what the frames need, taking a
/// value out and putting it back allocates nothing.
#[derive(Debug, Clone)]
pub(crate) struct Recent<K, V> {
    items: Vec<(K, V)>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent { items: Vec::new() }
    }
}

impl<K: PartialEq, V> Recent<K, V> {
    /// Takes the value of `key` out, or makes it; give it back with [`put`](Self::put).
    pub fn take_or_make(&mut self, key: &K, make: impl FnOnce() -> V) -> V {
        match self.items.iter().position(|(k, _)| k == key) {
            Some(i) => self.items.remove(i).1,
            None => make(),
        }
    }

    /// Keeps `value` as the most recently used, dropping the least recently used when full.
    pub fn put(&mut self, key: K, value: V) {
        if self.items.len() >= CAPACITY {
            self.items.remove(0);
        }
        self.items.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recent_values_and_makes_the_others() {
        let mut r: Recent<u32, String> = Recent::default();
        for k in 0..5 {
            let v = r.take_or_make(&k, || format!("made {k}"));
            r.put(k, v);
        }
        // 0 was the least recently used of five: dropped and made again; 4 is kept.
        assert_eq!(r.take_or_make(&0, || "again".into()), "again");
        assert_eq!(r.take_or_make(&4, || "again".into()), "made 4");
    }
}
