//! An owner's profile: the device credential for one node plus which node and
//! manager it belongs to. Kept in `$LNSWARM_HOME/profiles/<name>` (default
//! `~/.lnswarm`), or wherever `--profile-dir` says, with the key at mode 0600.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use lnswarm_common::{credentials::Credentials, json_file};
use serde::{Deserialize, Serialize};

#[derive(Args, Clone, Debug)]
pub struct ProfileArgs {
    /// Profile name under $LNSWARM_HOME/profiles.
    #[arg(
        long,
        global = true,
        default_value = "default",
        env = "LNSWARM_PROFILE"
    )]
    pub profile: String,
    /// Use this directory as the profile instead.
    #[arg(long, global = true, env = "LNSWARM_PROFILE_DIR")]
    pub profile_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileInfo {
    pub node_id: String,
    pub device: String,
    pub manager: String,
    pub network: String,
}

impl ProfileArgs {
    pub fn dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.profile_dir {
            return Ok(dir.clone());
        }
        let home = match std::env::var_os("LNSWARM_HOME") {
            Some(h) => PathBuf::from(h),
            None => PathBuf::from(
                std::env::var_os("HOME").context("HOME is not set; pass --profile-dir")?,
            )
            .join(".lnswarm"),
        };
        Ok(home.join("profiles").join(&self.profile))
    }

    /// The flag that names this profile, for the commands a hint suggests
    /// (" --profile-dir D" or " --profile P"; empty for the default profile).
    pub fn flag(&self) -> String {
        match &self.profile_dir {
            Some(dir) => format!(" --profile-dir {}", dir.display()),
            None if self.profile != "default" => format!(" --profile {}", self.profile),
            None => String::new(),
        }
    }

    pub fn load(&self) -> Result<(ProfileInfo, Credentials)> {
        let dir = self.dir()?;
        let info = read_info(&dir, &self.flag())?;
        let creds = Credentials::load(&dir)?;
        Ok((info, creds))
    }
}

fn read_info(dir: &Path, flag: &str) -> Result<ProfileInfo> {
    json_file::read(
        &dir.join("profile.json"),
        &format!("no profile here; run `lnswarmctl{flag} node register` first"),
    )
}

pub fn save(dir: &Path, info: &ProfileInfo, creds: &Credentials) -> Result<()> {
    creds.save(dir)?;
    json_file::write_atomic(&dir.join("profile.json"), info)
}
