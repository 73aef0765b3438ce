//! Password authentication of `pam` realm users through libpam (service
//! `proxmox-backup-auth`).
//!
//! The calls block (PAM modules may sleep after failures); async callers should run them on
//! a blocking thread.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use thiserror::Error;

/// PAM service name used for the `pam` realm.
pub const PAM_SERVICE: &str = "proxmox-backup-auth";
/// Where the daemon expects the service definition.
pub const PAM_SERVICE_FILE: &str = "/etc/pam.d/proxmox-backup-auth";
/// Content of [`PAM_SERVICE_FILE`] as installed by the package: the system's standard
/// authentication, account and password stacks.
pub const PAM_SERVICE_FILE_CONTENT: &str = "\
# PAM configuration of the Proxmox Backup Server 'pam' realm
auth       include      common-auth
account    include      common-account
password   include      common-password
";

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_RHOST: c_int = 4;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_end(pamh: *mut PamHandle, pam_status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_chauthtok(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// Why PAM authentication failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PamError {
    #[error("user name or password contains a NUL byte")]
    NulByte,
    #[error("PAM start failed for service '{service}': {message}")]
    Start { service: String, message: String },
    #[error("PAM failed to set the remote host: {0}")]
    SetRhost(String),
    #[error("authentication failure: {0}")]
    Authenticate(String),
    #[error("account check failed: {0}")]
    AccountManagement(String),
    #[error("password change failed: {0}")]
    ChangeAuthToken(String),
}

/// Data the conversation function answers prompts with.
struct ConvData {
    user: CString,
    password: CString,
}

/// Answers hidden prompts with the password and visible prompts with the user name;
/// informational messages get empty responses.
unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int {
    if num_msg <= 0 || msg.is_null() || resp.is_null() || appdata_ptr.is_null() {
        return PAM_CONV_ERR;
    }
    let count = num_msg as usize;
    // SAFETY: appdata_ptr is the ConvData passed to pam_start, alive during the PAM calls.
    let data = unsafe { &*(appdata_ptr as *const ConvData) };
    // PAM takes ownership of the array and the strings, so both come from the C allocator.
    // SAFETY: plain allocation.
    let replies =
        unsafe { libc::calloc(count, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..count {
        // SAFETY: Linux-PAM passes an array of num_msg message pointers.
        let message = unsafe { *msg.add(i) };
        if message.is_null() {
            continue;
        }
        // SAFETY: non-null message pointer from PAM.
        let answer = match unsafe { (*message).msg_style } {
            PAM_PROMPT_ECHO_OFF => Some(&data.password),
            PAM_PROMPT_ECHO_ON => Some(&data.user),
            _ => None,
        };
        if let Some(answer) = answer {
            // SAFETY: answer is a valid NUL-terminated string.
            let copy = unsafe { libc::strdup(answer.as_ptr()) };
            if copy.is_null() {
                for j in 0..i {
                    // SAFETY: entries before i were filled by strdup or are NULL.
                    unsafe { libc::free((*replies.add(j)).resp as *mut c_void) };
                }
                // SAFETY: allocated by calloc above.
                unsafe { libc::free(replies as *mut c_void) };
                return PAM_BUF_ERR;
            }
            // SAFETY: i < count, inside the calloc'ed array.
            unsafe { (*replies.add(i)).resp = copy };
        }
    }
    // SAFETY: resp is a valid out pointer given by PAM.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

fn pam_error_text(handle: *mut PamHandle, code: c_int) -> String {
    // SAFETY: pam_strerror returns a static string (or NULL) for any code.
    let text = unsafe { pam_strerror(handle, code) };
    if text.is_null() {
        format!("PAM error {code}")
    } else {
        // SAFETY: non-null NUL-terminated string owned by libpam.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Authenticates `user` (the name part of a `...@pam` user id) with `password` against
/// [`PAM_SERVICE`], then runs the account check (expired/locked accounts fail).
pub fn pam_authenticate_user(
    user: &str,
    password: &str,
    rhost: Option<&str>,
) -> Result<(), PamError> {
    pam_authenticate_service(PAM_SERVICE, user, password, rhost)
}

/// [`pam_authenticate_user`] with an explicit PAM service name.
pub fn pam_authenticate_service(
    service: &str,
    user: &str,
    password: &str,
    rhost: Option<&str>,
) -> Result<(), PamError> {
    let c_service = CString::new(service).map_err(|_| PamError::NulByte)?;
    let data = Box::new(ConvData {
        user: CString::new(user).map_err(|_| PamError::NulByte)?,
        password: CString::new(password).map_err(|_| PamError::NulByte)?,
    });
    let c_rhost = rhost
        .map(CString::new)
        .transpose()
        .map_err(|_| PamError::NulByte)?;
    let conv = PamConv {
        conv: Some(conversation),
        appdata_ptr: &*data as *const ConvData as *mut c_void,
    };

    let mut handle: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: all strings are NUL-terminated; conv and data outlive the handle (pam_end below).
    let rc = unsafe { pam_start(c_service.as_ptr(), data.user.as_ptr(), &conv, &mut handle) };
    if rc != PAM_SUCCESS || handle.is_null() {
        return Err(PamError::Start {
            service: service.to_string(),
            message: pam_error_text(handle, rc),
        });
    }

    let result = (|| {
        if let Some(rhost) = &c_rhost {
            // SAFETY: valid handle; PAM copies the string.
            let rc = unsafe { pam_set_item(handle, PAM_RHOST, rhost.as_ptr() as *const c_void) };
            if rc != PAM_SUCCESS {
                return Err((rc, PamError::SetRhost(pam_error_text(handle, rc))));
            }
        }
        // SAFETY: valid handle.
        let rc = unsafe { pam_authenticate(handle, 0) };
        if rc != PAM_SUCCESS {
            return Err((rc, PamError::Authenticate(pam_error_text(handle, rc))));
        }
        // SAFETY: valid handle.
        let rc = unsafe { pam_acct_mgmt(handle, 0) };
        if rc != PAM_SUCCESS {
            return Err((rc, PamError::AccountManagement(pam_error_text(handle, rc))));
        }
        Ok(())
    })();

    let status = match &result {
        Ok(()) => PAM_SUCCESS,
        Err((rc, _)) => *rc,
    };
    // SAFETY: handle came from pam_start and is not used afterwards.
    unsafe { pam_end(handle, status) };
    drop(data);
    result.map_err(|(_, err)| err)
}

/// Sets a new password for `user` through the password stack of [`PAM_SERVICE`]
/// (`pam_chauthtok`). Run as root, the modules do not ask for the old password; every
/// hidden prompt ("New password", "Retype new password") is answered with `new_password`.
pub fn pam_change_password(user: &str, new_password: &str) -> Result<(), PamError> {
    pam_change_password_service(PAM_SERVICE, user, new_password)
}

/// [`pam_change_password`] with an explicit PAM service name.
pub fn pam_change_password_service(
    service: &str,
    user: &str,
    new_password: &str,
) -> Result<(), PamError> {
    let c_service = CString::new(service).map_err(|_| PamError::NulByte)?;
    let data = Box::new(ConvData {
        user: CString::new(user).map_err(|_| PamError::NulByte)?,
        password: CString::new(new_password).map_err(|_| PamError::NulByte)?,
    });
    let conv = PamConv {
        conv: Some(conversation),
        appdata_ptr: &*data as *const ConvData as *mut c_void,
    };
    let mut handle: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: all strings are NUL-terminated; conv and data outlive the handle (pam_end below).
    let rc = unsafe { pam_start(c_service.as_ptr(), data.user.as_ptr(), &conv, &mut handle) };
    if rc != PAM_SUCCESS || handle.is_null() {
        return Err(PamError::Start {
            service: service.to_string(),
            message: pam_error_text(handle, rc),
        });
    }
    // SAFETY: valid handle.
    let rc = unsafe { pam_chauthtok(handle, 0) };
    let result = if rc == PAM_SUCCESS {
        Ok(())
    } else {
        Err(PamError::ChangeAuthToken(pam_error_text(handle, rc)))
    };
    // SAFETY: handle came from pam_start and is not used afterwards.
    unsafe { pam_end(handle, rc) };
    drop(data);
    result
}

/// Writes [`PAM_SERVICE_FILE_CONTENT`] to `path` unless the file exists; returns whether it
/// was written.
pub fn install_pam_service_file(path: &Path) -> std::io::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    pbs_tools::fs::replace_file(
        path,
        PAM_SERVICE_FILE_CONTENT.as_bytes(),
        pbs_tools::fs::ReplaceOptions::mode(0o644),
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> bool {
        let mut child = match Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                eprintln!("{cmd}: {err}");
                return false;
            }
        };
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Removes the temporary system user even if an assertion fails.
    struct TempUser(String);

    impl Drop for TempUser {
        fn drop(&mut self) {
            run("userdel", &[&self.0], None);
        }
    }

    #[test]
    fn nul_bytes_are_rejected_before_pam() {
        assert_eq!(
            pam_authenticate_user("a\0b", "x", None),
            Err(PamError::NulByte)
        );
        assert_eq!(
            pam_authenticate_user("a", "x\0", Some("127.0.0.1")),
            Err(PamError::NulByte)
        );
    }

    #[test]
    fn service_file_is_installed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxmox-backup-auth");
        assert!(install_pam_service_file(&path).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            PAM_SERVICE_FILE_CONTENT
        );
        std::fs::write(&path, "custom").unwrap();
        assert!(!install_pam_service_file(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "custom");
    }

    #[test]
    fn pam_password_check_with_a_system_user() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping PAM test: needs root to create a system user");
            return;
        }
        let service_file = Path::new(PAM_SERVICE_FILE);
        if !service_file.exists() {
            if !Path::new("/etc/pam.d/common-auth").exists() {
                eprintln!("skipping PAM test: {PAM_SERVICE_FILE} missing and no common-auth");
                return;
            }
            // this is what the package installs
            install_pam_service_file(service_file).unwrap();
        }

        let name = format!("pbsauth{}", std::process::id());
        if !run("useradd", &["-M", "-s", "/usr/sbin/nologin", &name], None) {
            eprintln!("skipping PAM test: useradd failed");
            return;
        }
        let _user = TempUser(name.clone());
        let password = "C0rrect horse: battery staple!";
        assert!(run("chpasswd", &[], Some(&format!("{name}:{password}\n"))));

        assert_eq!(
            pam_authenticate_user(&name, password, Some("192.0.2.1")),
            Ok(())
        );
        assert_eq!(pam_authenticate_user(&name, password, None), Ok(()));
        let wrong = pam_authenticate_user(&name, "wrong password", Some("192.0.2.1"));
        assert!(matches!(wrong, Err(PamError::Authenticate(_))), "{wrong:?}");
        let unknown = pam_authenticate_user(&format!("{name}x"), password, None);
        assert!(
            matches!(unknown, Err(PamError::Authenticate(_))),
            "{unknown:?}"
        );

        let changed = "An0ther long: passphrase here";
        assert_eq!(pam_change_password(&name, changed), Ok(()));
        assert_eq!(pam_authenticate_user(&name, changed, None), Ok(()));
        let old = pam_authenticate_user(&name, password, None);
        assert!(matches!(old, Err(PamError::Authenticate(_))), "{old:?}");
    }
}
