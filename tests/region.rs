//! Regions: cut the pure part of a real model out as a standalone graph, take it through
//! text and back (as an optimizer or backend would through its own form), splice it in,
//! and check the model computes the same.

mod common;
use common::*;
use compc::ir::region::{extract, pure_regions, splice};

#[test]
fn extract_print_parse_splice_keeps_the_function() {
    for (m, e) in [
        ("decoder", "torchscript"),
        ("cnn", "dynamo"),
        ("encoder", "dynamo"),
    ] {
        let mut g = compc::driver::load_model(&model_path(m, e)).unwrap();
        let regions = pure_regions(&g).unwrap();
        assert!(!regions.is_empty(), "{m}.{e}");
        // The largest region: most of the model.
        let nodes = regions.into_iter().max_by_key(|r| r.len()).unwrap();
        let region = extract(&g, &nodes).unwrap();
        assert!(!region.outputs.is_empty(), "{m}.{e}");
        compc::ir::verify::verify(&region.graph).unwrap();
        // Round trip the region through another form (here: text with its weights).
        let text = compc::ir::text::print(&region.graph);
        let back = compc::ir::text::parse_with_weights(&text, &region.graph.weights).unwrap();
        let ops = |g: &compc::ir::Graph| {
            g.node_ids()
                .filter(|&id| !g.node(id).op.is_source())
                .count()
        };
        let before = ops(&g);
        splice(&mut g, &region, &back).unwrap();
        compc::ir::verify::verify(&g).unwrap();
        assert_eq!(
            ops(&g),
            before,
            "{m}.{e}: same number of ops after splicing"
        );
        let got = compc::runtime::run(&g, &read_npz(&inputs_path(m, "b3"))).unwrap();
        allclose(&got, &read_npz(&expected_path(m, e, "b3")), 1e-4, 1e-5)
            .unwrap_or_else(|err| panic!("{m}.{e} after splice: {err}"));
    }
}

#[test]
fn splice_checks_the_signature() {
    let g = compc::driver::load_model(&model_path("cnn", "torchscript")).unwrap();
    let nodes = pure_regions(&g)
        .unwrap()
        .into_iter()
        .max_by_key(|r| r.len())
        .unwrap();
    let region = extract(&g, &nodes).unwrap();
    let empty = compc::ir::Graph::new("empty");
    let mut g2 = g.clone();
    let err = splice(&mut g2, &region, &empty).unwrap_err().to_string();
    assert!(err.contains("replacement has 0 inputs"), "{err}");
}
