//! Per-thread packing buffers reused from product to product, so a product neither allocates
//! nor clears its packed blocks (the packers write every value a kernel reads).

use std::cell::RefCell;

/// Which buffer: a task's A block, the shared B block, or A packed once for every task.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    A = 0,
    B = 1,
    SharedA = 2,
}

/// A packed value type with per-thread buffers.
pub(crate) trait Scratch: Copy + Default + Send + Sync + 'static {
    /// Runs `f` on this thread's `slot` buffer of `len` values (contents unspecified). When the
    /// buffer is already in use on this thread (rayon ran another product's task inside this
    /// one), `f` gets a fresh allocation instead.
    fn with<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

macro_rules! scratch {
    ($t:ty) => {
        impl Scratch for $t {
            fn with<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                thread_local! {
                    static BUFS: [RefCell<Vec<$t>>; 3] =
                        const { [RefCell::new(Vec::new()), RefCell::new(Vec::new()), RefCell::new(Vec::new())] };
                }
                BUFS.with(|bufs| match bufs[slot as usize].try_borrow_mut() {
                    Ok(mut buf) => {
                        if buf.len() < len {
                            buf.resize(len, <$t>::default());
                        }
                        f(&mut buf[..len])
                    }
                    Err(_) => f(&mut vec![<$t>::default(); len]),
                })
            }
        }
    };
}

scratch!(f32);
scratch!(u32);
