//! Parse errors: position (1-based line:column) and message for malformed text.

use compc_ir::text::parse;

const HEAD: &str = "graph @g(%x: tensor<2xf32>) -> (y: tensor<2xf32>) {\n";

/// Parses `HEAD` + `body` and returns the error as `line:col: message`.
fn err(body: &str) -> String {
    let src = format!("{HEAD}{body}");
    match parse(&src) {
        Ok(g) => panic!("expected an error, parsed:\n{}", compc_ir::text::print(&g)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_colon_after_operands() {
    let e = err("  %0 = \"relu\"(%x) : (tensor<2xf32>) -> tensor<2xf32>\n  %1 = \"relu\"(%0) = (tensor<2xf32>)\n");
    assert_eq!(e, "3:19: expected ':' after operands, found '='");
}

#[test]
fn unknown_op() {
    let e = err("  %0 = \"foo\"(%x) : (tensor<2xf32>) -> tensor<2xf32>\n  return %0\n}\n");
    assert_eq!(e, "2:8: unknown op `foo`");
}

#[test]
fn undefined_value() {
    let e = err("  %0 = \"relu\"(%9) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:15: undefined value `%9`");
}

#[test]
fn value_defined_later_is_undefined() {
    let e = err("  %0 = \"relu\"(%1) : (tensor<2xf32>) -> tensor<2xf32>\n  %1 = \"relu\"(%x) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:15: undefined value `%1`");
}

#[test]
fn operand_and_type_counts_differ() {
    let e = err("  %0 = \"add\"(%x, %x) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:24: 2 operands but 1 operand types");
}

#[test]
fn operand_type_mismatch() {
    let e = err("  %0 = \"relu\"(%x) : (tensor<3xf32>) -> tensor<3xf32>\n");
    assert_eq!(
        e,
        "2:22: operand `%x` has type tensor<2xf32>, but the signature says tensor<3xf32>"
    );
}

#[test]
fn attribute_errors_point_at_the_op() {
    let e = err("  %0 = \"softmax\"(%x) {axes = 1} : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "2:8: `softmax` has no attribute `axes` (it accepts: axis)"
    );
    let e = err("  %0 = \"softmax\"(%x) {axis = 1.5} : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "2:8: attribute `axis` of `softmax` must be an integer, found a float"
    );
}

#[test]
fn duplicate_attribute() {
    let e = err("  %0 = \"softmax\"(%x) {axis = 1, axis = 2} : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:33: attribute `axis` is given twice");
}

#[test]
fn unknown_element_type() {
    let e = err("  %0 = \"relu\"(%x) : (tensor<2xf33>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:31: unknown element type `f33`");
}

#[test]
fn unterminated_string() {
    let e = err("  %0 = \"relu(%x) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "2:8: unterminated string (a string ends on its line; write \\n for a newline)"
    );
}

#[test]
fn truncated_input() {
    let e = err("  %0 = \"relu\"(%x) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "3:1: expected a statement (`%name = \"op\"(...)` or `return`), found end of input"
    );
    let e = err("  return %x\n");
    assert_eq!(
        e,
        "3:1: expected '}' after the return values, found end of input"
    );
}

#[test]
fn missing_return() {
    let e = err("}\n");
    assert_eq!(
        e,
        "2:1: expected `return` before '}' (a graph body ends with `return`)"
    );
}

#[test]
fn return_count_and_type() {
    let e = err("  return\n}\n");
    assert_eq!(e, "2:3: the header declares 1 outputs but `return` gives 0");
    let e = err("  %0 = \"shape\"(%x) : (tensor<2xf32>) -> tensor<1xi64>\n  return %0\n}\n");
    assert_eq!(
        e,
        "3:10: output `y` is declared tensor<2xf32>, but `%0` has type tensor<1xi64>"
    );
}

#[test]
fn defined_twice() {
    let e = err("  %x = \"relu\"(%x) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:3: value `%x` is defined twice");
}

#[test]
fn multi_result_values_need_an_index() {
    let body = "  %0:2 = \"split\"(%x) : (tensor<2xf32>) -> (tensor<1xf32>, tensor<1xf32>)\n";
    let e = err(&format!(
        "{body}  %1 = \"relu\"(%0) : (tensor<1xf32>) -> tensor<1xf32>\n"
    ));
    assert_eq!(
        e,
        "3:15: `%0` has 2 results; refer to one of them as `%0#0`"
    );
    let e = err(&format!(
        "{body}  %1 = \"relu\"(%0#2) : (tensor<1xf32>) -> tensor<1xf32>\n"
    ));
    assert_eq!(e, "3:18: `%0` has 2 results; #2 is out of range");
    let e = err("  %0 = \"split\"(%x) : (tensor<2xf32>) -> (tensor<1xf32>, tensor<1xf32>)\n");
    assert_eq!(
        e,
        "2:3: `%0` declares 1 results but the op has 2 result types"
    );
}

#[test]
fn const_errors() {
    let e = err("  %0 = \"const\"() {weight = @w} : () -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "2:19: `weight = @name` needs `sha = \"<16 hex digits>\"` (or parse with a weight store)"
    );
    let e = err("  %0 = \"const\"() {value = dense<[1, 2, 3]>} : () -> tensor<2xf32>\n");
    assert_eq!(e, "2:27: dense literal has 3 elements, its type needs 2");
    let e = err("  %0 = \"const\"() {value = dense<[1, 300]>} : () -> tensor<2xi8>\n");
    assert_eq!(e, "2:37: 300 is out of range for i8 (from -128 to 127)");
    let e = err("  %0 = \"const\"() {value = dense<[1.5]>} : () -> tensor<{n}xf32>\n");
    assert_eq!(
        e,
        "2:8: the type of a `const` must be fully known, found tensor<{n}xf32>"
    );
    let e = err("  %0 = \"const\"() {valu = dense<[1.5]>} : () -> tensor<1xf32>\n");
    assert_eq!(
        e,
        "2:19: `const` has no attribute `valu` (it accepts: sha, value, weight)"
    );
}

#[test]
fn header_errors() {
    let e = parse("graf @g() -> () {\n  return\n}\n")
        .expect_err("bad keyword")
        .to_string();
    assert_eq!(e, "1:1: expected `graph`, found `graf`");
    let e = parse("graph @g(%x tensor<2xf32>) -> () {\n  return\n}\n")
        .expect_err("no colon")
        .to_string();
    assert_eq!(
        e,
        "1:13: expected ':' after the input name, found type `tensor<2xf32>`"
    );
    let e = parse("graph @g() -> () opsets {\"\" = x} {\n  return\n}\n")
        .expect_err("bad opset")
        .to_string();
    assert_eq!(e, "1:31: expected an opset version, found `x`");
    let e = parse("graph @g() -> () {\n  return\n}\n}\n")
        .expect_err("trailing")
        .to_string();
    assert_eq!(e, "4:1: expected end of input after the graph, found '}'");
}

#[test]
fn custom_op_name_must_have_two_colons() {
    let e = err("  %0 = \"custom:Foo\"(%x) : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "2:8: a custom op is named `custom:<domain>:<op_type>`, found `custom:Foo`"
    );
}

#[test]
fn weight_reference_outside_const() {
    let e = err("  %0 = \"custom:a:B\"(%x) {w = @w} : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(
        e,
        "2:26: attribute `w`: `@name` weight references are only valid in `const`"
    );
}

#[test]
fn columns_count_characters() {
    let e = err("  %0 = \"relu\"(%x) {s = \"üüü\", t = foo} : (tensor<2xf32>) -> tensor<2xf32>\n");
    assert_eq!(e, "2:35: expected an attribute value, found `foo`");
}
