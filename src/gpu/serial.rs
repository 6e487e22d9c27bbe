//! One thread at a time inside the device, where the back end needs it (GL).
//!
//! wgpu's GL back end drives one GL context behind a lock that gives up after a few seconds
//! (wgpu-hal's `AdapterContext::lock`: "Could not lock adapter context. This is most-likely a
//! deadlock." and a panic). Compiling a pipeline holds that context for as long as the driver
//! compiles (seconds on Mesa's llvmpipe, minutes for a large kernel), and so does a submission
//! (llvmpipe runs a dispatch on the calling thread) — so with two threads on one device, one
//! thread's `create_buffer`, buffer drop or poll died while the other compiled.
//!
//! The fix sits at the depth where heedful calls into wgpu: on GL every such call (pipeline and
//! buffer creation, writes, submissions, polls, maps, and the drops of buffers, bind groups and
//! query sets) first takes this [`DeviceLock`], which waits without a time limit. Only one heedful
//! thread is then inside the GL device, so the context lock inside wgpu is never contended by
//! heedful. Other back ends (Vulkan, Metal, DX12, WebGPU) are thread-safe and get no lock: the
//! guard is a no-op there. Each lock is held for one call into wgpu only, never across a
//! submission and its wait, so threads still interleave at submission granularity.
//!
//! The lock is reentrant (a thread that holds it may take it again), since a locked call such as a
//! mapped read polls, and polling takes it too.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

/// A reentrant lock serializing calls into a device whose back end is not thread-safe (GL).
#[derive(Debug, Default)]
pub struct DeviceLock {
    /// The owning thread and how many times it holds the lock.
    state: Mutex<(Option<ThreadId>, usize)>,
    freed: Condvar,
}

impl DeviceLock {
    fn state(&self) -> MutexGuard<'_, (Option<ThreadId>, usize)> {
        // The state is two plain words, consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until this thread holds the lock (at once if it already does).
    pub fn acquire(&self) -> DeviceGuard<'_> {
        let me = std::thread::current().id();
        let mut s = self.state();
        loop {
            match s.0 {
                None => {
                    *s = (Some(me), 1);
                    break;
                }
                Some(owner) if owner == me => {
                    s.1 += 1;
                    break;
                }
                Some(_) => s = self.freed.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        }
        DeviceGuard { lock: Some(self) }
    }

    fn release(&self) {
        let mut s = self.state();
        s.1 = s.1.saturating_sub(1);
        if s.1 == 0 {
            s.0 = None;
            self.freed.notify_one();
        }
    }
}

/// Holds a [`DeviceLock`] (or nothing, on a thread-safe back end) until dropped.
#[derive(Debug)]
#[must_use = "the device is serialized only while the guard lives"]
pub struct DeviceGuard<'a> {
    lock: Option<&'a DeviceLock>,
}

impl DeviceGuard<'_> {
    /// A guard that holds nothing (the back end needs no serialization).
    pub fn none() -> Self {
        DeviceGuard { lock: None }
    }
}

impl<'a> DeviceGuard<'a> {
    /// Takes `lock` when there is one.
    pub fn of(lock: Option<&'a DeviceLock>) -> Self {
        match lock {
            Some(l) => l.acquire(),
            None => DeviceGuard::none(),
        }
    }
}

impl Drop for DeviceGuard<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.lock {
            l.release();
        }
    }
}

/// A wgpu object (buffer, bind group, query set) whose last drop may call into the device, held so
/// that the drop happens under the device's [`DeviceLock`] on GL. Derefs to the object.
pub struct Guarded<T> {
    value: ManuallyDrop<T>,
    lock: Option<Arc<DeviceLock>>,
}

impl<T> Guarded<T> {
    /// Wraps `value`; its drop takes `lock` when there is one.
    pub(crate) fn new(value: T, lock: Option<Arc<DeviceLock>>) -> Self {
        Guarded {
            value: ManuallyDrop::new(value),
            lock,
        }
    }
}

impl<T> Deref for Guarded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Clone> Clone for Guarded<T> {
    fn clone(&self) -> Self {
        Guarded::new((*self.value).clone(), self.lock.clone())
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Guarded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

impl<T> Drop for Guarded<T> {
    fn drop(&mut self) {
        let _g = DeviceGuard::of(self.lock.as_deref());
        // SAFETY: `value` is dropped exactly once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.value) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Reentrant for its owner, exclusive across threads.
    #[test]
    fn lock_is_reentrant_and_exclusive() {
        let lock = Arc::new(DeviceLock::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let max_inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, inside, max_inside) = (lock.clone(), inside.clone(), max_inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let _a = lock.acquire();
                        let _b = lock.acquire(); // reentrant: must not deadlock
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max_inside.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(max_inside.load(Ordering::SeqCst), 1);
        assert_eq!(*lock.state(), (None, 0));
    }
}
