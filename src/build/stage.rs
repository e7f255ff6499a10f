//! One stage's state while it is built: its image config, its layers, the ARGs in scope and a
//! lazily built [`LowerFs`] (only steps that read the filesystem pay for indexing the base
//! layers).
//!
//! Variable lookups follow Docker: ENV takes precedence over an ARG of the same name.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::dockerfile::shell::{self, ExpandError};
use crate::image::Platform;
use crate::image::config::{ImageConfig, RuntimeConfig};
use crate::layer::{Diff, Layer};
use crate::rootfs::{LowerFs, RootfsError};
use crate::store::Store;

/// A filesystem operation not yet applied to the stage's LowerFs.
#[derive(Clone)]
pub(super) enum PendingFs {
    Blob(Layer),
    Diff(Box<Diff>),
}

/// One stage's state while it is built, and its result afterwards.
#[derive(Clone)]
pub(super) struct StageState {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// How many of `layers` the stage started with (its FROM's): the sandbox keeps those
    /// unpacked between builds.
    pub base_layers: usize,
    fs: Option<LowerFs>,
    /// Layers and Diffs not yet applied to `fs`.
    pub(super) pending: Vec<PendingFs>,
    /// The ARGs in scope, with their values (`None`: declared without one).
    pub(super) args: BTreeMap<String, Option<String>>,
    /// A CMD was set in this stage (an ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
    /// What shell-form commands run with (SHELL, default `/bin/sh -c`).
    pub(super) shell: Vec<String>,
    env_index: EnvIndex,
}

/// Where each name sits in the config's `Env` list, so that setting or reading a variable
/// does not scan the list (a scan made 100,000 ENV lines quadratic). Built on first use and
/// kept up to date by [`StageState::set_env`]; an answer is trusted only while the list has
/// the length it was indexed at and the entry found still carries the name, otherwise the
/// list is scanned (and re-indexed on the next write).
#[derive(Clone, Default)]
struct EnvIndex {
    positions: HashMap<String, usize>,
    indexed_len: usize,
}

impl EnvIndex {
    fn rebuild(&mut self, env: &[String]) {
        self.positions.clear();
        for (position, kv) in env.iter().enumerate() {
            let name = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            // The last of duplicate names wins, as when the list is read into an environment.
            self.positions.insert(name.to_owned(), position);
        }
        self.indexed_len = env.len();
    }

    /// `Some(position)` of `name`, `Some(None)` when it is known to be absent, `None` when
    /// the index cannot tell.
    fn find(&self, env: &[String], name: &str) -> Option<Option<usize>> {
        if self.indexed_len != env.len() {
            return None;
        }
        match self.positions.get(name) {
            None => Some(None),
            Some(&position) => env
                .get(position)
                .filter(|kv| env_value_of(kv, name).is_some())
                .map(|_| Some(position)),
        }
    }
}

/// The value in `NAME=value` when the entry is for `name`.
fn env_value_of<'a>(kv: &'a str, name: &str) -> Option<&'a str> {
    kv.split_once('=')
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl StageState {
    /// The state of a stage that starts from a loaded base image: its config and layers.
    pub(super) fn from_base(config: ImageConfig, layers: Vec<Layer>) -> StageState {
        let shell = config.config.shell.clone().unwrap_or_else(default_shell);
        StageState {
            pending: layers.iter().cloned().map(PendingFs::Blob).collect(),
            base_layers: layers.len(),
            layers,
            config,
            fs: None,
            args: BTreeMap::new(),
            cmd_set: false,
            shell,
            env_index: EnvIndex::default(),
        }
    }

    /// The same state for another executor: its filesystem is indexed again from the stored
    /// layers when read, since the indexed one may name files in this executor's scratch
    /// directory, which goes when this executor does.
    pub(super) fn detached(&self) -> StageState {
        StageState {
            fs: None,
            pending: self.layers.iter().cloned().map(PendingFs::Blob).collect(),
            ..self.clone()
        }
    }

    /// `word` with the variables in scope substituted (`escape` is the Dockerfile's).
    pub(super) fn expand(&self, word: &str, escape: char) -> Result<String, ExpandError> {
        shell::expand_word(word, &|name| self.lookup(name), escape)
    }

    /// The platform the stage's config says.
    pub(super) fn platform(&self) -> Platform {
        Platform::new(
            &self.config.os,
            &self.config.architecture,
            self.config.variant.as_deref(),
        )
    }

    /// The platform the stage's config says, spelled as there (no alias normalized).
    pub(super) fn platform_as_written(&self) -> Platform {
        Platform {
            architecture: self.config.architecture.clone(),
            os: self.config.os.clone(),
            variant: self.config.variant.clone(),
            os_version: None,
            os_features: None,
        }
    }

    pub(super) fn env_value(&self, name: &str) -> Option<String> {
        let env = self.config.config.env.as_ref()?;
        match self.env_index.find(env, name) {
            Some(found) => found.and_then(|position| env_value_of(&env[position], name)),
            None => env.iter().rev().find_map(|kv| env_value_of(kv, name)),
        }
        .map(str::to_owned)
    }

    pub(super) fn lookup(&self, name: &str) -> Option<String> {
        if let Some(value) = self.env_value(name) {
            return Some(value);
        }
        self.args.get(name).cloned().flatten()
    }

    /// What a RUN sees: the ARGs in scope, overridden by ENV.
    pub(super) fn environment(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for kv in self.config.config.env.iter().flatten() {
            if let Some((key, value)) = kv.split_once('=') {
                env.insert(key.to_owned(), value.to_owned());
            }
        }
        env
    }

    pub(super) fn set_env(&mut self, key: String, value: String) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        let found = match self.env_index.find(env, &key) {
            Some(found) => found,
            None => {
                self.env_index.rebuild(env);
                self.env_index.find(env, &key).flatten()
            }
        };
        match found {
            Some(position) => env[position] = entry,
            None => {
                self.env_index.positions.insert(key, env.len());
                env.push(entry);
                self.env_index.indexed_len = env.len();
            }
        }
    }

    pub(super) fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    pub(super) fn fs(&mut self, store: &Store, scratch: &Path) -> Result<&LowerFs, RootfsError> {
        let fs = self
            .fs
            .get_or_insert_with(|| LowerFs::with_scratch_dir(scratch));
        for pending in self.pending.drain(..) {
            match pending {
                PendingFs::Blob(layer) => fs.push_layer_blob(store, &layer)?,
                PendingFs::Diff(diff) => fs.push_diff(&diff)?,
            }
        }
        Ok(fs)
    }

    pub(super) fn push_diff(&mut self, diff: Diff) -> Result<(), RootfsError> {
        match &mut self.fs {
            Some(fs) if self.pending.is_empty() => fs.push_diff(&diff),
            _ => {
                self.pending.push(PendingFs::Diff(Box::new(diff)));
                Ok(())
            }
        }
    }
}

pub(super) fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_owned(), "-c".to_owned()]
}

/// A stage's state on `FROM scratch` (or a directory context): no layers, Docker's default
/// PATH, the platform's os and architecture.
pub(super) fn scratch_state(platform: Platform) -> StageState {
    StageState {
        config: ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            config: RuntimeConfig {
                env: Some(vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                ]),
                ..RuntimeConfig::default()
            },
            ..ImageConfig::default()
        },
        layers: Vec::new(),
        base_layers: 0,
        fs: None,
        pending: Vec::new(),
        args: BTreeMap::new(),
        cmd_set: false,
        shell: default_shell(),
        env_index: EnvIndex::default(),
    }
}
