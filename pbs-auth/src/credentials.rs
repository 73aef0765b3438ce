//! How credentials travel in HTTP headers: the ticket cookie, the CSRF header and the
//! `Authorization: PBSAPIToken` header (§3.5, §3.6).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use thiserror::Error;

use pbs_api_types::Authid;

/// Name of the cookie carrying the ticket.
pub const AUTH_COOKIE_NAME: &str = "PBSAuthCookie";
/// Header carrying the CSRF prevention token.
pub const CSRF_HEADER_NAME: &str = "CSRFPreventionToken";
/// Scheme of the `Authorization` header for API tokens.
pub const API_TOKEN_AUTH_SCHEME: &str = "PBSAPIToken";

/// What the stock client percent-encodes in cookie values and token secrets.
const CLIENT_ENCODE_SET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}');

/// Why API token credentials were rejected (before the token lookup).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("failed to split API token header")]
    SplitTokenHeader,
    #[error("{0}")]
    InvalidTokenId(String),
    #[error("failed to decode API token header")]
    DecodeTokenSecret,
    #[error("not an API token ID")]
    NotATokenId,
}

/// Credentials found in a request, in the order the server looks for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthData {
    /// Ticket from the `PBSAuthCookie` cookie plus the `CSRFPreventionToken` header, if any.
    Ticket {
        ticket: String,
        csrf_token: Option<String>,
    },
    /// Everything after `PBSAPIToken` and its separator: `<tokenid>:<secret>`.
    ApiToken(String),
}

/// Looks up cookie `name` in a `Cookie` header value and percent-decodes it.
///
/// Pairs are separated by `;`; a pair without `=` ends the parsing.
pub fn extract_cookie(cookie_header: &str, name: &str) -> Option<String> {
    for pair in cookie_header.split(';') {
        let (key, value) = pair.trim().split_once('=')?;
        if key.trim() == name {
            return percent_decode_str(value.trim())
                .decode_utf8()
                .ok()
                .map(|v| v.into_owned());
        }
    }
    None
}

/// The part after `PBSAPIToken` + one space or `=`, if the header uses that scheme.
pub fn strip_api_token_scheme(authorization: &str) -> Option<&str> {
    let rest = authorization.strip_prefix(API_TOKEN_AUTH_SCHEME)?;
    rest.strip_prefix(' ').or_else(|| rest.strip_prefix('='))
}

/// Picks the credentials of a request from its `Cookie`, `CSRFPreventionToken` and
/// `Authorization` headers; `None` means "no authentication credentials provided."
pub fn extract_auth_data(
    cookie: Option<&str>,
    csrf_header: Option<&str>,
    authorization: Option<&str>,
) -> Option<AuthData> {
    if let Some(ticket) = cookie.and_then(|c| extract_cookie(c, AUTH_COOKIE_NAME)) {
        return Some(AuthData::Ticket {
            ticket,
            csrf_token: csrf_header.map(str::to_string),
        });
    }
    authorization
        .and_then(strip_api_token_scheme)
        .map(|value| AuthData::ApiToken(value.to_string()))
}

/// A parsed `<tokenid>:<secret>` header value; the secret is still percent-encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenHeader {
    /// The id before the first `:` (may be a plain user id, see [`Self::require_token`]).
    pub tokenid: Authid,
    encoded_secret: String,
}

impl ApiTokenHeader {
    /// Splits at the first `:` and parses the id.
    pub fn parse(value: &str) -> Result<Self, CredentialsError> {
        let (tokenid, secret) = value
            .split_once(':')
            .ok_or(CredentialsError::SplitTokenHeader)?;
        let tokenid = tokenid
            .parse::<Authid>()
            .map_err(|err| CredentialsError::InvalidTokenId(err.to_string()))?;
        Ok(Self {
            tokenid,
            encoded_secret: secret.to_string(),
        })
    }

    /// The percent-decoded secret.
    pub fn secret(&self) -> Result<String, CredentialsError> {
        percent_decode_str(&self.encoded_secret)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| CredentialsError::DecodeTokenSecret)
    }

    /// Fails unless the id is a token id (`user@realm!name`).
    pub fn require_token(&self) -> Result<&Authid, CredentialsError> {
        if self.tokenid.is_token() {
            Ok(&self.tokenid)
        } else {
            Err(CredentialsError::NotATokenId)
        }
    }
}

/// `Cookie` header value the client sends: `PBSAuthCookie=<encoded ticket>`.
pub fn auth_cookie_header(ticket: &str) -> String {
    format!(
        "{AUTH_COOKIE_NAME}={}",
        utf8_percent_encode(ticket, CLIENT_ENCODE_SET)
    )
}

/// `Authorization` header value for an API token: `PBSAPIToken <tokenid>:<encoded secret>`.
pub fn api_token_authorization_header(tokenid: &Authid, secret: &str) -> String {
    format!(
        "{API_TOKEN_AUTH_SCHEME} {tokenid}:{}",
        utf8_percent_encode(secret, CLIENT_ENCODE_SET)
    )
}

/// A new API token secret: random UUID v4, lower-case hyphenated.
pub fn generate_token_secret() -> Result<String, openssl::error::ErrorStack> {
    Ok(crate::uuid::random_uuid_v4()?.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKET: &str = "PBS:root@pam:66603A80::TY65i+XFeu6YdBdjPbp6mSyLTW6xdtUEQT0LN4PcA9DNY7UewoUgDmOQcleLJeRJdbOp9Z6GIL8Dijj16rfYBQ";

    #[test]
    fn cookie_parsing() {
        let header = format!(
            "PBSLangCookie=en; {}; PBSThemeCookie=dark",
            auth_cookie_header(TICKET)
        );
        assert_eq!(
            extract_cookie(&header, AUTH_COOKIE_NAME).as_deref(),
            Some(TICKET)
        );
        assert_eq!(
            extract_cookie(&header, "PBSLangCookie").as_deref(),
            Some("en")
        );
        assert_eq!(extract_cookie(&header, "missing"), None);
        // whitespace trimmed, percent-decoded
        assert_eq!(
            extract_cookie(
                "  PBSAuthCookie = PBS%3Aroot%40pam%3A1::x  ",
                AUTH_COOKIE_NAME
            )
            .as_deref(),
            Some("PBS:root@pam:1::x")
        );
        // a pair without '=' aborts parsing
        assert_eq!(
            extract_cookie("junk; PBSAuthCookie=abc", AUTH_COOKIE_NAME),
            None
        );
        assert_eq!(
            extract_cookie("PBSAuthCookie=abc; junk", AUTH_COOKIE_NAME).as_deref(),
            Some("abc")
        );
        // invalid UTF-8 after decoding
        assert_eq!(extract_cookie("PBSAuthCookie=%FF", AUTH_COOKIE_NAME), None);
    }

    #[test]
    fn client_encoding_keeps_ticket_characters() {
        assert_eq!(
            auth_cookie_header(TICKET),
            format!("PBSAuthCookie={TICKET}")
        );
        let partial = "PBS:!tfa!{\"totp\"%3Atrue}:66603A80::AB";
        assert_eq!(
            auth_cookie_header(partial),
            "PBSAuthCookie=PBS:!tfa!%7B%22totp%22%3Atrue%7D:66603A80::AB"
        );
        assert_eq!(
            extract_cookie(&auth_cookie_header(partial), AUTH_COOKIE_NAME).as_deref(),
            Some("PBS:!tfa!{\"totp\":true}:66603A80::AB")
        );
    }

    #[test]
    fn credential_selection_order() {
        let cookie = auth_cookie_header(TICKET);
        let auth = "PBSAPIToken root@pam!t:secret";
        assert_eq!(
            extract_auth_data(Some(&cookie), Some("csrf"), Some(auth)),
            Some(AuthData::Ticket {
                ticket: TICKET.into(),
                csrf_token: Some("csrf".into())
            })
        );
        assert_eq!(
            extract_auth_data(Some("PBSLangCookie=en"), Some("csrf"), Some(auth)),
            Some(AuthData::ApiToken("root@pam!t:secret".into()))
        );
        assert_eq!(
            extract_auth_data(None, None, Some("PBSAPIToken=root@pam!t:secret")),
            Some(AuthData::ApiToken("root@pam!t:secret".into()))
        );
        assert_eq!(extract_auth_data(None, None, Some("Basic abc")), None);
        assert_eq!(
            extract_auth_data(None, None, Some("PBSAPITokenroot@pam!t:s")),
            None
        );
        assert_eq!(
            extract_auth_data(None, None, Some("PBSAPIToken:root@pam!t:s")),
            None
        );
        assert_eq!(extract_auth_data(None, Some("csrf"), None), None);
    }

    #[test]
    fn token_header_parsing() {
        let h = ApiTokenHeader::parse("user@pbs!backup:a%20b:c").unwrap();
        assert_eq!(h.tokenid.to_string(), "user@pbs!backup");
        assert_eq!(h.secret().unwrap(), "a b:c");
        assert_eq!(h.require_token().unwrap().tokenname(), Some("backup"));

        assert_eq!(
            ApiTokenHeader::parse("user@pbs!backup"),
            Err(CredentialsError::SplitTokenHeader)
        );
        assert!(matches!(
            ApiTokenHeader::parse("nouser:secret"),
            Err(CredentialsError::InvalidTokenId(_))
        ));
        assert_eq!(
            ApiTokenHeader::parse("user@pbs!:secret"),
            Err(CredentialsError::InvalidTokenId(
                "empty token name in userid".into()
            ))
        );
        let plain = ApiTokenHeader::parse("user@pbs:secret").unwrap();
        assert_eq!(plain.require_token(), Err(CredentialsError::NotATokenId));
        let bad = ApiTokenHeader::parse("user@pbs!t:%C3%28").unwrap();
        assert_eq!(bad.secret(), Err(CredentialsError::DecodeTokenSecret));
        let empty = ApiTokenHeader::parse("user@pbs!t:").unwrap();
        assert_eq!(empty.secret().unwrap(), "");
    }

    #[test]
    fn authorization_header_round_trip() {
        let id: Authid = "user@pbs!backup".parse().unwrap();
        let header = api_token_authorization_header(&id, "s e{c}:=/+");
        assert_eq!(header, "PBSAPIToken user@pbs!backup:s%20e%7Bc%7D:=/+");
        let value = strip_api_token_scheme(&header).unwrap();
        let parsed = ApiTokenHeader::parse(value).unwrap();
        assert_eq!(parsed.tokenid, id);
        assert_eq!(parsed.secret().unwrap(), "s e{c}:=/+");
    }

    #[test]
    fn token_secrets_are_lower_case_uuids() {
        let a = generate_token_secret().unwrap();
        let b = generate_token_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        for (i, c) in a.chars().enumerate() {
            if [8, 13, 18, 23].contains(&i) {
                assert_eq!(c, '-', "{a}");
            } else {
                assert!(c.is_ascii_digit() || ('a'..='f').contains(&c), "{a}");
            }
        }
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
    }
}
