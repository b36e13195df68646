//! Assembles the `ModelProto`: opset imports and IR version, metadata, the emitted graph,
//! and initializers either inline or pointing into one external data file.

use crate::emit::{Emitter, Init};
use crate::error::ExportError;
use crate::types::dtype_code;
use crate::{meta, plan, ExportOptions, ExternalData};
use compc_ir::{DType, Graph};
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{
    GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
};
use protobuf::{EnumOrUnknown, MessageField};

/// One ONNX file must stay under protobuf's 2 GiB; the margin leaves room for the graph.
pub const INLINE_LIMIT: u64 = (2 << 30) - (128 << 20);
/// Weights smaller than this stay inline even when writing external data.
pub const EXTERNAL_MIN: u64 = 1024;
pub const ALIGN: u64 = 64;

/// A byte range of the external data file and the initializer whose bytes go there.
pub struct Chunk {
    pub init: usize,
    pub offset: u64,
}

pub struct Built {
    pub model: ModelProto,
    pub inits: Vec<Init>,
    pub chunks: Vec<Chunk>,
}

/// Builds the model. `location` is the external data file's name beside the model, when
/// the caller can write one.
pub fn build(
    g: &Graph,
    opts: &ExportOptions,
    location: Option<&str>,
) -> Result<Built, ExportError> {
    let opset = plan::target_opset(g, opts.opset)?;
    let mut em = Emitter::new(g, opset);
    em.run()?;

    let mut total = 0u64;
    for init in &em.inits {
        let w = init.weight(g);
        if w.dtype == DType::Str {
            return Err(ExportError::Node(format!(
                "weight `{}` holds strings, which compc cannot write",
                w.name
            )));
        }
        // Fails early on weights known only by hash.
        w.bytes()?;
        total = total.saturating_add(w.byte_len());
    }
    let external = match opts.external_data {
        ExternalData::Never if total > INLINE_LIMIT => {
            return Err(ExportError::TooLarge {
                bytes: total,
                hint: "allow external data",
            })
        }
        ExternalData::Never => false,
        ExternalData::Always => true,
        ExternalData::Auto => total > INLINE_LIMIT,
    };
    let location = match (external, location) {
        (false, _) => None,
        (true, Some(l)) => Some(l),
        (true, None) => {
            return Err(ExportError::TooLarge {
                bytes: total,
                hint: "external data needs a file: use export_file",
            })
        }
    };

    let mut initializer = Vec::with_capacity(em.inits.len());
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    for (i, init) in em.inits.iter().enumerate() {
        let w = init.weight(g);
        let mut t = TensorProto {
            name: init.name.clone(),
            dims: w.dims.iter().map(|&d| d as i64).collect(),
            data_type: dtype_code(w.dtype),
            ..Default::default()
        };
        let len = w.byte_len();
        match location {
            Some(loc) if len >= EXTERNAL_MIN => {
                offset = offset.div_ceil(ALIGN) * ALIGN;
                t.data_location = EnumOrUnknown::new(DataLocation::EXTERNAL);
                t.external_data = vec![
                    entry("location", loc),
                    entry("offset", &offset.to_string()),
                    entry("length", &len.to_string()),
                ];
                chunks.push(Chunk { init: i, offset });
                offset += len;
            }
            _ => t.raw_data = w.bytes()?.to_vec(),
        }
        initializer.push(t);
    }

    let md = &g.metadata;
    let get = |k: &str| md.get(k).cloned().unwrap_or_default();
    let graph = GraphProto {
        name: if g.name.is_empty() {
            "compc".into()
        } else {
            g.name.clone()
        },
        node: std::mem::take(&mut em.nodes),
        initializer,
        input: std::mem::take(&mut em.inputs),
        output: std::mem::take(&mut em.outputs),
        doc_string: get(meta::GRAPH_DOC_STRING),
        ..Default::default()
    };
    let mut opset_import = vec![opset_id("", opset)];
    for d in &em.domains {
        opset_import.push(opset_id(d, g.opsets.get(d).copied().unwrap_or(1)));
    }
    let model = ModelProto {
        ir_version: plan::ir_version(opset),
        opset_import,
        producer_name: "compc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        domain: get(meta::DOMAIN),
        model_version: get(meta::MODEL_VERSION).parse().unwrap_or(0),
        doc_string: get(meta::DOC_STRING),
        graph: MessageField::some(graph),
        metadata_props: md
            .iter()
            .filter_map(|(k, v)| Some(entry(k.strip_prefix(meta::PROPS_PREFIX)?, v)))
            .collect(),
        ..Default::default()
    };
    Ok(Built {
        model,
        inits: em.inits,
        chunks,
    })
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn opset_id(domain: &str, version: i64) -> OperatorSetIdProto {
    OperatorSetIdProto {
        domain: domain.into(),
        version,
        ..Default::default()
    }
}
