//! The model patch that gives tract our convolution: every stride-1 3×3 (padding 1) and 1×1
//! `Conv` of the typed graph becomes a [`DirectConvOp`] holding its weights packed once, with
//! what surrounds it folded in: in front, the batch norm and ReLU (tract's `Mul`, `Add` and
//! `Max(x, 0)` with per-channel constants), the style addition of the upsampling blocks and
//! the 2×2 max pooling or nearest ×2 upsampling ([`input_stage`]); behind, the residual
//! `Add` ([`residual_add`]).
//!
//! It runs on the typed graph before tract's decluttering, while every convolution is still a
//! `Conv` (decluttering turns 1×1 ones into matrix products and folds the style features of
//! the upsampling blocks into biases); tract then optimises the rest and drops the batch-norm
//! and ReLU nodes that nobody reads any more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tract_core::internal::*;
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_core::ops::math::{Add, Max, Mul};
use tract_core::ops::nn::DataFormat;

use super::conv::{DirectConv, DirectConvOp, InputStage, Precision, Resample};
use super::kernels::Isa;
use super::stash::TensorStash;

/// What the patch may use.
pub(crate) struct Choice<'a> {
    /// The f32 kernel set (also the fallback of layers without an int8 form).
    pub f32_isa: Isa,
    /// The int8 kernel set and the calibrated input scale of each 3×3 convolution, by the
    /// ONNX node name of the `Conv`; `None` computes everything in f32.
    pub int8: Option<(Isa, &'a HashMap<String, f32>)>,
    /// Convolutions already packed for another plan of the same model, by ONNX node name:
    /// their weights depend neither on the input's size nor on the batch, so every plan of
    /// a model shares them (a plan per tile size otherwise held its own ~20 MB copy).
    /// `None` packs afresh.
    pub packed: Option<&'a Mutex<HashMap<String, Arc<DirectConv>>>>,
}

/// What the patch did, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub f32_layers: usize,
    pub int8_layers: usize,
    /// Convolutions left to tract (other kernel sizes, strides, groups, …).
    pub tract_layers: usize,
    /// Additions of a convolution's output to another tensor done by the convolution.
    pub residual_adds: usize,
}

/// When the only reader of convolution `id`'s output is `Add(conv, r)` (either order) with
/// `r` an f32 tensor of the same shape: the `Add` node and `r`.
fn residual_add(model: &TypedModel, id: usize) -> Option<(usize, OutletId)> {
    let conv_out = OutletId::new(id, 0);
    if model.output_outlets().ok()?.contains(&conv_out) {
        return None;
    }
    let succ = model.outlet_successors(conv_out);
    if succ.len() != 1 {
        return None;
    }
    let add = model.node(succ[0].node);
    let bin = add.op_as::<TypedBinOp>()?;
    if !bin.0.is::<Add>() || add.inputs.len() != 2 || add.inputs[0] == add.inputs[1] {
        return None;
    }
    let other = add.inputs[1 - succ[0].slot];
    let (a, b) = (
        model.outlet_fact(conv_out).ok()?,
        model.outlet_fact(other).ok()?,
    );
    let out = model.outlet_fact(OutletId::new(add.id, 0)).ok()?;
    (a.shape == b.shape && b.shape == out.shape && b.datum_type == f32::datum_type())
        .then_some((add.id, other))
}

/// Replaces the convolutions of `model` as `choice` allows.
pub(crate) fn patch_convolutions(model: &mut TypedModel, choice: &Choice) -> TractResult<Report> {
    let mut report = Report::default();
    // A bound only (the stash keeps no more than the runs in flight need at once): eight
    // first-level images of the plan's batch (16 channels at the input's size: 8 × 8 × the
    // input's 2 channels).
    let input_bytes = model
        .input_fact(0)?
        .shape
        .as_concrete()
        .map_or(0, |s| s.iter().product::<usize>() * 4);
    let stash = Arc::new(TensorStash::new(64 * input_bytes));
    let convs: Vec<usize> = model
        .eval_order()?
        .into_iter()
        .filter(|&id| model.node(id).op_is::<Conv>())
        .collect();
    for id in convs {
        let Some((wires, conv)) = replacement(model, id, choice)? else {
            report.tract_layers += 1;
            continue;
        };
        match conv.precision() {
            Precision::F32 => report.f32_layers += 1,
            Precision::Int8 => report.int8_layers += 1,
        }
        let name = format!("{}.direct", model.node(id).name);
        let mut patch = TypedModelPatch::default();
        let mut taps = tvec!(patch.tap_model(model, wires.data)?);
        if let Some(pre) = wires.pre {
            taps.push(patch.tap_model(model, pre)?);
        }
        // `conv + r` (the blocks' residual connections): the op adds `r` as it stores.
        let residual = residual_add(model, id);
        let replaced = match residual {
            Some((add, r)) => {
                taps.push(patch.tap_model(model, r)?);
                report.residual_adds += 1;
                OutletId::new(add, 0)
            }
            None => OutletId::new(id, 0),
        };
        let op = DirectConvOp {
            conv,
            residual: residual.is_some(),
            stash: stash.clone(),
        };
        let out = patch.wire_node(name, op, &taps)?;
        patch.shunt_outside(model, replaced, out[0])?;
        patch.obliterate(id)?;
        if let Some((add, _)) = residual {
            patch.obliterate(add)?;
        }
        patch.apply(model)?;
    }
    Ok(report)
}

/// The op for node `id` and the wire it reads, when the node is a convolution we run.
fn replacement(
    model: &TypedModel,
    id: usize,
    choice: &Choice,
) -> TractResult<Option<(Wires, Arc<DirectConv>)>> {
    let node = model.node(id);
    let Some(op) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let spec = &op.pool_spec;
    let ks = match spec.kernel_shape.as_slice() {
        [3, 3] => 3,
        [1, 1] => 1,
        _ => return Ok(None),
    };
    let ones = |v: &Option<TVec<usize>>| v.as_ref().is_none_or(|v| v.iter().all(|&d| d == 1));
    let padded = |p: usize| match &spec.padding {
        PaddingSpec::Explicit(b, a) | PaddingSpec::ExplicitOnnxPool(b, a, _) => {
            b.len() == 2 && b.iter().chain(a.iter()).all(|&q| q == p)
        }
        PaddingSpec::Valid => p == 0,
        _ => false,
    };
    if op.q_params.is_some()
        || op.group != 1
        || op.kernel_fmt != KernelFormat::OIHW
        || spec.data_format != DataFormat::NCHW
        || !ones(&spec.strides)
        || !ones(&spec.dilations)
        || !padded(ks / 2)
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let input = model.outlet_fact(node.inputs[0])?;
    if input.datum_type != f32::datum_type() || input.rank() != 4 {
        return Ok(None);
    }
    let (cin, cout) = (op.input_channels(), op.output_channels());
    // Packed already for another plan of this graph (where this node passed the checks
    // below): no need to read, dequantize and check its weights again.
    let held = choice
        .packed
        .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(conv) = held.as_ref().and_then(|h| h.get(&node.name)) {
        let conv = conv.clone();
        drop(held);
        let (wires, _) = input_stage(model, node.inputs[0], cin);
        return Ok(Some((wires, conv)));
    }
    drop(held); // packing takes a while: other sessions' plans need not wait for it
    let (Some(weights), Some(bias)) = (
        constant_f32(model, node.inputs[1]),
        constant_f32(model, node.inputs[2]),
    ) else {
        return Ok(None);
    };
    if weights.len() != cout * cin * ks * ks {
        return Ok(None);
    }
    let bias = match bias.as_slice() {
        [b] => vec![*b; cout],
        b if b.len() == cout => b.to_vec(),
        _ => return Ok(None),
    };
    let (wires, stage) = input_stage(model, node.inputs[0], cin);
    let relu = stage.relu;
    let mut conv = DirectConv::new_f32(&weights, &bias, (cin, cout, ks), stage, choice.f32_isa)?;
    if let Some((isa, scales)) = choice.int8
        && ks == 3
        && relu
        && let Some(&scale) = scales.get(&node.name)
    {
        conv = conv.with_int8(&weights, scale, isa)?;
    }
    let conv = Arc::new(conv);
    if let Some(p) = choice.packed {
        p.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.name.clone(), conv.clone());
    }
    Ok(Some((wires, conv)))
}

/// The wires a replacement reads: the data before its input stage, and the stage's
/// pre-add when it has one.
struct Wires {
    data: OutletId,
    pre: Option<OutletId>,
}

/// The value of `outlet` when it is a constant, or computed from constants only (the
/// `Cast` of a bias, the `DequantizeLinear` of int8 weights), as f32.
fn constant_f32(model: &TypedModel, outlet: OutletId) -> Option<Vec<f32>> {
    let t = constant(model, outlet, 8)?;
    let t = t.cast_to::<f32>().ok()?;
    Some(t.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?.to_vec())
}

fn constant(model: &TypedModel, outlet: OutletId, depth: usize) -> Option<Arc<Tensor>> {
    let fact = model.outlet_fact(outlet).ok()?;
    if let Some(k) = &fact.konst {
        return Some(k.clone());
    }
    let node = model.node(outlet.node);
    if depth == 0 || node.inputs.is_empty() {
        return None;
    }
    let inputs: TVec<TValue> = node
        .inputs
        .iter()
        .map(|i| constant(model, *i, depth - 1).map(|t| t.into_tvalue()))
        .collect::<Option<_>>()?;
    let outputs = node.op.eval_out_of_plan(inputs).ok()??;
    outputs
        .get(outlet.slot)
        .map(|v| v.clone().into_arc_tensor())
}

/// Walks back from a convolution's input through `Max(·, 0)`, then `Add(·, shift)`, then
/// `Mul(·, scale)` with per-channel constants (a batch norm and a ReLU), then `Add(·, v)`
/// with `v` an N×C×1×1 tensor (the style features), then a 2×2 max pooling or a nearest ×2
/// upsampling, and returns the wires before them and the stage that replaces them.
fn input_stage(model: &TypedModel, mut wire: OutletId, cin: usize) -> (Wires, InputStage) {
    let mut stage = InputStage::default();
    let mut pre = None;
    if let Some((x, k)) = binary_with_constant::<Max>(model, wire, cin)
        && k.iter().all(|v| *v == 0.0)
    {
        stage.relu = true;
        wire = x;
    }
    if let Some((x, k)) = binary_with_constant::<Add>(model, wire, cin) {
        stage.shift = Some(k);
        wire = x;
    }
    if let Some((x, k)) = binary_with_constant::<Mul>(model, wire, cin) {
        stage.scale = Some(k);
        wire = x;
    }
    if let Some((x, v)) = per_image_add(model, wire, cin) {
        stage.pre_add = true;
        pre = Some(v);
        wire = x;
    }
    if let Some((x, how)) = resampling(model, wire) {
        stage.resample = how;
        wire = x;
    }
    (Wires { data: wire, pre }, stage)
}

/// When `outlet` is `Add(x, v)` (either order) with `v` a computed N×C×1×1 f32 tensor and
/// `x` of the output's shape: `x` and `v`.
fn per_image_add(model: &TypedModel, outlet: OutletId, cin: usize) -> Option<(OutletId, OutletId)> {
    let node = model.node(outlet.node);
    let bin = node.op_as::<TypedBinOp>()?;
    if !bin.0.is::<Add>() || node.inputs.len() != 2 || outlet.slot != 0 {
        return None;
    }
    let out = concrete_dims(model, outlet)?;
    for (x, v) in [
        (node.inputs[0], node.inputs[1]),
        (node.inputs[1], node.inputs[0]),
    ] {
        let (xf, vf) = (model.outlet_fact(x).ok()?, model.outlet_fact(v).ok()?);
        if vf.konst.is_some()
            || xf.datum_type != f32::datum_type()
            || vf.datum_type != f32::datum_type()
        {
            continue;
        }
        if xf.shape.as_concrete() == Some(&out[..])
            && out.len() == 4
            && vf.shape.as_concrete() == Some(&[out[0], cin, 1, 1][..])
        {
            return Some((x, v));
        }
    }
    None
}

/// The shape of `outlet` when it is known (plans are built for one input size).
fn concrete_dims(model: &TypedModel, outlet: OutletId) -> Option<Vec<usize>> {
    Some(
        model
            .outlet_fact(outlet)
            .ok()?
            .shape
            .as_concrete()?
            .to_vec(),
    )
}

/// When `outlet` is computed from one tensor by an op that behaves as a 2×2 max pooling or
/// a nearest ×2 upsampling (its other inputs constant): that tensor and the resampling.
/// The op is recognised by what it does, on a probe image, whatever tract calls it.
fn resampling(model: &TypedModel, outlet: OutletId) -> Option<(OutletId, Resample)> {
    let node = model.node(outlet.node);
    if outlet.slot != 0 || node.outputs.len() != 1 || node.inputs.is_empty() {
        return None;
    }
    let data = node.inputs[0];
    let fact = model.outlet_fact(data).ok()?;
    let dims = concrete_dims(model, data)?;
    let out = concrete_dims(model, outlet)?;
    if dims.len() != 4
        || out.len() != 4
        || fact.datum_type != f32::datum_type()
        || fact.konst.is_some()
    {
        return None;
    }
    let how = [Resample::MaxPool2, Resample::Nearest2]
        .into_iter()
        .find(|h| {
            out == [
                dims[0],
                dims[1],
                h.dims(dims[2], dims[3]).0,
                h.dims(dims[2], dims[3]).1,
            ]
        })?;
    let mut inputs: TVec<TValue> = tvec!();
    let (c, ph, pw) = (dims[1], 4, 6);
    let probe: Vec<f32> = (0..c * ph * pw)
        .map(|i| ((i * 37) % 101) as f32 - 50.0)
        .collect();
    inputs.push(
        Tensor::from_shape(&[1, c, ph, pw], &probe)
            .ok()?
            .into_tvalue(),
    );
    for &i in &node.inputs[1..] {
        inputs.push(constant(model, i, 8)?.into_tvalue());
    }
    let got = node.op.eval_out_of_plan(inputs).ok()??;
    let got = got.first()?;
    let (oh, ow) = how.dims(ph, pw);
    if got.shape() != [1, c, oh, ow] {
        return None;
    }
    let got = got
        .try_as_plain_ram()
        .ok()?
        .as_slice::<f32>()
        .ok()?
        .to_vec();
    let at = |ch: usize, y: usize, x: usize| probe[(ch * ph + y) * pw + x];
    let mut want = Vec::with_capacity(got.len());
    for ch in 0..c {
        for y in 0..oh {
            for x in 0..ow {
                want.push(match how {
                    Resample::MaxPool2 => at(ch, 2 * y, 2 * x)
                        .max(at(ch, 2 * y, 2 * x + 1))
                        .max(at(ch, 2 * y + 1, 2 * x).max(at(ch, 2 * y + 1, 2 * x + 1))),
                    Resample::Nearest2 => at(ch, y / 2, x / 2),
                    Resample::None => at(ch, y, x),
                });
            }
        }
    }
    (got == want).then_some((data, how))
}

/// When `outlet` is `op(x, k)` or `op(k, x)` with `k` a constant of one value or of one value
/// per channel (shape `[1, C, 1, 1]` or `[C, 1, 1]`) and `x` of the output's shape: `x` and
/// `k` as `cin` values.
fn binary_with_constant<B: tract_core::ops::binary::BinMiniOp>(
    model: &TypedModel,
    outlet: OutletId,
    cin: usize,
) -> Option<(OutletId, Vec<f32>)> {
    let node = model.node(outlet.node);
    let bin = node.op_as::<TypedBinOp>()?;
    if !bin.0.is::<B>() || node.inputs.len() != 2 || outlet.slot != 0 {
        return None;
    }
    let out_shape = model.outlet_fact(outlet).ok()?.shape.clone();
    for (x, k) in [
        (node.inputs[0], node.inputs[1]),
        (node.inputs[1], node.inputs[0]),
    ] {
        if model.outlet_fact(x).ok()?.shape != out_shape
            || model.outlet_fact(x).ok()?.datum_type != f32::datum_type()
        {
            continue;
        }
        let kfact = model.outlet_fact(k).ok()?;
        let Some(values) = constant_f32(model, k) else {
            continue;
        };
        let dims: Vec<usize> = kfact.shape.as_concrete()?.to_vec();
        let per_channel = match dims.as_slice() {
            d if d.iter().all(|&v| v == 1) => true,
            [1, c, 1, 1] | [c, 1, 1] => *c == cin,
            _ => false,
        };
        if !per_channel {
            continue;
        }
        let values = if values.len() == 1 {
            vec![values[0]; cin]
        } else {
            values
        };
        return Some((x, values));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    #[test]
    fn every_convolution_of_the_shipped_models_is_replaced_with_its_batch_norm_and_relu() {
        for file in ["models/nuclei_light.onnx", "models/nuclei_light_int8.onnx"] {
            let model = Model::load(file).unwrap();
            let mut typed = model.typed_for_tests(1, 64, 64);
            let choice = Choice {
                f32_isa: Isa::Scalar,
                int8: None,
                packed: None,
            };
            let report = patch_convolutions(&mut typed, &choice).unwrap();
            // Every block adds its 3×3 convolutions' output to the residual stream twice; the
            // upsampling blocks' first adds the skip connection.
            assert_eq!(
                report,
                Report {
                    f32_layers: 41,
                    int8_layers: 0,
                    tract_layers: 0,
                    residual_adds: 20
                },
                "{file}"
            );
            let typed = typed.into_decluttered().unwrap();
            let mut ops: std::collections::BTreeMap<String, usize> = Default::default();
            for id in typed.eval_order().unwrap() {
                *ops.entry(typed.node(id).op.name().to_string()).or_default() += 1;
            }
            eprintln!("{file}: {ops:?}");
            // Pooling, upsampling, batch norms, ReLUs, style and residual additions all
            // happen inside the convolutions: what tract still runs on an image-sized tensor
            // is the source and the style's mean over the deepest level (its other ops are N×C).
            for id in typed.eval_order().unwrap() {
                let n = typed.node(id);
                let fact = typed.outlet_fact(OutletId::new(id, 0)).unwrap();
                let dims = fact.shape.as_concrete().unwrap().to_vec();
                let image_sized = dims.len() == 4 && dims[2] * dims[3] > 1;
                if image_sized
                    && !n.op_is::<DirectConvOp>()
                    && !["Source", "Reduce<Sum>"].contains(&&*n.op.name())
                {
                    panic!(
                        "{file}: {} ({}) still runs on an image-sized tensor",
                        n.name,
                        n.op.name()
                    );
                }
            }
            let mut relus = 0;
            let mut fused = 0;
            for id in typed.eval_order().unwrap() {
                let n = typed.node(id);
                if let Some(bin) = n.op_as::<TypedBinOp>()
                    && bin.0.is::<Max>()
                {
                    relus += 1;
                }
                if let Some(c) = n.op_as::<DirectConvOp>()
                    && c.conv.precision() == Precision::F32
                {
                    fused += format!("{:?}", c.conv).contains("relu true") as usize;
                }
            }
            // Every 3×3 convolution and the output 1×1 read through a ReLU, and no ReLU node
            // is left in the graph.
            assert_eq!(
                fused,
                32 + 1,
                "{file}: 3×3 convolutions and the output 1×1 with a ReLU"
            );
            assert_eq!(relus, 0, "{file}: ReLU nodes left in the graph");
        }
    }
}
