//! The worker threads of a calling thread, for [`Model::set_threads`](super::Model::set_threads)
//! (natively; wasm runs one thread).
//!
//! A forward on `n` threads runs the first part of its batch on the calling thread and the
//! others on `n − 1` workers that belong to the calling thread: started at its first such
//! forward and kept until it ends (or asks for another count). So each worker keeps its working
//! buffers (`buffers.rs`, per thread) from one call to the next instead of allocating and
//! faulting them in again, and threads that run forwards at the same time (`bns eval`'s jobs)
//! never wait for each other's workers.

use std::rc::Rc;

std::thread_local! {
    static WORKERS: std::cell::RefCell<Option<Rc<rayon::ThreadPool>>> =
        const { std::cell::RefCell::new(None) };
}

/// This thread's `count` workers, started if needed; `None` if the system cannot start them.
pub(super) fn of_this_thread(count: usize) -> Option<Rc<rayon::ThreadPool>> {
    WORKERS.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().map(|w| w.current_num_threads()) != Some(count) {
            *slot = rayon::ThreadPoolBuilder::new()
                .num_threads(count)
                .thread_name(|i| format!("bns-forward-{i}"))
                .build()
                .ok()
                .map(Rc::new);
        }
        slot.clone()
    })
}
