//! The model store: registered model versions (fine-tuned by `FineTuneWorkflow`), each a
//! directory `<root>/<name>/` holding the base model's files (hard links where the file
//! system allows, copies otherwise), its `adapter.safetensors` and a manifest
//! (`vecstream-model.json`). The engine loads such a directory like any model directory;
//! [`ModelStore::resolve`] turns a directory, a version name or a model id into one, so
//! `vecstream embed --model <model id>` and a reindex to it both work.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use vecstream_engine::EngineError;
use vecstream_engine::adapter::{ADAPTER_FILE, Adapter};
use vecstream_engine::tensor_io::write_atomic;

/// The manifest of a registered version.
pub const MANIFEST_FILE: &str = "vecstream-model.json";
/// Where candidates are assembled before registration (same file system: a rename
/// registers them).
const STAGING: &str = ".staging";

/// What a registered version is and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Directory name in the store.
    pub name: String,
    /// The engine's model id of the version (base weights + adapter).
    pub model_id: String,
    pub base_model_id: String,
    pub base_dir: String,
    /// The job that produced it (a workflow id).
    pub job: String,
    pub created_ms: i64,
    /// Who approved it.
    #[serde(default)]
    pub reviewer: Option<String>,
    /// Fingerprint (`SHA256:...`) of the key that signed the approval: the reviewer's name
    /// is what the workers' trusted keys call that key.
    #[serde(default)]
    pub reviewer_key: Option<String>,
    /// Training settings and results, as the job reported them.
    #[serde(default)]
    pub training: serde_json::Value,
    /// The evaluation report the reviewer saw.
    #[serde(default)]
    pub evaluation: serde_json::Value,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

fn store_err(path: &Path, message: impl std::fmt::Display) -> EngineError {
    EngineError::Model {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// Hard-links (or copies) every file of `from` into `to`, recursively, except an adapter
/// or manifest of `from`'s own.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ADAPTER_FILE || name == MANIFEST_FILE {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

impl ModelStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Registered versions, by name.
    pub fn list(&self) -> Vec<Manifest> {
        let mut out: Vec<Manifest> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.ok()?.path().join(MANIFEST_FILE)).ok()?;
                serde_json::from_str(&text).ok()
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A model directory for `model`: a directory (with config.json) as it is, else a
    /// version name of the store, else a registered model id.
    pub fn resolve(&self, model: &str) -> Result<PathBuf, EngineError> {
        let path = Path::new(model);
        if path.join("config.json").exists() {
            return Ok(path.to_path_buf());
        }
        if let Ok(name) = vecstream_core::path_component(model) {
            let named = self.root.join(name);
            if named.join("config.json").exists() {
                return Ok(named);
            }
        }
        let versions = self.list();
        if let Some(m) = versions.iter().find(|m| m.model_id == model) {
            return Ok(self.root.join(&m.name));
        }
        let known: Vec<&str> = versions.iter().map(|m| m.model_id.as_str()).collect();
        Err(store_err(
            path,
            format!(
                "not a model directory, and no version of the model store {} has this name or \
                 model id (registered: {})",
                self.root.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }

    /// Assembles candidate `name` (the base model's files plus `adapter`) in the staging
    /// area, replacing an earlier attempt; returns its directory. Idempotent.
    pub fn stage(
        &self,
        name: &str,
        base_dir: &Path,
        adapter: &Adapter,
    ) -> Result<PathBuf, EngineError> {
        let dir = self.root.join(STAGING).join(self.component(name)?);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| EngineError::io(&dir, &e))?;
        }
        link_tree(base_dir, &dir).map_err(|e| EngineError::io(&dir, &e))?;
        adapter.save(&dir).map_err(|e| EngineError::io(&dir, &e))?;
        Ok(dir)
    }

    /// Moves staged candidate `manifest.name` into the store with its manifest; returns its
    /// directory. Idempotent: a version already registered under the same model id is kept.
    pub fn register(&self, manifest: &Manifest) -> Result<PathBuf, EngineError> {
        let name = self.component(&manifest.name)?;
        let dest = self.root.join(name);
        let staged = self.root.join(STAGING).join(name);
        if let Ok(text) = std::fs::read_to_string(dest.join(MANIFEST_FILE)) {
            let existing: Manifest =
                serde_json::from_str(&text).map_err(|e| store_err(&dest, e))?;
            if existing.model_id == manifest.model_id {
                return Ok(dest);
            }
            return Err(store_err(
                &dest,
                format!("already holds model {}", existing.model_id),
            ));
        }
        if !dest.exists() {
            std::fs::rename(&staged, &dest).map_err(|e| EngineError::io(&staged, &e))?;
        }
        let body = serde_json::to_vec_pretty(manifest).map_err(|e| store_err(&dest, e))?;
        let path = dest.join(MANIFEST_FILE);
        write_atomic(&path, &body).map_err(|e| EngineError::io(&path, &e))?;
        Ok(dest)
    }

    /// `name` as a directory name of the store: one plain component (a `../` in a version
    /// name would write outside the store).
    fn component<'a>(&self, name: &'a str) -> Result<&'a str, EngineError> {
        vecstream_core::path_component(name).map_err(|m| store_err(&self.root, m))
    }

    /// Removes a staged candidate (after a rejection).
    pub fn discard(&self, name: &str) -> Result<(), EngineError> {
        let dir = self.root.join(STAGING).join(self.component(name)?);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| EngineError::io(&dir, &e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_version_registers_and_resolves_by_name_and_id() {
        let tmp = std::env::temp_dir().join(format!("vecstream-store-{}", std::process::id()));
        let base = tmp.join("base");
        std::fs::create_dir_all(base.join("1_Pooling")).unwrap();
        std::fs::write(base.join("config.json"), "{}").unwrap();
        std::fs::write(base.join("1_Pooling/config.json"), "{}").unwrap();
        let store = ModelStore::new(tmp.join("store"));
        assert!(store.resolve("nope").is_err());
        let staged = store.stage("m-ft-1", &base, &Adapter::identity(2)).unwrap();
        assert!(staged.join("1_Pooling/config.json").exists());
        assert!(staged.join(ADAPTER_FILE).exists());
        let manifest = Manifest {
            name: "m-ft-1".into(),
            model_id: "m-ft-1-abcd1234".into(),
            base_model_id: "m-00000000".into(),
            base_dir: base.display().to_string(),
            job: "finetune-x".into(),
            created_ms: 1,
            reviewer: Some("ops".into()),
            reviewer_key: Some("SHA256:x".into()),
            training: serde_json::Value::Null,
            evaluation: serde_json::Value::Null,
        };
        let dir = store.register(&manifest).unwrap();
        assert_eq!(store.register(&manifest).unwrap(), dir, "idempotent");
        assert_eq!(store.resolve("m-ft-1-abcd1234").unwrap(), dir);
        assert_eq!(store.resolve("m-ft-1").unwrap(), dir);
        assert_eq!(store.resolve(base.to_str().unwrap()).unwrap(), base);
        assert_eq!(store.list(), vec![manifest]);
        let err = store.resolve("other").unwrap_err().to_string();
        assert!(err.contains("m-ft-1-abcd1234"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn version_names_cannot_leave_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ModelStore::new(tmp.path().join("store"));
        std::fs::create_dir_all(tmp.path().join("store")).unwrap();
        // A model directory right outside the store: `..` must not resolve to it.
        std::fs::write(tmp.path().join("config.json"), "{}").unwrap();
        assert!(store.resolve("..").is_err());
        assert!(store.discard("../../victim").is_err());
        let manifest = Manifest {
            name: "../escaped".into(),
            model_id: "m".into(),
            base_model_id: "b".into(),
            base_dir: String::new(),
            job: "j".into(),
            created_ms: 0,
            reviewer: None,
            reviewer_key: None,
            training: serde_json::Value::Null,
            evaluation: serde_json::Value::Null,
        };
        let err = store.register(&manifest).unwrap_err().to_string();
        assert!(err.contains("cannot name a directory"), "{err}");
    }
}
