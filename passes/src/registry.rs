//! The pass registry: every pass compc knows, by name, with its option schema and a
//! constructor. Pipelines are checked against it; users add their own passes with
//! [`Registry::register`] and run them through the same syntax.

use crate::options::{OptionSpec, PassOptions};
use crate::pass::{Exactness, Pass};
use crate::pipeline::{parse_pipeline, PipelineEntry};

pub type PassConstructor = fn(&PassOptions) -> Result<Box<dyn Pass>, String>;

#[derive(Clone)]
pub struct PassDescriptor {
    pub name: &'static str,
    pub summary: &'static str,
    pub exactness: Exactness,
    pub options: &'static [OptionSpec],
    pub build: PassConstructor,
}

/// A pass ready to run: the instance and the options it was built from.
pub struct ConfiguredPass {
    pub pass: Box<dyn Pass>,
    pub options: PassOptions,
}

#[derive(Clone, Default)]
pub struct Registry {
    passes: Vec<PassDescriptor>,
}

impl Registry {
    pub fn empty() -> Self {
        Registry::default()
    }

    /// The registry with every built-in pass.
    pub fn with_builtin_passes() -> Self {
        let mut r = Registry::empty();
        for d in crate::builtin_passes() {
            r.register(d);
        }
        r
    }

    /// Adds a pass; a later registration of the same name replaces the earlier one.
    pub fn register(&mut self, d: PassDescriptor) {
        self.passes.retain(|p| p.name != d.name);
        self.passes.push(d);
    }

    pub fn get(&self, name: &str) -> Option<&PassDescriptor> {
        self.passes.iter().find(|p| p.name == name)
    }

    /// Descriptors sorted by name.
    pub fn descriptors(&self) -> Vec<&PassDescriptor> {
        let mut v: Vec<_> = self.passes.iter().collect();
        v.sort_by_key(|p| p.name);
        v
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.descriptors().iter().map(|p| p.name).collect()
    }

    /// Builds one pipeline entry, checking the name and every option.
    pub fn configure(&self, entry: &PipelineEntry) -> Result<ConfiguredPass, String> {
        let d = self.get(&entry.name).ok_or_else(|| {
            format!(
                "unknown pass `{}`; valid passes: {}",
                entry.name,
                self.names().join(", ")
            )
        })?;
        let options = PassOptions::from_raw(d.name, d.options, &entry.options)?;
        let pass = (d.build)(&options).map_err(|e| format!("pass `{}`: {e}", d.name))?;
        Ok(ConfiguredPass { pass, options })
    }

    /// Parses and checks a whole pipeline string.
    pub fn parse(&self, pipeline: &str) -> Result<Vec<ConfiguredPass>, String> {
        parse_pipeline(pipeline)?
            .iter()
            .map(|e| self.configure(e))
            .collect()
    }
}
