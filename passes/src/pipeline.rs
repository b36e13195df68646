//! The pipeline syntax: `name{key=value,...},name2,...`. Parsing only splits the text;
//! the registry checks names and options.

#[derive(Clone, Debug, PartialEq)]
pub struct PipelineEntry {
    pub name: String,
    pub options: Vec<(String, String)>,
}

/// Splits a pipeline into entries. Errors give the character position (1-based).
pub fn parse_pipeline(src: &str) -> Result<Vec<PipelineEntry>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut entries = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            if entries.is_empty() {
                return Err("empty pipeline: expected a pass name".into());
            }
            return Err(format!(
                "pipeline ends after `,` at column {i}: expected a pass name"
            ));
        }
        let start = i;
        while i < chars.len() && is_name(chars[i]) {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "expected a pass name at column {}, found `{}`",
                i + 1,
                chars[i]
            ));
        }
        let name: String = chars[start..i].iter().collect();
        let mut options = Vec::new();
        skip_ws(&mut i);
        if i < chars.len() && chars[i] == '{' {
            i += 1;
            loop {
                skip_ws(&mut i);
                if i < chars.len() && chars[i] == '}' {
                    i += 1;
                    break;
                }
                let ks = i;
                while i < chars.len() && is_name(chars[i]) {
                    i += 1;
                }
                if ks == i {
                    return Err(format!(
                        "expected an option name in `{name}{{...}}` at column {}",
                        i + 1
                    ));
                }
                let key: String = chars[ks..i].iter().collect();
                skip_ws(&mut i);
                if i >= chars.len() || chars[i] != '=' {
                    return Err(format!(
                        "expected `=` after option `{key}` of `{name}` at column {}",
                        i + 1
                    ));
                }
                i += 1;
                skip_ws(&mut i);
                let vs = i;
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
                let value: String = chars[vs..i].iter().collect::<String>().trim().to_string();
                if value.is_empty() {
                    return Err(format!("option `{key}` of `{name}` has no value"));
                }
                options.push((key, value));
                if i >= chars.len() {
                    return Err(format!("unclosed `{{` in the options of `{name}`"));
                }
                if chars[i] == ',' {
                    i += 1;
                }
            }
        }
        entries.push(PipelineEntry { name, options });
        skip_ws(&mut i);
        if i >= chars.len() {
            return Ok(entries);
        }
        if chars[i] != ',' {
            return Err(format!(
                "expected `,` between passes at column {}, found `{}`",
                i + 1,
                chars[i]
            ));
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_options() {
        let p = parse_pipeline("quant{bits=4, group=128,method=gptq}, prune{sparsity=0.5},dce")
            .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "quant");
        assert_eq!(
            p[0].options,
            vec![
                ("bits".to_string(), "4".to_string()),
                ("group".to_string(), "128".to_string()),
                ("method".to_string(), "gptq".to_string())
            ]
        );
        assert_eq!(
            p[2],
            PipelineEntry {
                name: "dce".into(),
                options: vec![]
            }
        );
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(
            parse_pipeline("").unwrap_err(),
            "empty pipeline: expected a pass name"
        );
        assert!(parse_pipeline("dce,")
            .unwrap_err()
            .contains("expected a pass name"));
        assert!(parse_pipeline("quant{bits}")
            .unwrap_err()
            .contains("expected `=` after option `bits`"));
        assert!(parse_pipeline("quant{bits=4")
            .unwrap_err()
            .contains("unclosed"));
        assert!(parse_pipeline("dce cse")
            .unwrap_err()
            .contains("expected `,` between passes at column 5"));
    }
}
