//! Pass options: each pass declares a schema (name, kind, default, help); the pipeline's
//! `key=value` strings are checked against it, so an unknown key or a bad value is an
//! error that lists what is valid.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptionKind {
    Int {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    Bool,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Free text (e.g. a name pattern).
    Text,
}

#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub kind: OptionKind,
    /// Default as it would be written in a pipeline; `None` means "unset" (the pass decides).
    pub default: Option<&'static str>,
    pub help: &'static str,
}

impl fmt::Display for OptionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.name)?;
        match self.kind {
            OptionKind::Int { min, max } => write!(f, "<int {min}..={max}>")?,
            OptionKind::Float { min, max } => write!(f, "<float {min}..={max}>")?,
            OptionKind::Bool => f.write_str("true|false")?,
            OptionKind::Choice(c) => f.write_str(&c.join("|"))?,
            OptionKind::Text => f.write_str("<text>")?,
        }
        if let Some(d) = self.default {
            write!(f, " (default {d})")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptionValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Int(v) => write!(f, "{v}"),
            OptionValue::Float(v) => write!(f, "{v}"),
            OptionValue::Bool(v) => write!(f, "{v}"),
            OptionValue::Text(v) => f.write_str(v),
        }
    }
}

/// Parses one raw value against its spec.
pub fn parse_value(pass: &str, spec: &OptionSpec, raw: &str) -> Result<OptionValue, String> {
    let bad = |what: &str| {
        format!(
            "option `{}` of pass `{pass}`: `{raw}` is not {what} (expected {spec})",
            spec.name
        )
    };
    match spec.kind {
        OptionKind::Int { min, max } => {
            let v: i64 = raw.parse().map_err(|_| bad("an integer"))?;
            if v < min || v > max {
                return Err(bad(&format!("in {min}..={max}")));
            }
            Ok(OptionValue::Int(v))
        }
        OptionKind::Float { min, max } => {
            let v: f64 = raw.parse().map_err(|_| bad("a number"))?;
            if !(v >= min && v <= max) {
                return Err(bad(&format!("in {min}..={max}")));
            }
            Ok(OptionValue::Float(v))
        }
        OptionKind::Bool => match raw {
            "true" | "1" => Ok(OptionValue::Bool(true)),
            "false" | "0" => Ok(OptionValue::Bool(false)),
            _ => Err(bad("true or false")),
        },
        OptionKind::Choice(choices) => {
            if choices.contains(&raw) {
                Ok(OptionValue::Text(raw.to_string()))
            } else {
                Err(bad(&format!("one of {}", choices.join(", "))))
            }
        }
        OptionKind::Text => Ok(OptionValue::Text(raw.to_string())),
    }
}

/// The checked options of one pass instance: every declared option, with its default
/// filled in where the pipeline did not set it.
#[derive(Clone, Debug, Default)]
pub struct PassOptions {
    values: BTreeMap<String, OptionValue>,
}

impl PassOptions {
    /// Checks `raw` pairs against `schema`, filling defaults.
    pub fn from_raw(
        pass: &str,
        schema: &[OptionSpec],
        raw: &[(String, String)],
    ) -> Result<PassOptions, String> {
        let mut values = BTreeMap::new();
        for (k, v) in raw {
            let spec = schema.iter().find(|s| s.name == k).ok_or_else(|| {
                if schema.is_empty() {
                    format!("pass `{pass}` takes no options, got `{k}`")
                } else {
                    let valid: Vec<String> = schema.iter().map(|s| s.to_string()).collect();
                    format!(
                        "pass `{pass}` has no option `{k}`; valid options: {}",
                        valid.join(", ")
                    )
                }
            })?;
            if values.contains_key(k) {
                return Err(format!("option `{k}` of pass `{pass}` is given twice"));
            }
            values.insert(k.clone(), parse_value(pass, spec, v)?);
        }
        for spec in schema {
            if let (false, Some(d)) = (values.contains_key(spec.name), spec.default) {
                values.insert(spec.name.to_string(), parse_value(pass, spec, d)?);
            }
        }
        Ok(PassOptions { values })
    }

    pub fn get(&self, name: &str) -> Option<&OptionValue> {
        self.values.get(name)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.values.get(name)? {
            OptionValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        match self.values.get(name)? {
            OptionValue::Float(v) => Some(*v),
            OptionValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name)? {
            OptionValue::Bool(v) => Some(*v),
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.values.get(name)? {
            OptionValue::Text(v) => Some(v),
            _ => None,
        }
    }

    /// A text option holding a `|`-separated list (`skip=lm_head|down_proj`): its
    /// non-empty, trimmed items; empty when the option is not set.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.text(name)
            .map(|s| {
                s.split('|')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The options as `key=value` pairs, for the report.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OptionValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_option_gives_its_trimmed_non_empty_items() {
        let schema = [OptionSpec {
            name: "skip",
            kind: OptionKind::Text,
            default: None,
            help: "",
        }];
        let raw = [("skip".to_string(), " lm_head | |down_proj|".to_string())];
        let o = PassOptions::from_raw("p", &schema, &raw).unwrap();
        assert_eq!(o.list("skip"), ["lm_head", "down_proj"]);
        let unset = PassOptions::from_raw("p", &schema, &[]).unwrap();
        assert!(unset.list("skip").is_empty());
    }
}
