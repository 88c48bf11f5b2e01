//! State read by many threads and written by few — the route table, the
//! certificates served, the DNS zone, pending ACME answers — behind a lock
//! that a panic elsewhere does not poison. Every value kept here is changed
//! in one step (a map insert or removal, a table swapped whole), so what a
//! panicking thread left behind is still whole, and the proxy must go on
//! serving rather than fail every request after it.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Debug, Default)]
pub struct Shared<T>(RwLock<T>);

impl<T> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(RwLock::new(value))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_panic_while_writing_does_not_stop_readers() {
        let s = Arc::new(Shared::new(vec![1]));
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let mut g = s2.write();
            g.push(2);
            panic!("a writer dies holding the lock");
        })
        .join();
        assert_eq!(*s.read(), vec![1, 2]);
        s.write().push(3);
        assert_eq!(s.read().len(), 3);
    }
}
