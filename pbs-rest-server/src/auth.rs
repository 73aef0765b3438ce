//! Hooks through which the daemon authenticates requests and evaluates route permissions.

use std::collections::BTreeMap;

use http::{HeaderMap, Method, StatusCode};

use pbs_api_types::Authid;

use crate::error::HttpError;
use crate::router::{BoxFuture, Permission};

/// Why authentication failed; the reason ends up in `authentication failed - <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither a ticket cookie nor an API token header was sent.
    #[error("no authentication credentials provided.")]
    NoData,
    /// Credentials were sent but are not valid.
    #[error("{0}")]
    Invalid(String),
}

/// A successfully authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// Who made the request.
    pub auth_id: Authid,
    /// Authenticated by API token (no CSRF check, token privilege intersection).
    pub via_token: bool,
}

/// The message of a failed route permission check (answered with 403).
pub const PERMISSION_CHECK_FAILED: &str = "permission check failed";

/// A `403 permission check failed` error.
pub fn permission_denied() -> HttpError {
    HttpError::new(StatusCode::FORBIDDEN, PERMISSION_CHECK_FAILED)
}

/// Authentication and authorisation, provided by the daemon.
pub trait ApiAuth: Send + Sync {
    /// Authenticates a request from its headers (ticket cookie + CSRF token for non-GET,
    /// or API token header).
    fn check_auth<'a>(
        &'a self,
        headers: &'a HeaderMap,
        method: &'a Method,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>>;

    /// Effective privilege bits of `auth_id` on the ACL path given as components.
    fn lookup_privs(&self, auth_id: &Authid, path: &[String]) -> u64;

    /// Evaluates a route permission; `path_params` are the captured path parameters (never
    /// query or body values). The default implementation follows the usual rules on top of
    /// [`ApiAuth::lookup_privs`].
    fn check_permission(
        &self,
        auth_id: &Authid,
        permission: &Permission,
        path_params: &BTreeMap<String, String>,
    ) -> Result<(), HttpError> {
        if evaluate_permission(self, auth_id, permission, path_params) {
            Ok(())
        } else {
            Err(permission_denied())
        }
    }
}

/// The standard evaluation of a route permission (`root@pam` passes everything).
pub fn evaluate_permission<A: ApiAuth + ?Sized>(
    auth: &A,
    auth_id: &Authid,
    permission: &Permission,
    path_params: &BTreeMap<String, String>,
) -> bool {
    if !auth_id.is_token() && auth_id.user().is_root() {
        return true;
    }
    match permission {
        Permission::World | Permission::Anybody => true,
        Permission::Superuser => false,
        Permission::User(check) => check(auth_id),
        Permission::UserParam(name) => path_params
            .get(*name)
            .is_some_and(|value| *value == auth_id.to_string()),
        Permission::Privilege {
            path,
            privs,
            partial,
        } => {
            let components = Permission::expand_path(path, path_params);
            let have = auth.lookup_privs(auth_id, &components);
            if have == 0 {
                false
            } else if *partial {
                have & privs != 0
            } else {
                have & privs == *privs
            }
        }
        Permission::Or(list) => list
            .iter()
            .any(|p| evaluate_permission(auth, auth_id, p, path_params)),
        Permission::And(list) => list
            .iter()
            .all(|p| evaluate_permission(auth, auth_id, p, path_params)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    impl ApiAuth for Fixed {
        fn check_auth<'a>(
            &'a self,
            _headers: &'a HeaderMap,
            _method: &'a Method,
        ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
            Box::pin(async { Err(AuthError::NoData) })
        }

        fn lookup_privs(&self, auth_id: &Authid, path: &[String]) -> u64 {
            match (auth_id.to_string().as_str(), path) {
                ("user1@pbs", [a, b]) if a == "datastore" && b == "s1" => 0b0110,
                _ => 0,
            }
        }
    }

    fn id(s: &str) -> Authid {
        s.parse().unwrap()
    }

    #[test]
    fn privilege_rules() {
        let mut params = BTreeMap::new();
        params.insert("store".to_string(), "s1".to_string());
        let all = Permission::Privilege {
            path: "/datastore/{store}",
            privs: 0b0110,
            partial: false,
        };
        let more = Permission::Privilege {
            path: "/datastore/{store}",
            privs: 0b1110,
            partial: false,
        };
        let any = Permission::Privilege {
            path: "/datastore/{store}",
            privs: 0b1010,
            partial: true,
        };
        let user = id("user1@pbs");
        assert!(evaluate_permission(&Fixed, &user, &all, &params));
        assert!(!evaluate_permission(&Fixed, &user, &more, &params));
        assert!(evaluate_permission(&Fixed, &user, &any, &params));
        assert!(Fixed
            .check_permission(&user, &Permission::Superuser, &params)
            .is_err());
        assert!(evaluate_permission(&Fixed, &id("root@pam"), &more, &params));
        assert!(!evaluate_permission(
            &Fixed,
            &id("root@pam!t"),
            &Permission::Superuser,
            &params
        ));
        params.insert("userid".to_string(), "user1@pbs".to_string());
        assert!(evaluate_permission(
            &Fixed,
            &user,
            &Permission::UserParam("userid"),
            &params
        ));
        assert!(!evaluate_permission(
            &Fixed,
            &id("user1@pbs!tok"),
            &Permission::UserParam("userid"),
            &params
        ));
        let err = Fixed
            .check_permission(&user, &Permission::And(vec![all, more]), &params)
            .unwrap_err();
        assert_eq!(err.code, StatusCode::FORBIDDEN);
        assert_eq!(err.message, "permission check failed");
    }
}
