//! Checkpoints written atomically: a crash at any moment leaves either the previous checkpoint
//! or the new one, never a half-written one.
//!
//! Layout of a checkpoint folder `root/`:
//!
//! ```text
//! root/step-00001000/model.bpk      burnpack record of the model
//! root/step-00001000/optimizer.bpk  burnpack record of the optimiser state
//! root/step-00001000/ema.bpk        burnpack record of the EMA weights (if any)
//! root/step-00001000/state.json     trainer state (step, EMA updates, config)
//! root/latest                       the name of the newest complete checkpoint
//! ```
//!
//! A checkpoint is written into a hidden temporary folder, every file is flushed to disk, and
//! the folder is renamed into place; then `latest` is replaced by writing a temporary file and
//! renaming it (rename is atomic on POSIX file systems).

use burn::module::Module;
use burn::store::ModuleRecord;
use flowforge_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// What the trainer stores besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed.
    pub step: usize,
    /// EMA updates folded in (None without EMA).
    pub ema_updates: Option<usize>,
    /// The trainer configuration the run used, as JSON.
    pub config: serde_json::Value,
}

fn fail(path: &Path, reason: impl ToString) -> Error {
    Error::Checkpoint { path: path.display().to_string(), reason: reason.to_string() }
}

fn sync_file(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(|e| fail(path, e))
}

fn sync_dir(path: &Path) -> Result<()> {
    // Directory fsync makes the rename durable; not supported everywhere, so best effort.
    if let Ok(dir) = fs::File::open(path) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The name of the checkpoint folder of `step`.
pub fn step_dir_name(step: usize) -> String {
    format!("step-{step:08}")
}

/// Write a checkpoint of `step` under `root` and keep the newest `keep` checkpoints.
///
/// # Errors
/// [`Error::Checkpoint`] naming the path that could not be written.
pub fn write(
    root: &Path,
    step: usize,
    model: ModuleRecord,
    optimizer: &burn::optim::ModuleOptimizer,
    ema: Option<ModuleRecord>,
    state: &TrainerState,
    keep: usize,
) -> Result<PathBuf> {
    fs::create_dir_all(root).map_err(|e| fail(root, e))?;
    let final_dir = root.join(step_dir_name(step));
    let tmp = root.join(format!(".{}.tmp-{}", step_dir_name(step), std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| fail(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| fail(&tmp, e))?;
    let model_path = tmp.join("model.bpk");
    model.save(&model_path).map_err(|e| fail(&model_path, format!("{e:?}")))?;
    let optimizer_path = tmp.join("optimizer.bpk");
    optimizer.save(&optimizer_path).map_err(|e| fail(&optimizer_path, format!("{e:?}")))?;
    let mut files = vec![model_path, optimizer_path];
    if let Some(ema) = ema {
        let ema_path = tmp.join("ema.bpk");
        ema.save(&ema_path).map_err(|e| fail(&ema_path, format!("{e:?}")))?;
        files.push(ema_path);
    }
    let state_path = tmp.join("state.json");
    let json = serde_json::to_vec_pretty(state).map_err(|e| fail(&state_path, e))?;
    fs::write(&state_path, json).map_err(|e| fail(&state_path, e))?;
    files.push(state_path);
    for file in &files {
        sync_file(file)?;
    }
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| fail(&final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir).map_err(|e| fail(&final_dir, e))?;
    sync_dir(root)?;
    let latest_tmp = root.join(format!(".latest.tmp-{}", std::process::id()));
    fs::write(&latest_tmp, step_dir_name(step)).map_err(|e| fail(&latest_tmp, e))?;
    sync_file(&latest_tmp)?;
    fs::rename(&latest_tmp, root.join("latest")).map_err(|e| fail(&root.join("latest"), e))?;
    sync_dir(root)?;
    prune(root, keep.max(1))?;
    Ok(final_dir)
}

fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = fs::read_dir(root)
        .map_err(|e| fail(root, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        fs::remove_dir_all(old).map_err(|e| fail(old, e))?;
    }
    Ok(())
}

/// The newest complete checkpoint under `root`, if any.
///
/// # Errors
/// [`Error::Checkpoint`] if `latest` names a folder that does not exist or cannot be read.
pub fn latest(root: &Path) -> Result<Option<PathBuf>> {
    let pointer = root.join("latest");
    if !pointer.exists() {
        return Ok(None);
    }
    let name = fs::read_to_string(&pointer).map_err(|e| fail(&pointer, e))?;
    let dir = root.join(name.trim());
    if !dir.join("state.json").is_file() {
        return Err(fail(&dir, "`latest` points to an incomplete or missing checkpoint"));
    }
    Ok(Some(dir))
}

/// Read the trainer state of a checkpoint folder.
///
/// # Errors
/// [`Error::Checkpoint`] for a missing or unreadable `state.json`.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join("state.json");
    let text = fs::read_to_string(&path).map_err(|e| fail(&path, e))?;
    serde_json::from_str(&text).map_err(|e| fail(&path, e))
}

/// Load `file` (a burnpack model record) into `model`.
///
/// # Errors
/// [`Error::Checkpoint`] if the file is unreadable or does not match the model's architecture
/// (the reason names the mismatching parameter).
pub fn load_module<M: Module>(model: M, file: &Path) -> Result<M> {
    let record = ModuleRecord::load(file).map_err(|e| fail(file, format!("unreadable: {e:?}")))?;
    model
        .try_load_record(record)
        .map_err(|e| fail(file, format!("does not match the model's architecture: {e:?}")))
}
