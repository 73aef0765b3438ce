//! Parameter schemas shared by the `access` endpoints.

use pbs_api_types::names::is_safe_id;
use pbs_api_types::{Authid, Userid};
use pbs_rest_server::{ParamKind, ParamSchema, StringFormat};

fn check_userid(value: &str) -> Result<(), String> {
    value.parse::<Userid>().map(drop).map_err(|e| e.to_string())
}

fn check_authid(value: &str) -> Result<(), String> {
    value.parse::<Authid>().map(drop).map_err(|e| e.to_string())
}

fn check_single_line(value: &str) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        Err("value must not contain control characters".to_string())
    } else {
        Ok(())
    }
}

fn is_digest(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `^(?:/|(?:/SAFE_ID)+)$`
fn is_acl_path(value: &str) -> bool {
    value == "/"
        || value
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(is_safe_id))
}

fn check_role(value: &str) -> Result<(), String> {
    match pbs_config::privileges::find_role(value) {
        Some(_) => Ok(()),
        None => Err(format!(
            "value '{value}' is not defined in the enumeration."
        )),
    }
}

/// A user id `name@realm`.
pub fn userid(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .min_length(3)
        .max_length(64)
        .format(StringFormat::Verify(check_userid))
        .description("User ID")
}

/// A user or API token id.
pub fn authid(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .min_length(3)
        .max_length(64)
        .format(StringFormat::Verify(check_authid))
        .description("Authentication ID")
}

/// The name part of an API token id.
pub fn token_name() -> ParamSchema {
    ParamSchema::string("token-name")
        .min_length(1)
        .max_length(64)
        .format(StringFormat::Pattern(is_safe_id))
        .description("The token ID part of an API token authentication id.")
}

/// A single-line comment.
pub fn comment() -> ParamSchema {
    ParamSchema::string("comment")
        .format(StringFormat::Verify(check_single_line))
        .optional()
        .description("Comment.")
}

/// A name-like user property of 2 to 64 characters.
pub fn user_text(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .min_length(2)
        .max_length(64)
        .optional()
}

/// The `enable` flag.
pub fn enable() -> ParamSchema {
    ParamSchema::boolean("enable").optional().description(
        "Enable the account (default). You can set this to '0' to disable the account.",
    )
}

/// The `expire` epoch (0 = never).
pub fn expire() -> ParamSchema {
    ParamSchema::integer("expire")
        .minimum(0)
        .optional()
        .description("Account expiration date (seconds since epoch). '0' means no expiration date.")
}

/// A password of the `pbs` realm password schema (5 to 64 characters).
pub fn pbs_password(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .min_length(5)
        .max_length(64)
        .format(StringFormat::Verify(check_single_line))
        .description("User Password.")
}

/// A password of the generic password schema (1 to 1024 characters).
pub fn password(name: &'static str) -> ParamSchema {
    ParamSchema::string(name)
        .min_length(1)
        .max_length(1024)
        .format(StringFormat::Verify(check_single_line))
        .description("Password.")
}

/// The optional configuration digest of modifying calls.
pub fn digest() -> ParamSchema {
    ParamSchema::string("digest")
        .format(StringFormat::Pattern(is_digest))
        .optional()
        .description("Prevent changes if current configuration file has different SHA256 digest.")
}

/// An ACL path.
pub fn acl_path() -> ParamSchema {
    ParamSchema::string("path")
        .min_length(1)
        .max_length(pbs_config::acl::ACL_PATH_MAX_LEN)
        .format(StringFormat::Pattern(is_acl_path))
        .description("Access control path.")
}

/// A built-in role name.
pub fn role() -> ParamSchema {
    ParamSchema::string("role")
        .format(StringFormat::Verify(check_role))
        .description("Role name.")
}

/// A group name.
pub fn group() -> ParamSchema {
    ParamSchema::string("group")
        .min_length(3)
        .max_length(64)
        .format(StringFormat::Pattern(is_safe_id))
        .optional()
        .description("Group ID")
}

/// The user properties `delete` may clear.
pub fn delete_user_properties() -> ParamSchema {
    ParamSchema::array(
        "delete",
        ParamKind::String {
            min_length: None,
            max_length: None,
            format: Some(StringFormat::Enum(&[
                "comment",
                "firstname",
                "lastname",
                "email",
            ])),
        },
    )
    .optional()
    .description("List of properties to delete.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_path_pattern() {
        for ok in ["/", "/datastore", "/datastore/store1/ns-a", "/a_b/c.d"] {
            assert!(is_acl_path(ok), "{ok}");
        }
        for bad in ["", "//", "/datastore/", "datastore", "/.x", "/a b", "/-a"] {
            assert!(!is_acl_path(bad), "{bad}");
        }
    }

    #[test]
    fn digest_pattern_is_lower_case_hex() {
        let digest = "0123456789abcdef".repeat(4);
        assert!(is_digest(&digest));
        assert!(!is_digest(&digest.to_uppercase()));
        assert!(!is_digest(&digest[1..]));
    }

    #[test]
    fn id_checks() {
        assert!(check_userid("user1@pbs").is_ok());
        assert_eq!(
            check_userid("user1@pbs!tok").unwrap_err(),
            "invalid realm in user id"
        );
        assert!(check_authid("user1@pbs!tok").is_ok());
        assert!(check_role("DatastoreAdmin").is_ok());
        assert_eq!(
            check_role("admin").unwrap_err(),
            "value 'admin' is not defined in the enumeration."
        );
        assert!(check_single_line("a comment").is_ok());
        assert!(check_single_line("two\nlines").is_err());
    }
}
