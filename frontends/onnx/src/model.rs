//! The model level: parsing, opset checks, metadata, then the graph builder, shape
//! inference and the verifier.

use crate::builder::Builder;
use crate::error::ImportError;
use crate::external::ExternalFiles;
use crate::{meta, NEWEST_OPSET, OLDEST_OPSET};
use compc_ir::Graph;
use onnx_protobuf::ModelProto;
use protobuf::Message;
use std::collections::HashSet;
use std::path::Path;

pub fn parse(bytes: &[u8]) -> Result<ModelProto, ImportError> {
    let m = ModelProto::parse_from_bytes(bytes).map_err(|e| ImportError::NotOnnx(e.to_string()))?;
    // Protobuf skips unknown fields, so arbitrary bytes can parse as an empty model.
    if m.ir_version <= 0 {
        return Err(ImportError::NotOnnx("it has no ir_version".into()));
    }
    if m.graph.is_none() {
        return Err(ImportError::NotOnnx("it has no graph".into()));
    }
    Ok(m)
}

pub fn import(mut m: ModelProto, base_dir: Option<&Path>) -> Result<Graph, ImportError> {
    let mut opsets = std::collections::BTreeMap::new();
    for o in &m.opset_import {
        let domain = if o.domain == "ai.onnx" {
            ""
        } else {
            o.domain.as_str()
        };
        opsets.insert(domain.to_string(), o.version);
    }
    match opsets.get("") {
        // Models of other domains only (training ops) need not import the default one.
        None if opsets.is_empty() => {
            return Err(ImportError::Model(
                "the model imports no version of the default ONNX domain".into(),
            ))
        }
        None => {}
        Some(&v) if v < OLDEST_OPSET => {
            return Err(ImportError::Model(format!(
                "opset {v} is older than {OLDEST_OPSET}, the oldest compc supports"
            )))
        }
        Some(&v) if v > NEWEST_OPSET => {
            return Err(ImportError::Model(format!(
                "opset {v} is newer than {NEWEST_OPSET}, the newest compc supports"
            )))
        }
        Some(_) => {}
    }

    let functions: HashSet<(String, String)> = m
        .functions
        .iter()
        .map(|f| (f.domain.clone(), f.name.clone()))
        .collect();
    let gp = m
        .graph
        .take()
        .ok_or_else(|| ImportError::NotOnnx("it has no graph".into()))?;
    let graph_doc = gp.doc_string.clone();
    let mut b = Builder::new(&gp.name, ExternalFiles::new(base_dir), functions);
    let opset = opsets.get("").copied().unwrap_or(NEWEST_OPSET);
    b.opset = opset;
    b.build(gp, m.ir_version)?;
    let mut g = b.g;
    // Older forms were rewritten to opset 13's, so that is what the graph now speaks.
    if opset < 13 {
        opsets.insert(String::new(), 13);
    }
    g.opsets = opsets;

    let mut put = |k: &str, v: &str| {
        if !v.is_empty() {
            g.metadata.insert(k.to_string(), v.to_string());
        }
    };
    put(meta::PRODUCER_NAME, &m.producer_name);
    put(meta::PRODUCER_VERSION, &m.producer_version);
    put(meta::DOC_STRING, &m.doc_string);
    put(meta::DOMAIN, &m.domain);
    put(meta::GRAPH_DOC_STRING, &graph_doc);
    if m.model_version != 0 {
        put(meta::MODEL_VERSION, &m.model_version.to_string());
    }
    for kv in &m.metadata_props {
        g.metadata.insert(
            format!("{}{}", meta::PROPS_PREFIX, kv.key),
            kv.value.clone(),
        );
    }

    // A file's value_info is a hint: old exporters left stale shapes behind (ddddocr's
    // OCR model declares a rank-2 output its Reshape makes rank 3). Inference wins and
    // the user hears about it.
    let mut overridden = Vec::new();
    compc_ir::infer::infer_graph_overriding(&mut g, &mut overridden)?;
    for note in &overridden {
        eprintln!("warning: the model's declared type is wrong, using the inferred one: {note}");
    }
    compc_ir::verify::verify(&g)?;
    Ok(g)
}
