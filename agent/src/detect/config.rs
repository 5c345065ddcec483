//! The agent's TOML configuration.
//!
//! Every key is optional; an empty file (or none) means "detect everything":
//!
//! ```toml
//! # The agent's id; default: generated on first start and kept in <work_dir>/agent_id.
//! agent_id = "dock-3-pi"
//! # Where the agent keeps its id, the code cache and task sandboxes.
//! work_dir = "/var/lib/wasmos/agent"
//! # Public keys (`wasmos module keygen`) whose signed modules run here; with any, every
//! # other module fails before it is compiled. Added to `--trust`; paths as given (relative
//! # ones from the directory the agent starts in).
//! trust = ["/etc/wasmos/release.pub"]
//!
//! # Attributes for placement. A key set here replaces the detected values of that key;
//! # a value may be a string or a list of strings.
//! [attributes]
//! zone = "dock-3"
//! has = ["gpu", "camera", "relay"]
//!
//! # Labels for people and tools; published as attributes `label.<key>`.
//! [labels]
//! owner = "team-a"
//!
//! # Resources: a scalar here replaces the detected one (or adds a new kind); sets and
//! # ranges are added to the detected ones.
//! [resources.scalars]
//! mem = 1024
//! npu = 1
//! [resources.sets]
//! relays = ["relay:1", "relay:2"]
//! [resources.ranges]
//! ports = [[31000, 32000]]
//!
//! # Kept for the device itself: subtracted from the total and never offered.
//! [reserved.scalars]
//! cpus = 0.5
//! mem = 256
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use proto::{Attributes, RangeSet, Resources, Scalar};
use serde::Deserialize;

/// Largest configuration file read, in bytes.
pub const CONFIG_BYTES_MAX: u64 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub agent_id: Option<String>,
    pub work_dir: Option<PathBuf>,
    /// Public key files whose signed modules run here (`--trust` adds more).
    #[serde(default)]
    pub trust: Vec<PathBuf>,
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub resources: ResourceConfig,
    #[serde(default)]
    pub reserved: ResourceConfig,
}

/// Resources as written in the configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    #[serde(default)]
    pub scalars: BTreeMap<String, f64>,
    #[serde(default)]
    pub sets: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub ranges: BTreeMap<String, Vec<(u64, u64)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `error`, not `source`: the text already holds it, and a chained source would be
    // printed twice by `{:#}`.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is larger than {CONFIG_BYTES_MAX} bytes")]
    TooLarge { path: PathBuf },
    // `error`, not `source`: see `Read`.
    #[error("{path}: {error}")]
    Parse { path: PathBuf, error: ParseError },
}

/// Why a configuration's text is refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Resources(#[from] ResourceConfigError),
}

/// Why resources as written are refused.
#[derive(Debug, thiserror::Error)]
pub enum ResourceConfigError {
    #[error("resource {name} = {units} is not a non-negative amount")]
    NotAmount { name: String, units: f64 },
    /// `reason` is `RangeSet::from_intervals`' message.
    #[error("resource {name}: {reason}")]
    Range { name: String, reason: String },
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let read_err = |error| ConfigError::Read {
            path: path.to_owned(),
            error,
        };
        // Read through a cap, not checked by size first: a device (`/dev/zero`) has none.
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(CONFIG_BYTES_MAX + 1).read_to_string(&mut text))
            .map_err(read_err)?;
        if text.len() as u64 > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
            });
        }
        AgentConfig::parse(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error,
        })
    }

    pub fn parse(text: &str) -> Result<AgentConfig, ParseError> {
        let config: AgentConfig = toml::from_str(text)?;
        config.resources.to_resources()?;
        config.reserved.to_resources()?;
        Ok(config)
    }
}

impl ResourceConfig {
    /// The resources written; an error names a negative amount or a backwards range.
    pub fn to_resources(&self) -> Result<Resources, ResourceConfigError> {
        let mut r = Resources::new();
        for (name, units) in &self.scalars {
            let amount =
                Scalar::from_units(*units).ok_or_else(|| ResourceConfigError::NotAmount {
                    name: name.clone(),
                    units: *units,
                })?;
            r.set_scalar(name, amount);
        }
        for (name, items) in &self.sets {
            r.sets
                .entry(name.as_str().into())
                .or_default()
                .extend(items.iter().cloned());
        }
        for (name, intervals) in &self.ranges {
            let set = RangeSet::from_intervals(intervals.iter().copied()).map_err(|reason| {
                ResourceConfigError::Range {
                    name: name.clone(),
                    reason: reason.to_string(),
                }
            })?;
            r.ranges.insert(name.as_str().into(), set);
        }
        Ok(r)
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../agent.example.toml");
        let config = AgentConfig::parse(text).unwrap();
        assert_eq!(config.agent_id.as_deref(), Some("dock-3-pi"));
        assert!(config.attributes.has("has", "relay"));
        assert_eq!(config.reserved.scalars.get("mem"), Some(&256.0));
        assert_eq!(
            config
                .resources
                .to_resources()
                .unwrap()
                .ranges
                .get("ports")
                .unwrap()
                .count(),
            1001
        );
    }

    #[test]
    fn unknown_keys_and_negative_amounts_are_refused() {
        assert!(AgentConfig::parse("agentid = \"x\"").is_err());
        assert!(AgentConfig::parse("[resources.scalars]\nmem = -1").is_err());
        assert_eq!(AgentConfig::parse("").unwrap(), AgentConfig::default());
    }

    #[test]
    fn trusted_keys_are_a_list_of_paths() {
        let config = AgentConfig::parse("trust = [\"/etc/wasmos/a.pub\", \"b.pub\"]").unwrap();
        assert_eq!(
            config.trust,
            [PathBuf::from("/etc/wasmos/a.pub"), PathBuf::from("b.pub")]
        );
    }
}
