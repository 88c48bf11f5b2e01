//! A fixture the tests of one test binary share because it is expensive to
//! set up (a booted stand-in, an order from a real ACME server): made by
//! the first test that asks for it, dropped, and so cleaned up, when the
//! test binary exits, also after failed tests. A set-up that fails fails
//! every test that asks for it, without being tried again.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, Once};

enum Slot<T> {
    Empty,
    Ready(Arc<T>),
    Failed(String),
}

pub struct Shared<T> {
    slot: Mutex<Slot<T>>,
    at_exit: Once,
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub const fn new() -> Shared<T> {
        Shared {
            slot: Mutex::new(Slot::Empty),
            at_exit: Once::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fixture, made by `make` if no test made it before. Tests that
    /// ask while it is being made wait for it.
    pub fn get(&'static self, make: impl FnOnce() -> T) -> Arc<T> {
        let mut slot = self.lock();
        match &*slot {
            Slot::Ready(t) => return t.clone(),
            Slot::Failed(why) => panic!("the shared fixture could not be set up: {why}"),
            Slot::Empty => {}
        }
        self.at_exit
            .call_once(|| at_exit(Box::new(move || self.drop_it())));
        match std::panic::catch_unwind(AssertUnwindSafe(make)) {
            Ok(t) => {
                let t = Arc::new(t);
                *slot = Slot::Ready(t.clone());
                t
            }
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "it panicked".into());
                *slot = Slot::Failed(why);
                std::panic::resume_unwind(panic)
            }
        }
    }

    fn drop_it(&self) {
        let slot = std::mem::replace(&mut *self.lock(), Slot::Empty);
        drop(slot);
    }
}

type Hook = Box<dyn FnOnce() + Send>;

static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Run `hook` when the process exits (libtest returns from `main`, or calls
/// `exit` after a failed test): statics are never dropped otherwise.
fn at_exit(hook: Hook) {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        extern "C" fn run_hooks() {
            let hooks = std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
            for hook in hooks.into_iter().rev() {
                if std::panic::catch_unwind(AssertUnwindSafe(hook)).is_err() {
                    eprintln!("cleaning up a shared test fixture failed");
                }
            }
        }
        // SAFETY: registers a function without arguments that unwinds
        // nowhere (panics are caught above).
        let rc = unsafe { nix::libc::atexit(run_hooks) };
        assert_eq!(rc, 0, "atexit");
    });
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push(hook);
}
