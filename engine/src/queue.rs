//! A FIFO queue for the per-connection outputs (transmits, events, the drivers'
//! outboxes), which hold zero or one item nearly all the time.

use std::collections::VecDeque;

/// A FIFO queue that keeps its oldest item inline.
///
/// One queued item, the common case, never touches the heap; more spill into a
/// `VecDeque` held out of line, given back as soon as the queue is empty again. So an
/// idle connection's queues hold no memory (a `VecDeque` keeps the capacity it once grew
/// to for as long as it lives) and cost one item and a pointer inline, and the
/// one-in, one-out traffic of a busy connection does no allocation at all.
///
/// Invariant: `first` is `None` only when `rest` is `None`, and `rest` is never an
/// empty deque.
#[derive(Debug)]
pub struct Queue<T> {
    first: Option<T>,
    // Boxed on purpose: a pointer inline instead of the deque's four words.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<T>>>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Queue<T> {
    /// An empty queue (no allocation).
    pub const fn new() -> Self {
        Self {
            first: None,
            rest: None,
        }
    }

    /// Appends `item` at the back.
    #[inline(always)]
    pub fn push_back(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.get_or_insert_with(Box::default).push_back(item);
        }
    }

    /// Takes the oldest item.
    #[inline(always)]
    pub fn pop_front(&mut self) -> Option<T> {
        let item = self.first.take()?;
        if let Some(rest) = &mut self.rest {
            self.first = rest.pop_front();
            if rest.is_empty() {
                self.rest = None;
            }
        }
        Some(item)
    }

    /// The oldest item.
    pub fn front(&self) -> Option<&T> {
        self.first.as_ref()
    }

    /// The oldest item, to change in place.
    pub fn front_mut(&mut self) -> Option<&mut T> {
        self.first.as_mut()
    }

    /// How many items are queued.
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Drops every item and gives the buffer back.
    pub fn clear(&mut self) {
        self.first = None;
        self.rest = None;
    }

    /// The items, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// How many items its heap buffer has room for (for tests of idle memory).
    #[cfg(test)]
    pub fn heap_capacity(&self) -> usize {
        self.rest.as_ref().map_or(0, |r| r.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::Queue;

    #[test]
    fn keeps_fifo_order_across_the_inline_slot() {
        let mut q = Queue::new();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None::<u32>);
        for round in 0..3u32 {
            for i in 0..5 {
                q.push_back(round * 10 + i);
            }
            assert_eq!(q.len(), 5);
            assert_eq!(
                q.iter().copied().collect::<Vec<_>>(),
                (0..5).map(|i| round * 10 + i).collect::<Vec<_>>()
            );
            assert_eq!(q.pop_front(), Some(round * 10));
            q.push_back(99);
            let rest: Vec<_> = std::iter::from_fn(|| q.pop_front()).collect();
            let mut expected: Vec<u32> = (1..5).map(|i| round * 10 + i).collect();
            expected.push(99);
            assert_eq!(rest, expected);
            assert!(q.is_empty());
            assert_eq!(q.len(), 0);
        }
    }

    #[test]
    fn holds_one_item_and_a_pointer_inline() {
        use std::mem::size_of;
        assert_eq!(
            size_of::<Queue<bytes::Bytes>>(),
            size_of::<Option<bytes::Bytes>>() + size_of::<usize>()
        );
    }

    #[test]
    fn one_item_at_a_time_never_allocates_and_a_drained_queue_holds_nothing() {
        let mut q = Queue::new();
        for i in 0..100u64 {
            q.push_back(i);
            assert_eq!(q.heap_capacity(), 0);
            assert_eq!(q.front(), Some(&i));
            assert_eq!(q.pop_front(), Some(i));
        }
        for i in 0..10u64 {
            q.push_back(i);
        }
        assert!(q.heap_capacity() > 0);
        while q.pop_front().is_some() {}
        assert_eq!(q.heap_capacity(), 0);
        q.push_back(1);
        q.push_back(2);
        if let Some(front) = q.front_mut() {
            *front = 7;
        }
        assert_eq!(q.pop_front(), Some(7));
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.heap_capacity(), 0);
    }
}
