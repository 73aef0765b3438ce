//! Prepares a development instance under `PBS_BASE_DIR` (used by `scripts/run-dev.sh`).
//!
//! Usage: `dev-setup <datastore dir> <password file>`; prints `fingerprint <fp>` and, when a
//! new password was generated, `new-password <password>`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, password_file] = args.as_slice() else {
        eprintln!("usage: dev-setup <datastore dir> <password file>");
        std::process::exit(2);
    };
    match proxmox_backup::server::dev_setup::setup_dev_instance(
        std::path::Path::new(store),
        std::path::Path::new(password_file),
    ) {
        Ok(instance) => {
            println!("fingerprint {}", instance.fingerprint);
            if instance.new_password {
                println!("new-password {}", instance.password);
            }
        }
        Err(err) => {
            eprintln!("dev-setup: {err:#}");
            std::process::exit(1);
        }
    }
}
