//! What the targets share: the models they segment with and which one an input gets
//! ([`network_for`], which hashes it with [`choice_of`], and [`model_of`]), the size caps
//! that keep an execution in milliseconds, and what every target checks of a result: labels
//! within bounds and an object count that matches the label image (every label 1..=n
//! present, none above).
#![allow(dead_code)] // each target uses part of this module

use std::sync::OnceLock;

use cellpose::{ChannelLayout, Convolution, Model};

/// The shipped nuclei model, loaded once per process.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/nuclei_light_int8.onnx"
        );
        Model::load(path).expect("the shipped model loads")
    })
}

/// A randomly initialised CPnet of tiny widths (2, 4, 8, 8, 8) with a size model, int8, as
/// `fuzz/make_seeds.py` writes it into the model target's corpus: the same inputs, outputs,
/// metadata and pipeline as a shipped model. Its outputs are noise, which drives the dynamics
/// and mask steps through flows no trained model would give. Our int8 kernels work in blocks
/// of 16+ channels, so it costs about what the shipped network does per pixel.
pub fn tiny_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/corpus/model_from_bytes/tiny_int8.onnx"
        );
        Model::load(path).expect("the tiny seed model loads")
    })
}

/// One int8 3×3 convolution from the image to (dY, dX, cell probability) and their mean as
/// a 3-value style, with a size model (`fuzz/make_seeds.py`, `minimal_network`): a network
/// pass that costs next to nothing, so that most executions go to what the frame and volume
/// targets explore (views, strides, pixel types, normalisation, rescaling, dynamics, masks).
/// Its convolution runs in tract's im2col form: our kernels work in blocks of 16 channels,
/// so they would spend as much on its 2 → 3 channels as on a 16 → 16 layer (the shipped and
/// tiny networks still run ours).
pub fn minimal_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/corpus/model_from_bytes/minimal_int8.onnx"
        );
        Model::load(path)
            .expect("the minimal seed model loads")
            .with_convolution(Convolution::Tract)
    })
}

/// Which network segments `input` (drawn from its hash, [`choice_of`]): `side` is the frame's
/// larger side, `one_in` how rare each U-Net is. Returns 0 for the shipped
/// nuclei model (one input in `one_in`: real flows, real cells; only when the frame is small
/// enough), 1 for the tiny CPnet (another one in `one_in`: a U-Net's layers at every frame
/// size), 2 for the minimal network (the others); below [`NETWORKS`]. A U-Net pass costs
/// 30–100 ms under coverage instrumentation, against about a millisecond for the rest of a
/// frame's execution: when every input ran one (the shipped model for one in eight, the tiny
/// CPnet otherwise), the targets managed 25–40 inputs a second. The U-Net's layers are
/// fuzzed through the C target (shipped model on every input) and the unit tests; here they
/// are the exception.
pub fn network_for(input: &impl std::fmt::Debug, side: usize, one_in: u32) -> usize {
    match choice_of(input) % one_in {
        3 if side <= SHIPPED_MAX_SIDE => 0,
        5 => 1,
        _ => 2,
    }
}

/// Each U-Net for one frame in this many (`frame_api`): at one in 256 each they still took 86 % of
/// the target's time (a campaign's corpus drifts to frames up to 96 px and to test-time
/// augmentation, four 224-px tiles), and it ran ~260 inputs a second; at one in 2048, ~650 a
/// second over 1.1 × 10⁶ executions, and a 20-s perf window still found 70 % in U-Net passes.
/// One in 8192 quarters their expected share; its one short campaign (9 minutes, the first
/// minutes replaying ~1,500 seeds) ran 125–285 a second and its 20-s perf window found 92 %:
/// such windows show whichever rare, slow U-Net input is running, not the average.
pub const FRAME_UNET_ONE_IN: u32 = 8192;

/// Each U-Net for one volume in this many (`volume_api`): a volume in 3D-flow mode runs the
/// network on every plane along each of its three axes (up to ~100 passes), so one in 256
/// each still left three quarters of the target's time in U-Nets (~60–125 inputs a second).
/// Measured with the hash of a few fields (see [`choice_of`]); with every field hashed, two
/// campaigns of 300,000 ran 115–122 a second each, U-Net passes 3 % of a 30-s perf window.
pub const VOLUME_UNET_ONE_IN: u32 = 4096;

/// The network choice of an input: a hash of every field of it (its `Debug` text), not a
/// byte of it. A byte compared with 3 and 5 is what libFuzzer learns to set (it watches
/// comparisons): the corpus filled with inputs that chose a U-Net, and the targets ran 25–225
/// inputs a second. A hash of only some fields (size, pixel type, samples) was not enough
/// either: a mutant that changed only a stride, a mode or a threshold kept its parent's
/// U-Net, and as U-Net inputs add coverage the corpus kept them, so that a `volume_api`
/// campaign spent 90 % of its time in U-Net passes (perf, 30 s) at 25–30 inputs a second.
/// Hashing every field puts a mutant back on the draw (all but one that differs only in a
/// NaN's sign or payload: `Debug` prints every NaN alike). The draw is the same for the same
/// input with the same `Input` struct and toolchain, so crashes replay; adding, renaming or
/// reordering a field changes the network of every committed input (replay an artifact at
/// the revision that found it). The text is hashed as it is formatted, never stored: the
/// samples print as a few KB at `-max_len=4096`, microseconds against a millisecond's
/// execution.
pub fn choice_of(input: &impl std::fmt::Debug) -> u32 {
    use std::fmt::Write;
    /// FNV-1a over the bytes written to it.
    struct Fnv1a(u32);
    impl Write for Fnv1a {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for b in s.bytes() {
                self.0 = (self.0 ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
            Ok(())
        }
    }
    let mut h = Fnv1a(0x811c_9dc5);
    write!(h, "{input:?}").expect("hashing never fails");
    h.0
}

/// The networks `network_for` picks from: shipped nuclei, tiny CPnet, minimal.
pub const NETWORKS: usize = 3;

/// The model of network `network` (an index from [`network_for`]).
pub fn model_of(network: usize) -> &'static Model {
    match network {
        0 => model(),
        1 => tiny_model(),
        _ => minimal_model(),
    }
}

/// Largest side of a frame the shipped model segments here: its network pass on a 320-px
/// input takes ~100 ms under coverage instrumentation, which held a target to 50 inputs a
/// second; small frames keep its real flows in the mix at a few milliseconds each.
pub const SHIPPED_MAX_SIDE: usize = 48;

/// Panics (a finding) unless `labels` holds exactly the labels 1..=n (and 0).
pub fn check_labels<L: Copy + Into<u64>>(labels: &[L], n: u64, what: &str) {
    let mut seen = vec![false; n as usize + 1];
    for &l in labels {
        let l: u64 = l.into();
        assert!(l <= n, "{what}: label {l} above the object count {n}");
        seen[l as usize] = true;
    }
    let missing = (1..=n as usize).filter(|&i| !seen[i]).count();
    assert_eq!(
        missing, 0,
        "{what}: {missing} of {n} labels absent from the label image"
    );
}

/// Network input side after rescaling, capped so that one execution stays in milliseconds:
/// the target returns early above it (big rescales are covered by the unit tests). Our int8
/// kernels work in blocks of 16+ channels, so even the tiny model costs about what the
/// shipped one does per pixel: at 320 px a side the targets ran 25 inputs a second.
pub const MAX_RESCALED_SIDE: f32 = 128.0;

/// Largest side of a frame that is segmented (larger views are still built and checked).
pub const MAX_SEGMENTED_SIDE: usize = 96;

/// The input's sample bytes in a buffer aligned for every pixel type (u32 words, the last
/// one zero-padded): `arbitrary`'s `Vec<u8>` may start at any address, and the views and the
/// C layer refuse misaligned 16- and 32-bit samples. Its first `samples.len()` bytes
/// (`bytemuck::cast_slice`) are the samples.
pub fn aligned_samples(samples: &[u8]) -> Vec<u32> {
    samples
        .chunks(4)
        .map(|chunk| {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            u32::from_ne_bytes(word)
        })
        .collect()
}

/// The channel layout an input's flag asks for.
pub fn layout(interleaved: bool) -> ChannelLayout {
    if interleaved {
        ChannelLayout::Interleaved
    } else {
        ChannelLayout::Planar
    }
}
