//! The bounded queue of telemetry waiting for the broker: when full, the oldest sample goes
//! and a counter remembers how many went, to be reported once the session is back.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct OfflineQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
    dropped: u64,
}

impl<T> OfflineQueue<T> {
    /// A queue holding at most `capacity` items (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            items: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            dropped: 0,
        }
    }

    /// Adds `item`, dropping the oldest one if the queue is full.
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(item);
    }

    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Puts an item that could not be sent back at the front (it is the oldest).
    pub fn push_front(&mut self, item: T) {
        if self.items.len() == self.capacity {
            self.dropped += 1;
            return;
        }
        self.items.push_front(item);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How many items were dropped since the last call, resetting the count.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_the_oldest_and_counts() {
        let mut q = OfflineQueue::new(3);
        for i in 0..5 {
            q.push(i);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.take_dropped(), 2);
        assert_eq!(q.take_dropped(), 0);
        assert_eq!(q.pop(), Some(2));
        q.push_front(2); // [2, 3, 4]
        q.push(5); // full: 2 goes → [3, 4, 5]
        q.push_front(1); // full: the unsent item is the one dropped
        assert_eq!(q.take_dropped(), 2);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, vec![3, 4, 5]);
        assert!(q.is_empty());
    }
}
