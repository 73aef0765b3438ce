//! `key` and `benchmark` commands through the real binary, without a terminal.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fs::create_dir_all(env.config_home()).unwrap();
        fs::create_dir_all(env.config_dirs()).unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_home(&self) -> PathBuf {
        self.path("config")
    }

    fn config_dirs(&self) -> PathBuf {
        self.path("xdg-system")
    }

    fn default_key(&self) -> PathBuf {
        self.config_home()
            .join("proxmox-backup/encryption-key.json")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_proxmox-backup-client"))
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_CONFIG_DIRS", self.config_dirs())
            .env("TZ", "UTC")
            .env_remove("PBS_ENCRYPTION_PASSWORD")
            .env_remove("PBS_REPOSITORY")
            .env_remove("PROXMOX_OUTPUT_FORMAT")
            .env_remove("PROXMOX_OUTPUT_NO_BORDER")
            .env_remove("PROXMOX_OUTPUT_NO_HEADER")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let output = self.run(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?} failed: {stderr}");
        (stdout, stderr)
    }

    /// Runs a command that must fail with exit status 255; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(255), "{args:?}: {stderr}");
        stderr
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn create_and_show_unprotected_key() {
    let env = Env::new();
    let key_path = env.path("my.key");
    let key = path_str(&key_path);
    env.ok(&["key", "create", key, "--kdf", "none"]);
    let mode = fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let config: Value = serde_json::from_str(&fs::read_to_string(&key_path).unwrap()).unwrap();
    assert!(config["kdf"].is_null());
    assert_eq!(config["data"].as_str().unwrap().len(), 44);

    let err = env.fails(&["key", "create", key, "--kdf", "none"]);
    assert!(
        err.starts_with(&format!("Error: Unable to store key file {key_path:?} - ")),
        "{err}"
    );

    let (out, _) = env.ok(&["key", "show", key, "--output-format", "json"]);
    assert!(out.starts_with("{\"path\":\""), "{out}");
    assert!(out.contains(",\"kdf\":\"none\",\"created\":"), "{out}");
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["path"], format!("{key_path:?}"));
    assert_eq!(info["kdf"], "none");
    let epoch = |v: &Value| pbs_api_types::time::parse_rfc3339(v.as_str().unwrap()).unwrap();
    assert_eq!(info["created"], epoch(&config["created"]));
    assert_eq!(info["modified"], epoch(&config["modified"]));
    assert_eq!(info["fingerprint"], config["fingerprint"]);
    assert!(info.get("hint").is_none());

    let (out, _) = env.ok(&["key", "show", key]);
    let rows: Vec<&str> = out
        .lines()
        .filter_map(|line| line.strip_prefix("│ "))
        .map(|line| line.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(
        rows,
        ["Name", "path", "kdf", "created", "modified", "fingerprint"]
    );
    assert!(out.contains(&format!("│ {key_path:?}")), "{out}");
    assert!(
        out.contains(config["fingerprint"].as_str().unwrap()),
        "{out}"
    );
}

#[test]
fn default_key_location_and_lookup() {
    let env = Env::new();
    let err = env.fails(&["key", "show"]);
    assert_eq!(
        err,
        "Error: no encryption file provided and no default file found\n"
    );

    // A system-wide default key is found through XDG_CONFIG_DIRS.
    let system_key = env.config_dirs().join("proxmox-backup/encryption-key.json");
    fs::create_dir_all(system_key.parent().unwrap()).unwrap();
    env.ok(&["key", "create", path_str(&system_key), "--kdf", "none"]);
    let (out, _) = env.ok(&["key", "show", "--output-format", "json"]);
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["path"], format!("{system_key:?}"));

    let (_, err) = env.ok(&["key", "create", "--kdf", "none"]);
    assert_eq!(
        err,
        format!("creating default key at: {:?}\n", env.default_key())
    );
    assert!(env.default_key().exists());
    let (out, _) = env.ok(&["key", "show", "--output-format", "json"]);
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["path"], format!("{:?}", env.default_key()));

    let err = env.fails(&[
        "key",
        "import-with-master-key",
        "--master-keyfile",
        "m.pem",
        "--encrypted-keyfile",
        "e.key",
    ]);
    assert_eq!(
        err,
        format!(
            "Error: Please remove default encryption key at {:?} before importing to default location (or choose a non-default one).\n",
            env.default_key()
        )
    );
}

#[test]
fn terminal_and_parameter_errors() {
    let env = Env::new();
    let key = env.path("k.json");
    let key = path_str(&key);
    assert_eq!(
        env.fails(&["key", "create", key]),
        "Error: unable to read passphrase - no tty\n"
    );
    assert_eq!(
        env.fails(&["key", "create", key, "--kdf", "pbkdf2"]),
        "Error: unable to read passphrase - no tty\n"
    );
    assert_eq!(
        env.fails(&["key", "create", key, "--kdf", "none", "--hint", "h"]),
        "Error: password hint not allowed for Kdf::None\n"
    );
    assert!(!Path::new(key).exists());
    assert_eq!(
        env.fails(&["key", "create-master-key"]),
        "Error: unable to create master key - no tty\n"
    );
    assert_eq!(
        env.fails(&["key", "change-passphrase"]),
        "Error: no encryption file provided and no default file found\n"
    );
    env.ok(&["key", "create", key, "--kdf", "none"]);
    assert_eq!(
        env.fails(&["key", "change-passphrase", key]),
        "Error: unable to change passphrase - no tty\n"
    );
}

#[test]
fn paperkey_outputs() {
    let env = Env::new();
    let key_path = env.path("paper.json");
    let key = path_str(&key_path);
    env.ok(&["key", "create", key, "--kdf", "none"]);
    let (text, _) = env.ok(&[
        "key",
        "paperkey",
        key,
        "--output-format",
        "text",
        "--subject",
        "My Key",
    ]);
    assert!(text.starts_with("Subject: My Key\n"), "{text}");
    assert!(
        text.contains("-----BEGIN PROXMOX BACKUP KEY-----\n"),
        "{text}"
    );
    assert!(
        text.contains("-----END PROXMOX BACKUP KEY-----\n"),
        "{text}"
    );
    let config: Value = serde_json::from_str(&fs::read_to_string(&key_path).unwrap()).unwrap();
    assert!(text.contains(config["data"].as_str().unwrap()), "{text}");

    let (html, _) = env.ok(&["key", "paperkey", key]);
    assert!(html.starts_with("<!DOCTYPE html>\n"), "{html}");
    assert!(html.contains("<img"), "{html}");
    assert!(html.contains(config["data"].as_str().unwrap()), "{html}");

    let garbage = env.path("garbage.txt");
    fs::write(&garbage, "not a key\n").unwrap();
    assert_eq!(
        env.fails(&["key", "paperkey", path_str(&garbage)]),
        "Error: Neither a PEM-formatted private key, nor a PBS key file.\n"
    );
}

#[test]
fn master_public_key_import_and_show() {
    let env = Env::new();
    assert_eq!(
        env.fails(&["key", "show-master-pubkey"]),
        "Error: No path specified and no default master key available.\n"
    );
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pem = rsa.public_key_to_pem().unwrap();
    let pem_path = env.path("pub.pem");
    fs::write(&pem_path, &pem).unwrap();
    let modulus = rsa.n().to_hex_str().unwrap().to_string();

    let (_, err) = env.ok(&["key", "import-master-pubkey", path_str(&pem_path)]);
    let target = env.config_home().join("proxmox-backup/master-public.pem");
    assert_eq!(
        err,
        format!(
            "Found following key at {:?}\nModulus: {modulus}\nExponent: 65537\nLength: 2048\nImported public master key to {target:?}\n",
            path_str(&pem_path)
        )
    );
    assert_eq!(fs::read(&target).unwrap(), pem);

    let (out, _) = env.ok(&["key", "show-master-pubkey", "--output-format", "json"]);
    assert!(out.starts_with("{\"path\":"), "{out}");
    assert!(out.contains(",\"modulus\":"), "{out}");
    let info: Value = serde_json::from_str(&out).unwrap();
    let canonical = fs::canonicalize(&target).unwrap();
    assert_eq!(info["path"], path_str(&canonical));
    assert_eq!(info["modulus"], modulus);
    assert_eq!(info["exponent"], "65537");
    assert_eq!(info["length"], 2048);

    let (out, _) = env.ok(&["key", "show-master-pubkey", path_str(&pem_path)]);
    let rows: Vec<&str> = out
        .lines()
        .filter_map(|line| line.strip_prefix("│ "))
        .map(|line| line.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(rows, ["Name", "path", "modulus", "exponent", "length"]);

    let bad = env.path("bad.pem");
    fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let err = env.fails(&["key", "import-master-pubkey", path_str(&bad)]);
    assert!(
        err.starts_with("Error: Unable to decode PEM data - "),
        "{err}"
    );
}

#[test]
fn benchmark_json_shape() {
    let env = Env::new();
    let (out, err) = env.ok(&["benchmark", "--output-format", "json"]);
    let result: Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&str> = result
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "tls",
        "sha256",
        "compress",
        "decompress",
        "aes256_gcm",
        "verify",
    ];
    let mut sorted_keys = keys.clone();
    sorted_keys.sort();
    expected.sort();
    assert_eq!(sorted_keys, expected);
    assert!(
        out.starts_with("{\"tls\":{\"top\":1235000000.0},\"sha256\":{\"speed\":"),
        "{out}"
    );
    assert!(result["tls"].get("speed").is_none());
    for (name, top) in [
        ("sha256", 2022e6),
        ("compress", 752e6),
        ("decompress", 1198e6),
        ("aes256_gcm", 3645e6),
        ("verify", 758e6),
    ] {
        assert!(result[name]["speed"].as_f64().unwrap() > 0.0, "{name}");
        assert_eq!(result[name]["top"].as_f64().unwrap(), top, "{name}");
    }
    for label in [
        "SHA256",
        "Compression",
        "Decompress",
        "AES256/GCM",
        "Verify",
    ] {
        assert!(err.contains(&format!("{label} speed: ")), "{err}");
    }
}
