//! Locking a `std::sync::Mutex` whose holder panicked: its data is used as
//! it is (holders keep it consistent between statements), so one panicked
//! task does not take every later caller down with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
