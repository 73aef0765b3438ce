//! Authentication of API requests (ticket cookie plus CSRF token, or API token header) and
//! route permission checks against the ACLs, plus the realm password back-ends.

pub mod realm;
pub mod tfa;

use std::sync::{Arc, RwLock};

use anyhow::{Context, Error};
use http::{HeaderMap, Method};

use pbs_api_types::{Authid, Userid};
use pbs_auth::credentials::{ApiTokenHeader, AuthData, CSRF_HEADER_NAME};
use pbs_auth::keys::{authkey_path, authkey_pub_path};
use pbs_auth::ticket::verify_api_ticket;
use pbs_auth::{CsrfSecret, PrivateAuthKey, PublicAuthKey, SignatureVerifier};
use pbs_config::CachedUserInfo;
use pbs_rest_server::{ApiAuth, AuthError, AuthInfo, BoxFuture, FileLogger};

/// Reason given when the ticket's user (or a token's user or the token) is not active.
pub const USER_INACTIVE: &str = "user account disabled or expired.";
/// Reason given when an API token or its user is not active.
pub const TOKEN_INACTIVE: &str = "user account or token disabled or expired.";

/// The key tickets are verified with: the API daemon holds the private key, the proxy only
/// the public one.
enum TicketKey {
    Private(PrivateAuthKey),
    Public(PublicAuthKey),
}

impl TicketKey {
    fn verifier(&self) -> &dyn SignatureVerifier {
        match self {
            TicketKey::Private(key) => key,
            TicketKey::Public(key) => key,
        }
    }
}

/// The daemon's [`ApiAuth`] implementation: ticket and CSRF verification, API tokens,
/// privileges from `user.cfg` and `acl.cfg`.
pub struct ApiAuthState {
    key: TicketKey,
    csrf_secret: CsrfSecret,
}

impl ApiAuthState {
    /// Loads the ticket key (`authkey.pub` when `public`, else `authkey.key`) and `csrf.key`
    /// from the configuration directory.
    // The daemons only need the trait object.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(public: bool) -> Result<Arc<dyn ApiAuth>, Error> {
        Ok(Arc::new(Self::load(public)?))
    }

    /// Like [`ApiAuthState::new`], returning the concrete type.
    pub fn load(public: bool) -> Result<Self, Error> {
        let key = if public {
            TicketKey::Public(PublicAuthKey::load(&authkey_pub_path())?)
        } else {
            TicketKey::Private(PrivateAuthKey::load(&authkey_path())?)
        };
        let csrf_secret =
            pbs_auth::csrf::load_csrf_secret().context("unable to load the CSRF secret")?;
        Ok(Self { key, csrf_secret })
    }

    fn user_info() -> Result<Arc<CachedUserInfo>, AuthError> {
        CachedUserInfo::new().map_err(|err| AuthError::Invalid(format!("{err:#}")))
    }

    fn check_ticket(
        &self,
        ticket: &str,
        csrf_token: Option<&str>,
        method: &Method,
    ) -> Result<AuthInfo, AuthError> {
        let userid = verify_api_ticket(self.key.verifier(), ticket)
            .map_err(|err| AuthError::Invalid(err.to_string()))?;
        let auth_id = Authid::from(userid.clone());
        if !Self::user_info()?.is_active_user(&auth_id) {
            return Err(AuthError::Invalid(USER_INACTIVE.to_string()));
        }
        if *method != Method::GET {
            let token = csrf_token
                .ok_or_else(|| AuthError::Invalid("missing CSRF prevention token".to_string()))?;
            pbs_auth::verify_csrf_prevention_token(&self.csrf_secret, &userid, token)
                .map_err(|err| AuthError::Invalid(err.to_string()))?;
        }
        Ok(AuthInfo {
            auth_id,
            via_token: false,
        })
    }

    async fn check_api_token(value: String) -> Result<AuthInfo, AuthError> {
        let invalid = |msg: String| AuthError::Invalid(msg);
        let header = ApiTokenHeader::parse(&value).map_err(|err| invalid(err.to_string()))?;
        if !Self::user_info()?.is_active_user(&header.tokenid) {
            return Err(invalid(TOKEN_INACTIVE.to_string()));
        }
        let secret = header.secret().map_err(|err| invalid(err.to_string()))?;
        let tokenid = header.tokenid;
        // Hashing the secret takes a noticeable amount of CPU time.
        let checked_id = tokenid.clone();
        tokio::task::spawn_blocking(move || {
            pbs_config::token_shadow::verify_secret(&checked_id, &secret)
        })
        .await
        .map_err(|err| invalid(format!("token verification aborted: {err}")))?
        .map_err(|err| invalid(err.to_string()))?;
        Ok(AuthInfo {
            auth_id: tokenid,
            via_token: true,
        })
    }
}

/// All `Cookie` header fields joined (HTTP/2 clients may split cookies into several).
fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("; "))
    }
}

impl ApiAuth for ApiAuthState {
    fn check_auth<'a>(
        &'a self,
        headers: &'a HeaderMap,
        method: &'a Method,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let cookie = cookie_header(headers);
            let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
            let data = pbs_auth::extract_auth_data(
                cookie.as_deref(),
                header(CSRF_HEADER_NAME),
                header(http::header::AUTHORIZATION.as_str()),
            );
            match data {
                Some(AuthData::Ticket { ticket, csrf_token }) => {
                    self.check_ticket(&ticket, csrf_token.as_deref(), method)
                }
                Some(AuthData::ApiToken(value)) => Self::check_api_token(value).await,
                None => Err(AuthError::NoData),
            }
        })
    }

    fn lookup_privs(&self, auth_id: &Authid, path: &[String]) -> u64 {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match CachedUserInfo::new() {
            Ok(info) => info.lookup_privs(auth_id, &path),
            // Unreadable configuration grants nothing.
            Err(_) => 0,
        }
    }
}

static AUTH_LOGGER: RwLock<Option<Arc<FileLogger>>> = RwLock::new(None);

/// Sets the auth log (`api/auth.log`) that ticket creation reports to.
pub fn set_auth_logger(logger: Option<Arc<FileLogger>>) {
    if let Ok(mut slot) = AUTH_LOGGER.write() {
        *slot = logger;
    }
}

/// Writes one line to the auth log, if one is set.
pub fn auth_log(message: &str) {
    if let Ok(slot) = AUTH_LOGGER.read() {
        if let Some(logger) = slot.as_ref() {
            logger.log(message);
        }
    }
}

/// Whether `auth_id` is the superuser `root@pam` (its tokens are not).
pub fn is_superuser(auth_id: &Authid) -> bool {
    !auth_id.is_token() && auth_id.user().is_root()
}

/// Signs a fresh API ticket for `userid` with `authkey.key` and creates the matching CSRF
/// prevention token: `(ticket, csrf_token)`.
pub fn create_ticket(userid: &Userid) -> Result<(String, String), Error> {
    let key = PrivateAuthKey::load(&authkey_path())?;
    let ticket = pbs_auth::ticket::assemble_api_ticket(&key, userid)?;
    let secret = pbs_auth::csrf::load_csrf_secret()?;
    let csrf = pbs_auth::assemble_csrf_prevention_token(&secret, userid);
    Ok((ticket, csrf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cookie_fields_are_joined() {
        let mut headers = HeaderMap::new();
        assert_eq!(cookie_header(&headers), None);
        headers.append(http::header::COOKIE, "a=1".parse().unwrap());
        headers.append(http::header::COOKIE, "PBSAuthCookie=x".parse().unwrap());
        let joined = cookie_header(&headers).unwrap();
        assert_eq!(joined, "a=1; PBSAuthCookie=x");
        assert_eq!(
            pbs_auth::credentials::extract_cookie(&joined, "PBSAuthCookie").as_deref(),
            Some("x")
        );
    }

    #[test]
    fn superuser_is_only_root_at_pam() {
        assert!(is_superuser(&"root@pam".parse().unwrap()));
        assert!(!is_superuser(&"root@pam!t".parse().unwrap()));
        assert!(!is_superuser(&"root@pbs".parse().unwrap()));
    }
}
