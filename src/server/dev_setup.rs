//! One-time set-up of a development instance (`make run`): start-up files, datastore
//! `store1`, user `admin@pbs` with a random password and the `Admin` role on `/`. Every step
//! is skipped when already done, so running it again reuses the state.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Error};

use pbs_api_types::{Authid, Userid};
use pbs_config::datastore::DataStoreConfig;
use pbs_config::user::{User, USER_TYPE};

/// The administrator of a development instance.
pub const DEV_USER: &str = "admin@pbs";
/// The datastore of a development instance.
pub const DEV_STORE: &str = "store1";

/// What [`setup_dev_instance`] found or created.
pub struct DevInstance {
    /// The password of [`DEV_USER`], newly generated or read back.
    pub password: String,
    /// Whether the password was generated in this run.
    pub new_password: bool,
    /// Fingerprint of the proxy certificate.
    pub fingerprint: String,
}

fn random_password() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("unable to read random bytes")?;
    Ok(hex::encode(bytes))
}

fn ensure_user(userid: &Userid) -> Result<(), Error> {
    let _lock = pbs_config::user::lock_config()?;
    let (mut config, _) = pbs_config::user::config()?;
    if !config.contains(userid.as_str()) {
        let mut user = User::new(userid.clone());
        user.comment = Some("development administrator".to_string());
        config.set_data(userid.as_str(), USER_TYPE, &user)?;
        pbs_config::user::save_config(&config)?;
    }
    Ok(())
}

fn ensure_admin_acl(userid: &Userid) -> Result<(), Error> {
    let _lock = pbs_config::acl::lock_config()?;
    let (mut tree, _) = pbs_config::acl::config()?;
    let auth_id = Authid::from(userid.clone());
    tree.insert_user_role("/", &auth_id, pbs_config::privileges::ROLE_ADMIN, true);
    pbs_config::acl::save_config(&tree)
}

fn ensure_password(userid: &Userid, password_file: &Path) -> Result<(String, bool), Error> {
    if let Ok(password) = std::fs::read_to_string(password_file) {
        let password = password.trim_end().to_string();
        if !password.is_empty() {
            return Ok((password, false));
        }
    }
    let password = random_password()?;
    pbs_config::shadow::store_password(userid.name(), &password)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(password_file)
        .with_context(|| format!("unable to write {password_file:?}"))?;
    writeln!(file, "{password}")?;
    Ok((password, true))
}

fn ensure_datastore(path: &Path) -> Result<(), Error> {
    let _lock = pbs_config::datastore::lock_config()?;
    let (mut config, _) = pbs_config::datastore::config()?;
    if config.contains(DEV_STORE) {
        return Ok(());
    }
    let path = std::path::absolute(path)?;
    if !path.join(".chunks").is_dir() {
        std::fs::create_dir_all(&path)
            .with_context(|| format!("unable to create datastore directory {path:?}"))?;
        pbs_datastore::DataStore::create(
            DEV_STORE,
            &path,
            pbs_buildcfg::datastore_lock_dir(),
            Default::default(),
            &|_| {},
        )?;
    }
    let entry = DataStoreConfig::new(DEV_STORE.to_string(), path.to_string_lossy().into_owned());
    config.set_data(DEV_STORE, "datastore", &entry)?;
    pbs_config::datastore::save_config(&config)
}

/// Prepares the instance under `PBS_BASE_DIR`.
pub fn setup_dev_instance(datastore: &Path, password_file: &Path) -> Result<DevInstance, Error> {
    super::layout::prepare_api_daemon()?;
    let userid: Userid = DEV_USER.parse()?;
    ensure_user(&userid)?;
    let (password, new_password) = ensure_password(&userid, password_file)?;
    ensure_admin_acl(&userid)?;
    ensure_datastore(datastore)?;
    let fingerprint = pbs_auth::tls::cert_file_fingerprint(&pbs_auth::tls::proxy_cert_path())?;
    Ok(DevInstance {
        password,
        new_password,
        fingerprint,
    })
}
