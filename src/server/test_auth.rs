//! A minimal authentication hook: ticket cookie (+ CSRF token for non-GET requests) checked
//! with the key files of the configuration directory, privileges from `user.cfg`/`acl.cfg`.
//! API tokens are not accepted.
//!
//! TEMPORARY: the daemons use this until the full `crate::auth` module is merged (see
//! `super::api_auth`); the end-to-end tests rely on nothing beyond what it implements.

use http::{HeaderMap, Method};

use pbs_api_types::Authid;
use pbs_auth::ticket::verify_api_ticket;
use pbs_auth::{extract_auth_data, AuthData, CsrfSecret, SignatureVerifier};
use pbs_config::CachedUserInfo;
use pbs_rest_server::{ApiAuth, AuthError, AuthInfo, BoxFuture};

/// Ticket authentication for one daemon.
pub struct TicketAuth {
    key: Box<dyn SignatureVerifier + Send + Sync>,
    csrf: CsrfSecret,
}

impl TicketAuth {
    /// Loads the keys: the private key for the API daemon, the public one for the proxy.
    pub fn load(public: bool) -> anyhow::Result<Self> {
        let key: Box<dyn SignatureVerifier + Send + Sync> = if public {
            Box::new(pbs_auth::keys::load_public_auth_key()?)
        } else {
            Box::new(pbs_auth::keys::load_private_auth_key()?)
        };
        let csrf = pbs_auth::csrf::load_csrf_secret()?;
        Ok(Self { key, csrf })
    }

    fn authenticate(&self, headers: &HeaderMap, method: &Method) -> Result<AuthInfo, AuthError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let data = extract_auth_data(
            header("cookie"),
            header("csrfpreventiontoken"),
            header("authorization"),
        )
        .ok_or(AuthError::NoData)?;
        let (ticket, csrf_token) = match data {
            AuthData::Ticket { ticket, csrf_token } => (ticket, csrf_token),
            AuthData::ApiToken(_) => {
                return Err(AuthError::Invalid("API tokens are not supported".into()))
            }
        };
        let userid = verify_api_ticket(self.key.as_ref(), &ticket)
            .map_err(|err| AuthError::Invalid(format!("invalid ticket - {err}")))?;
        let auth_id = Authid::from(userid.clone());
        let info = CachedUserInfo::new()
            .map_err(|err| AuthError::Invalid(format!("unable to read user info: {err}")))?;
        if !info.is_active_user(&auth_id) {
            return Err(AuthError::Invalid(
                "user account disabled or expired.".into(),
            ));
        }
        if *method != Method::GET {
            let token = csrf_token
                .ok_or_else(|| AuthError::Invalid("missing CSRF prevention token".into()))?;
            pbs_auth::verify_csrf_prevention_token(&self.csrf, &userid, &token)
                .map_err(|err| AuthError::Invalid(format!("invalid csrf token - {err}")))?;
        }
        Ok(AuthInfo {
            auth_id,
            via_token: false,
        })
    }
}

impl ApiAuth for TicketAuth {
    fn check_auth<'a>(
        &'a self,
        headers: &'a HeaderMap,
        method: &'a Method,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move { self.authenticate(headers, method) })
    }

    fn lookup_privs(&self, auth_id: &Authid, path: &[String]) -> u64 {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match CachedUserInfo::new() {
            Ok(info) => info.lookup_privs(auth_id, &path),
            Err(_) => 0,
        }
    }
}
