//! A bounded memo of embedded texts (an RLHF batch repeats each prompt for every sample): at most
//! `capacity` rows, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Rows by text, and the texts oldest first.
type Rows = (HashMap<String, Vec<f32>>, VecDeque<String>);

pub struct Memo {
    capacity: usize,
    inner: Mutex<Rows>,
}

impl Memo {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, text: &str) -> Option<Vec<f32>> {
        self.lock().0.get(text).cloned()
    }

    pub fn put(&self, text: &str, row: Vec<f32>) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.lock();
        let (map, order) = &mut *g;
        if map.insert(text.to_string(), row).is_none() {
            order.push_back(text.to_string());
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn keeps_at_most_capacity_forgetting_the_oldest() {
        let m = Memo::new(2);
        m.put("a", vec![1.0]);
        m.put("b", vec![2.0]);
        m.put("a", vec![1.5]);
        assert_eq!(m.get("a"), Some(vec![1.5]));
        m.put("c", vec![3.0]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get("a"), None);
        assert_eq!(m.get("c"), Some(vec![3.0]));
        let off = Memo::new(0);
        off.put("a", vec![1.0]);
        assert_eq!(off.get("a"), None);
    }
}
