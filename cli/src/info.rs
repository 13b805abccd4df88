//! `cellpose info MODEL`: what a model file is.

use std::io::Read;
use std::path::Path;

use cellpose::Model;
use sha2::{Digest, Sha256};

use crate::{EXIT_MODEL, Fatal};

/// Metadata values longer than this are shortened (size-model weights are long lists).
const MAX_VALUE_CHARS: usize = 72;

fn sha256_of(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((total, hex))
}

fn shorten(v: &str) -> String {
    let n = v.chars().count();
    if n <= MAX_VALUE_CHARS {
        v.to_string()
    } else {
        let head: String = v.chars().take(MAX_VALUE_CHARS).collect();
        format!("{head}… ({n} characters)")
    }
}

/// What the network computes in on this CPU (`Convolution::Auto`).
fn compute(model: &Model) -> String {
    use cellpose::Isa;
    let f32_isa = Isa::best_f32();
    if f32_isa == Isa::Scalar {
        return "f32, tract's own convolution (this CPU has no AVX2 or NEON)".into();
    }
    match (model.is_int8(), Isa::best_i8()) {
        (true, Some(isa)) => format!("int8 (u8 × i8, {isa:?} kernels); 1×1 projections f32"),
        (true, None) => format!("f32 ({f32_isa:?} kernels): this CPU has no AVX-512 VNNI for int8"),
        (false, _) => format!("f32 ({f32_isa:?} kernels): the file has no int8 activation scales"),
    }
}

pub fn run(given: &Path) -> Result<u8, Fatal> {
    // A shipped model's name (`nuclei`, `cyto`) or a file, as `segment --model`.
    let path = &crate::model_path::resolve(Some(given)).map_err(|m| Fatal::new(EXIT_MODEL, m))?;
    let fatal = |m: String| Fatal::new(EXIT_MODEL, format!("{}: {m}", path.display()));
    let (size, sha) = sha256_of(path).map_err(|e| fatal(format!("cannot read file: {e}")))?;
    let model = Model::load(path).map_err(|e| fatal(e.to_string()))?;
    let info = model.info();
    say!("file        {}", path.display());
    say!(
        "size        {size} bytes ({:.1} MiB)",
        size as f64 / (1024.0 * 1024.0)
    );
    say!("sha256      {sha}");
    say!("version     {}", info.version);
    say!("channels    {}", info.channels);
    say!(
        "diam_mean   {} px (objects are rescaled to this)",
        info.diam_mean
    );
    say!(
        "diam_labels {} px (mean of the training set)",
        info.diam_labels
    );
    say!("style       {} values", info.style_size);
    say!(
        "size model  {}",
        if info.size_model.is_some() {
            "yes (--diameter auto works)"
        } else {
            "no"
        }
    );
    say!("compute     {}", compute(&model));
    let (inputs, outputs) = model.declared_io();
    for t in &inputs {
        say!("input       {}: {}", t.name, t.shape);
    }
    // Loading checked the outputs at a probe size: flows first, then the style vector.
    let checked = [
        "N×3×H×W: dY, dX, cell-probability logit".to_string(),
        format!("N×{}", info.style_size),
    ];
    for (i, t) in outputs.iter().enumerate() {
        match checked.get(i) {
            Some(c) => say!("output      {}: {c} (declared {})", t.name, t.shape),
            None => say!("output      {}: {} (unused)", t.name, t.shape),
        }
    }
    say!("metadata    {} entries", info.metadata.len());
    for (k, v) in &info.metadata {
        say!("  {k} = {}", shorten(v));
    }
    Ok(0)
}
