//! Loading and validating a Cellpose-architecture ONNX network with tract.
//!
//! A model is parsed and checked once; a runnable plan is then optimised once per input
//! shape (batch × height × width) and cached, so a stream of frames of one size pays the
//! optimisation only on its first frame. [`Model`] is cheap to clone and may be shared by
//! sessions on several threads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::ModelError;
use crate::network::Isa;
use crate::network::conv::DirectConv;
use crate::network::graph::{Choice, patch_convolutions};
use crate::size_model::SizeModel;

/// Metadata key prefix written by `models/export.py`.
const META: &str = "cellpose.";

/// Metadata key (after the `cellpose.` prefix) of an int8 model's activation scales, written by
/// `python -m models.quantize --calibrate`: `NAME=SCALE` pairs separated by commas, one per 3×3
/// convolution, NAME the ONNX node name of the `Conv`, SCALE the f32 value of u8 code 1 of
/// its (post-ReLU) input.
pub const INT8_INPUT_SCALES: &str = "int8.input_scales";

/// Which code runs the network's convolutions (the 3×3 ones hold about 90 % of its
/// multiply-adds; the 1×1 projections are always f32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Convolution {
    /// The fastest the CPU and the file allow: int8 kernels for an int8 model with calibrated
    /// activation scales on a CPU with int8 kernels (AVX-512 VNNI), f32 kernels otherwise
    /// (AVX-512, AVX2 + FMA or NEON), tract's own convolution on a CPU with none of them.
    #[default]
    Auto,
    /// Our f32 kernels, also for an int8 model (its weights dequantized, as tract does); on a
    /// CPU without SIMD kernels, tract's own convolution.
    F32,
    /// tract's own convolution (im2col + matrix multiply): the comparison for tests and
    /// benchmarks.
    Tract,
}

/// What a model file says about itself (ONNX `metadata_props`), with defaults for files
/// exported by other tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Object diameter (pixels) that training rescaled every image to (reference `diam_mean`).
    pub diam_mean: f32,
    /// Mean object diameter of the training images before rescaling (`diam_labels`).
    pub diam_labels: f32,
    /// Length of the style vector (the deepest width).
    pub style_size: usize,
    /// Channel meaning, e.g. "0: nuclei or cytoplasm (grayscale), 1: optional nucleus".
    pub channels: String,
    /// Free-form version string of the weights.
    pub version: String,
    /// Every `metadata_props` entry, in file order.
    pub metadata: Vec<(String, String)>,
    /// Size model for automatic diameter, when the file carries one.
    pub size_model: Option<SizeModel>,
}

/// A graph input or output as the model file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorDecl {
    pub name: String,
    /// Dimensions then element type, symbolic dimensions by name (e.g. `batch,2,H,W,F32`).
    pub shape: String,
}

type Plan = Arc<TypedRunnableModel>;

/// Network plans a model keeps (each holds its intermediate tensors, 3–15 MB by tile size).
/// A frame smaller than a tile is planned at its own size, so a stream of ever-new small
/// sizes (automatic diameter on small frames, cropped regions) would otherwise grow a
/// session without bound. 32 covers the sizes of the soak test (24 frames of 64–512 px).
const MAX_PLANS: usize = 32;

/// Plans by input shape `(batch, height, width)`, at most `capacity`: the least recently
/// used goes first (a run still holding it keeps it alive until it ends).
struct PlanCache<P> {
    plans: HashMap<(usize, usize, usize), (P, u64)>,
    clock: u64,
    capacity: usize,
}

impl<P: Clone> PlanCache<P> {
    fn new(capacity: usize) -> PlanCache<P> {
        PlanCache {
            plans: HashMap::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    fn get(&mut self, key: &(usize, usize, usize)) -> Option<P> {
        self.clock += 1;
        let now = self.clock;
        self.plans.get_mut(key).map(|(plan, used)| {
            *used = now;
            plan.clone()
        })
    }

    fn insert(&mut self, key: (usize, usize, usize), plan: P) {
        self.clock += 1;
        self.plans.insert(key, (plan, self.clock));
        while self.plans.len() > self.capacity {
            let oldest = self
                .plans
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    log::debug!("network plan {k:?} dropped (least recently used)");
                    self.plans.remove(&k);
                }
                None => break,
            }
        }
    }
}

struct Inner {
    graph: InferenceModel,
    info: ModelInfo,
    /// Calibrated u8 scale of the input of each 3×3 convolution, by ONNX node name, when the
    /// file is an int8 model that carries them (see [`INT8_INPUT_SCALES`]).
    int8_scales: Option<HashMap<String, f32>>,
    convolution: Convolution,
    plans: Mutex<PlanCache<Plan>>,
    /// Our convolutions with their packed weights, by ONNX node name, shared by all plans.
    packed: Mutex<HashMap<String, Arc<DirectConv>>>,
}

/// A validated Cellpose network. Clone freely: clones share the parsed graph and the
/// per-shape plans.
#[derive(Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.inner.info)
            .finish()
    }
}

fn meta_f32(meta: &[(String, String)], key: &str) -> Result<Option<f32>, ModelError> {
    let full = format!("{META}{key}");
    match meta.iter().find(|(k, _)| *k == full) {
        None => Ok(None),
        Some((_, v)) => match v.trim().parse::<f32>() {
            Ok(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
            _ => Err(ModelError::Metadata {
                key: full,
                value: v.clone(),
                reason: "expected a positive number".into(),
            }),
        },
    }
}

fn meta_str(meta: &[(String, String)], key: &str) -> Option<String> {
    let full = format!("{META}{key}");
    meta.iter()
        .find(|(k, _)| *k == full)
        .map(|(_, v)| v.clone())
}

impl Model {
    /// Loads a model file (ONNX, as `python -m models.export` writes it; int8 or f32).
    ///
    /// # Errors
    /// [`ModelError::Io`] when the file cannot be read; otherwise as
    /// [`from_bytes`](Self::from_bytes).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Loads a model from the bytes of an ONNX file held in memory.
    ///
    /// # Errors
    /// [`ModelError`]: the bytes are not an ONNX model tract can analyse (`Parse`,
    /// `Optimise`; a panic inside tract's analysis becomes one of these), the network is
    /// not a CPnet (one 2-channel input, the flows and style outputs:
    /// `InputCount`…`OutputShape`), or its metadata (diameters, size model, int8 scales)
    /// are missing or out of range (`Metadata`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let onnx = tract_onnx::onnx();
        let mut reader = bytes;
        let proto: ModelProto = onnx
            .proto_model_for_read(&mut reader)
            .map_err(|e| ModelError::Parse(format!("{e:#}")))?;
        if proto.graph.is_none() {
            return Err(ModelError::Parse("the file holds no graph".into()));
        }
        let metadata: Vec<(String, String)> = proto
            .metadata_props
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        let graph = tract_guard(
            || {
                onnx.model_for_proto_model(&proto)
                    .map_err(|e| ModelError::Parse(format!("{e:#}")))
            },
            ModelError::Parse,
        )?;

        let n_in = graph
            .input_outlets()
            .map_err(|e| ModelError::Parse(e.to_string()))?
            .len();
        if n_in != 1 {
            return Err(ModelError::InputCount { found: n_in });
        }
        let n_out = graph
            .output_outlets()
            .map_err(|e| ModelError::Parse(e.to_string()))?
            .len();
        if n_out < 2 {
            return Err(ModelError::OutputCount { found: n_out });
        }
        let fact = graph
            .input_fact(0)
            .map_err(|e| ModelError::Parse(e.to_string()))?;
        if let Some(rank) = fact.shape.rank().concretize()
            && rank != 4
        {
            return Err(ModelError::InputRank {
                found: rank as usize,
            });
        }
        if let Some(c) = fact
            .shape
            .dims()
            .nth(1)
            .and_then(|d| d.concretize())
            .and_then(|d| d.to_i64().ok())
            .map(|d| d as usize)
            && c != 2
        {
            return Err(ModelError::InputChannels {
                expected: 2,
                found: c,
            });
        }

        let diam_mean = meta_f32(&metadata, "diam_mean")?.unwrap_or(30.0);
        let diam_labels = meta_f32(&metadata, "diam_labels")?.unwrap_or(diam_mean);
        let mut info = ModelInfo {
            diam_mean,
            diam_labels,
            style_size: 0,
            channels: meta_str(&metadata, "channels")
                .unwrap_or_else(|| "0: channel to segment, 1: optional nucleus channel".into()),
            version: meta_str(&metadata, "version").unwrap_or_else(|| "unknown".into()),
            size_model: None,
            metadata,
        };
        info.size_model = SizeModel::from_metadata(&info.metadata, diam_mean)?;
        let int8_scales = int8_scales(&info.metadata, quantized_convolutions(&proto))?;
        let model = Model {
            inner: Arc::new(Inner {
                graph,
                info,
                int8_scales,
                convolution: Convolution::Auto,
                plans: Mutex::new(PlanCache::new(MAX_PLANS)),
                packed: Mutex::new(HashMap::new()),
            }),
        };

        // Type the graph once at a small size: this proves every op is supported and gives
        // the output shapes to check, before any frame arrives.
        let probe = 32;
        let typed = model.typed_for(1, probe, probe)?;
        let outs = typed
            .output_outlets()
            .map_err(|e| ModelError::Parse(e.to_string()))?
            .to_vec();
        let shape_of = |i: usize| -> Result<Vec<usize>, ModelError> {
            let f = typed
                .outlet_fact(outs[i])
                .map_err(|e| ModelError::Parse(e.to_string()))?;
            f.shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| ModelError::OutputShape {
                    index: i,
                    expected: "a concrete shape".into(),
                    found: shortened(format!("{:?}", f.shape)),
                })
        };
        let flows = shape_of(0)?;
        if flows != [1, 3, probe, probe] {
            return Err(ModelError::OutputShape {
                index: 0,
                expected: format!("N×3×H×W ([1, 3, {probe}, {probe}])"),
                found: shortened(format!("{flows:?}")),
            });
        }
        let style = shape_of(1)?;
        if style.len() != 2 || style[0] != 1 || style[1] == 0 {
            return Err(ModelError::OutputShape {
                index: 1,
                expected: "N×S style vector".into(),
                found: shortened(format!("{style:?}")),
            });
        }
        let mut inner = Arc::try_unwrap(model.inner)
            .ok()
            .expect("no other reference yet");
        inner.info.style_size = style[1];
        if let Some(sm) = &inner.info.size_model
            && sm.style_size() != style[1]
        {
            return Err(ModelError::Metadata {
                key: "cellpose.size_model.A".into(),
                value: format!("{} values", sm.style_size()),
                reason: format!("the network's style vector has {} values", style[1]),
            });
        }
        Ok(Model {
            inner: Arc::new(inner),
        })
    }

    /// The same network with its convolutions run by `convolution` (a new plan cache;
    /// the parsed graph is copied).
    pub fn with_convolution(&self, convolution: Convolution) -> Model {
        Model {
            inner: Arc::new(Inner {
                graph: self.inner.graph.clone(),
                info: self.inner.info.clone(),
                int8_scales: self.inner.int8_scales.clone(),
                convolution,
                plans: Mutex::new(PlanCache::new(MAX_PLANS)),
                packed: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Which code runs the convolutions ([`Model::with_convolution`]).
    pub fn convolution(&self) -> Convolution {
        self.inner.convolution
    }

    /// Whether the file is an int8 model with calibrated activation scales (it then computes
    /// in int8 on CPUs with int8 kernels, see [`Convolution::Auto`]).
    pub fn is_int8(&self) -> bool {
        self.inner.int8_scales.is_some()
    }

    /// What the file says about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The graph's inputs and outputs as the file declares them, before any shape is fixed.
    pub fn declared_io(&self) -> (Vec<TensorDecl>, Vec<TensorDecl>) {
        let g = &self.inner.graph;
        let describe = |outlets: &[OutletId]| -> Vec<TensorDecl> {
            outlets
                .iter()
                .map(|&o| TensorDecl {
                    name: g
                        .outlet_label(o)
                        .unwrap_or(&g.node(o.node).name)
                        .to_string(),
                    shape: g
                        .outlet_fact(o)
                        .map(|f| format!("{f:?}"))
                        .unwrap_or_else(|_| "?".into()),
                })
                .collect()
        };
        (
            describe(g.input_outlets().unwrap_or(&[])),
            describe(g.output_outlets().unwrap_or(&[])),
        )
    }

    #[cfg(test)]
    pub(crate) fn typed_for_tests(&self, batch: usize, height: usize, width: usize) -> TypedModel {
        self.typed_for(batch, height, width).expect("typed model")
    }

    fn typed_for(
        &self,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<TypedModel, ModelError> {
        let err = |message: String| ModelError::Optimise {
            height,
            width,
            message,
        };
        tract_guard(
            || {
                self.inner
                    .graph
                    .clone()
                    .with_input_fact(0, f32::fact([batch, 2, height, width]).into())
                    .and_then(|g| g.into_typed())
                    .map_err(|e| err(format!("{e:#}")))
            },
            err,
        )
    }

    /// The runnable plan for an input of `batch × 2 × height × width`, optimised on first use.
    pub(crate) fn plan(
        &self,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<Plan, ModelError> {
        let key = (batch, height, width);
        if let Some(p) = self
            .inner
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(p);
        }
        let err = |e: TractError| ModelError::Optimise {
            height,
            width,
            message: format!("{e:#}"),
        };
        let mut typed = self.typed_for(batch, height, width)?;
        // Our scalar kernels are the SIMD kernels' test reference, slower than tract's own
        // convolution: a CPU without AVX2 or NEON keeps tract's.
        let ours = self.inner.convolution != Convolution::Tract && Isa::best_f32() != Isa::Scalar;
        if !ours {
            log::info!("network {batch}×2×{height}×{width}: tract's own convolution");
        } else {
            let int8 = match (self.inner.convolution, &self.inner.int8_scales) {
                (Convolution::Auto, Some(scales)) => Isa::best_i8().map(|isa| (isa, scales)),
                _ => None,
            };
            let choice = Choice {
                f32_isa: Isa::best_f32(),
                int8,
                packed: Some(&self.inner.packed),
            };
            let report = patch_convolutions(&mut typed, &choice).map_err(err)?;
            log::info!(
                "network {batch}×2×{height}×{width}: convolutions int8 ({:?}) {}, f32 ({:?}) {}, left to tract {}",
                int8.map(|(isa, _)| isa),
                report.int8_layers,
                choice.f32_isa,
                report.f32_layers,
                report.tract_layers
            );
        }
        let plan = tract_guard(
            || {
                typed
                    .into_optimized()
                    .and_then(|t| t.into_runnable())
                    .map_err(err)
            },
            |message| ModelError::Optimise {
                height,
                width,
                message,
            },
        )?;
        log::debug!("optimised network plan for {batch}×2×{height}×{width}");
        self.inner
            .plans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, plan.clone());
        Ok(plan)
    }
}

/// `text` cut to its first 200 characters (with "…" and the length left out): a mutated
/// model's symbolic shape can print as hundreds of kilobytes, too long for an error line.
fn shortened(text: String) -> String {
    const MOST: usize = 200;
    match text.char_indices().nth(MOST) {
        Some((cut, _)) => format!(
            "{}… ({} more characters)",
            &text[..cut],
            text[cut..].chars().count()
        ),
        None => text,
    }
}

/// Runs tract's work on a graph, `f`, turning a panic inside tract into `err(message)`: its
/// graph analysis unwraps on some malformed files (fuzzing found a `Reduce` whose axis lies
/// beyond its input's rank), and a model file must never take the caller down.
fn tract_guard<T>(
    f: impl FnOnce() -> Result<T, ModelError>,
    err: impl FnOnce(String) -> ModelError,
) -> Result<T, ModelError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(err(format!(
            "tract could not analyse this graph: {}",
            crate::error::panic_message(&*payload)
        ))),
    }
}

/// Whether the file stores its convolution weights as int8 (a `DequantizeLinear` feeding a
/// `Conv`'s weights, as `models/quantize.py` writes them).
fn quantized_convolutions(proto: &ModelProto) -> bool {
    let Some(graph) = &proto.graph else {
        return false;
    };
    let dequantized: Vec<&str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .filter_map(|n| n.output.first().map(|s| s.as_str()))
        .collect();
    graph.node.iter().any(|n| {
        n.op_type == "Conv"
            && n.input
                .get(1)
                .is_some_and(|w| dequantized.contains(&w.as_str()))
    })
}

/// The calibrated activation scales of an int8 model ([`INT8_INPUT_SCALES`]); `None` for an
/// f32 model, or an int8 one without them (which then computes in f32, as before).
fn int8_scales(
    meta: &[(String, String)],
    quantized: bool,
) -> Result<Option<HashMap<String, f32>>, ModelError> {
    let Some(text) = meta_str(meta, INT8_INPUT_SCALES) else {
        return Ok(None);
    };
    let bad = |reason: String| ModelError::Metadata {
        key: format!("{META}{INT8_INPUT_SCALES}"),
        value: if text.len() > 80 {
            format!("{}…", &text[..text.floor_char_boundary(80)])
        } else {
            text.clone()
        },
        reason,
    };
    if !quantized {
        return Err(bad("the file's convolution weights are not int8".into()));
    }
    let mut scales = HashMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .rsplit_once('=')
            .ok_or_else(|| bad(format!("`{pair}` is not NAME=SCALE")))?;
        match value.trim().parse::<f32>() {
            Ok(v) if v.is_finite() && v > 0.0 => {
                scales.insert(name.trim().to_string(), v);
            }
            _ => {
                return Err(bad(format!(
                    "the scale of `{name}` is not a positive number"
                )));
            }
        }
    }
    if scales.is_empty() {
        return Err(bad("no NAME=SCALE pair".into()));
    }
    Ok(Some(scales))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_shapes_in_errors_are_shortened() {
        assert_eq!(shortened("1,3,8,8".into()), "1,3,8,8");
        let long = shortened("ab".repeat(1000));
        assert!(
            long.starts_with(&"ab".repeat(100)) && long.ends_with("… (1800 more characters)"),
            "{long}"
        );
    }

    #[test]
    fn the_plan_cache_keeps_its_capacity_and_drops_the_least_recently_used() {
        let mut cache = PlanCache::new(3);
        for side in [64, 80, 96] {
            cache.insert((1, side, side), side);
        }
        // 64 is used again, so 80 is the least recently used when a fourth size comes.
        assert_eq!(cache.get(&(1, 64, 64)), Some(64));
        cache.insert((1, 112, 112), 112);
        assert_eq!(cache.plans.len(), 3);
        assert_eq!(cache.get(&(1, 80, 80)), None);
        for side in [64, 96, 112] {
            assert_eq!(cache.get(&(1, side, side)), Some(side), "{side}");
        }
        // A stream of new sizes never holds more than the capacity.
        for side in 200..260 {
            cache.insert((1, side, side), side);
            assert!(cache.plans.len() <= 3);
        }
    }

    #[test]
    fn plans_of_different_tile_sizes_share_their_packed_convolutions() {
        // Each plan packed its own weights (~20 MB for the shipped model), so a session fed
        // frames of many small sizes grew by that much per size.
        let model = Model::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/nuclei_light_int8.onnx"
        ))
        .unwrap();
        if Isa::best_f32() == Isa::Scalar {
            return; // tract's own convolution runs there: nothing of ours is packed
        }
        let _a = model.plan(1, 64, 64).unwrap();
        let packed_once: Vec<(String, usize)> = {
            let held = model.inner.packed.lock().unwrap();
            held.iter()
                .map(|(k, v)| (k.clone(), Arc::as_ptr(v) as usize))
                .collect()
        };
        assert_eq!(packed_once.len(), 41, "every convolution of the network");
        let _b = model.plan(1, 96, 80).unwrap();
        let _c = model.plan(2, 64, 64).unwrap();
        let held = model.inner.packed.lock().unwrap();
        assert_eq!(held.len(), 41);
        for (name, ptr) in &packed_once {
            let conv = &held[name];
            assert_eq!(Arc::as_ptr(conv) as usize, *ptr, "{name} packed again");
            // The map and the three plans.
            assert_eq!(Arc::strong_count(conv), 4, "{name}");
        }
    }
}
