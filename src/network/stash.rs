//! Image tensors of one network plan kept for reuse by its later layers and runs.
//!
//! tract allocates every op's output per run and frees it when no node reads it any more.
//! For a 224×224 tile that is about 60 MB of images per run, and glibc hands the freed ones
//! back to the system between runs (trimming the heap): every run then page-faults its
//! images in again, about 1,500 faults, 10–15 % of an int8 tile on two threads. Our
//! convolution instead takes its output from this stash and puts back the inputs it was the
//! last reader of, so after the first run the images are recycled, not reallocated. It keeps
//! at most as many tensors of each length as it made: what the runs in flight (one per thread
//! running tiles side by side) needed at their peak, unless the cap dropped some, after which
//! it makes and counts new ones (8.8 MB for the 240×240 frames of the CLI's time-lapse test,
//! whose peak RSS went down).

use std::sync::Mutex;

use tract_onnx::prelude::*;

/// Tensors smaller than this (elements) are left to the allocator: the pre-add vectors and
/// small images cost no page faults worth a lock.
const MIN_ELEMENTS: usize = 16 * 1024;

#[derive(Default)]
struct Held {
    tensors: Vec<Tensor>,
    /// (length, tensors of that length `take` made): at most that many are kept, so tensors
    /// made elsewhere (the network's input, read by our first layer) only ever stand in for
    /// ours and the stash cannot grow run after run.
    made: Vec<(usize, usize)>,
}

impl Held {
    fn bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.len() * 4).sum()
    }
}

/// f32 tensors whose values no longer matter, found by length, shared by the ops of one plan
/// (and the threads that run it side by side).
pub(crate) struct TensorStash {
    tensors: Mutex<Held>,
    /// Most bytes kept at once; beyond it, returned tensors are freed.
    cap_bytes: usize,
}

impl std::fmt::Debug for TensorStash {
    // A summary: the op around it is printed in tract's errors and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.tensors.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = held.bytes();
        write!(
            f,
            "TensorStash({} tensors, {bytes} bytes)",
            held.tensors.len()
        )
    }
}

impl TensorStash {
    pub(crate) fn new(cap_bytes: usize) -> TensorStash {
        TensorStash {
            tensors: Mutex::new(Held::default()),
            cap_bytes,
        }
    }

    /// An f32 tensor of `shape` whose values are unspecified (the caller writes every one):
    /// a kept tensor of that many elements, reshaped, or a new one.
    pub(crate) fn take(&self, shape: &[usize]) -> TractResult<Tensor> {
        let len: usize = shape.iter().product();
        if len >= MIN_ELEMENTS {
            let mut held = self.tensors.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = held.tensors.iter().position(|t| t.len() == len) {
                return held.tensors.swap_remove(i).into_shape(shape);
            }
            match held.made.iter_mut().find(|(l, _)| *l == len) {
                Some((_, made)) => *made += 1,
                None => held.made.push((len, 1)),
            }
        }
        // SAFETY: the caller writes every value before the tensor is read (the contract
        // above).
        unsafe { Tensor::uninitialized::<f32>(shape) }
    }

    /// Keeps `value` for a later [`TensorStash::take`] when all of these hold, and otherwise
    /// drops this reference:
    /// - it is an f32 tensor nobody else holds (tract flushed it);
    /// - `take` made tensors of its length, and fewer of that length are kept than it made;
    /// - the cap allows it.
    pub(crate) fn put(&self, value: TValue) {
        if value.datum_type() != f32::datum_type() || value.len() < MIN_ELEMENTS {
            return;
        }
        let Ok(tensor) = Arc::try_unwrap(value.into_arc_tensor()) else {
            return;
        };
        let mut held = self.tensors.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = held.bytes();
        let len = tensor.len();
        let made = held
            .made
            .iter()
            .find(|(l, _)| *l == len)
            .map_or(0, |(_, m)| *m);
        let kept = held.tensors.iter().filter(|t| t.len() == len).count();
        if kept < made && bytes + len * 4 <= self.cap_bytes {
            held.tensors.push(tensor);
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held_bytes(&self) -> usize {
        let held = self.tensors.lock().unwrap_or_else(|p| p.into_inner());
        held.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(t: &Tensor) -> *const f32 {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .as_ptr()
    }

    #[test]
    fn tensors_it_made_come_back_reshaped_and_no_more_are_kept() {
        let len = 32 * 1024;
        let stash = TensorStash::new(3 * 4 * len);
        // A length never asked for is not kept (the network's input).
        stash.put(Tensor::zero::<f32>(&[len]).unwrap().into_tvalue());
        assert_eq!(stash.held_bytes(), 0);
        let (a, b) = (
            stash.take(&[1, 16, 32, 64]).unwrap(),
            stash.take(&[len]).unwrap(),
        );
        let a_ptr = ptr(&a);
        // A value still shared elsewhere is not kept.
        let shared = a.into_tvalue();
        stash.put(shared.clone());
        assert_eq!(stash.held_bytes(), 0);
        stash.put(shared);
        assert_eq!(stash.held_bytes(), 4 * len);
        let again = stash.take(&[1, 32, 32, 32]).unwrap();
        assert_eq!(again.shape(), &[1, 32, 32, 32]);
        assert_eq!(ptr(&again), a_ptr, "the same buffer");
        assert_eq!(stash.held_bytes(), 0);
        // Two made, so two kept at most, whoever made the extra ones.
        for t in [again, b, Tensor::zero::<f32>(&[len]).unwrap()] {
            stash.put(t.into_tvalue());
        }
        assert_eq!(stash.held_bytes(), 2 * 4 * len);
        // A length it does not hold is a new tensor; the cap bounds what is kept.
        let big = stash.take(&[7, len]).unwrap();
        assert_eq!(big.len(), 7 * len);
        stash.put(big.into_tvalue());
        assert_eq!(stash.held_bytes(), 2 * 4 * len);
    }
}
