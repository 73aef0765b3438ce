//! Signed tickets `<prefix>:<data>:<TIME>::<signature>` (§3.3).

use std::ops::RangeInclusive;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use thiserror::Error;

use pbs_api_types::Userid;

use crate::keys::{PrivateAuthKey, SignatureVerifier};

/// Prefix of API tickets.
pub const API_TICKET_PREFIX: &str = "PBS";
/// Prefix of terminal (console) tickets.
pub const TERM_TICKET_PREFIX: &str = "PBSTERM";
/// Marker starting the data of a partial (second factor pending) ticket.
pub const PARTIAL_TICKET_MARKER: &str = "!tfa!";
/// Lifetime of a ticket in seconds.
pub const TICKET_LIFETIME: i64 = 7200;
/// Accepted ticket age: up to 5 minutes of clock skew into the future, then the lifetime.
pub const TICKET_TIME_FRAME: RangeInclusive<i64> = -300..=TICKET_LIFETIME;

/// C0 controls, DEL and non-ASCII (always) plus `:`.
const TICKET_ENCODE_SET: &AsciiSet = &CONTROLS.add(b':');

/// Standard alphabet, accepting input with or without padding.
const SIGNATURE_DECODER: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a ticket could not be parsed, signed or verified.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TicketError {
    #[error("ticket without data")]
    WithoutData,
    #[error("ticket without timestamp")]
    WithoutTimestamp,
    #[error("ticket with bad timestamp: {0}")]
    BadTimestamp(String),
    #[error("ticket without signature")]
    WithoutSignature,
    #[error("ticket without signature separator")]
    WithoutSignatureSeparator,
    #[error("ticket with bad signature: {0}")]
    BadSignatureEncoding(String),
    #[error("ticket with invalid utf-8 in {0}")]
    BadEncoding(&'static str),
    #[error("ticket with invalid prefix")]
    InvalidPrefix,
    #[error("invalid ticket - timestamp newer than expected")]
    TooNew,
    #[error("invalid ticket - expired")]
    Expired,
    #[error("ticket with invalid signature")]
    InvalidSignature,
    #[error("failed to parse contained ticket data: {0}")]
    BadData(String),
    #[error("access denied - second login factor required")]
    SecondFactorRequired,
    #[error("ticket signing failed: {0}")]
    Signing(String),
}

/// A ticket: prefix, data and creation time, plus the signature once signed or parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    prefix: String,
    data: String,
    time: i64,
    signature: Option<Vec<u8>>,
}

fn encode_part(part: &str) -> impl std::fmt::Display + '_ {
    utf8_percent_encode(part, TICKET_ENCODE_SET)
}

fn decode_part(part: &str, what: &'static str) -> Result<String, TicketError> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| TicketError::BadEncoding(what))
}

impl Ticket {
    /// An unsigned ticket created now.
    pub fn new(prefix: &str, data: &str) -> Self {
        Self::with_time(prefix, data, pbs_api_types::time::epoch_now())
    }

    /// An unsigned ticket with an explicit creation time.
    pub fn with_time(prefix: &str, data: &str, time: i64) -> Self {
        Self {
            prefix: prefix.to_string(),
            data: data.to_string(),
            time,
            signature: None,
        }
    }

    /// A full API ticket (`PBS:<userid>:...`) created now.
    pub fn new_api(userid: &Userid) -> Self {
        Self::new(API_TICKET_PREFIX, userid.as_str())
    }

    /// The (decoded) prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The (decoded) data.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Creation time (epoch).
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The signature, if signed or parsed.
    pub fn signature(&self) -> Option<&[u8]> {
        self.signature.as_deref()
    }

    /// `<enc prefix>:<enc data>:<TIME>` without aad.
    fn unsigned_part(&self) -> String {
        format!(
            "{}:{}:{:08X}",
            encode_part(&self.prefix),
            encode_part(&self.data),
            self.time
        )
    }

    /// The exact bytes that are signed: the canonical form plus `":" + aad` if given.
    pub fn signed_message(&self, aad: Option<&str>) -> String {
        let mut msg = self.unsigned_part();
        if let Some(aad) = aad {
            msg.push(':');
            msg.push_str(aad);
        }
        msg
    }

    /// Signs the ticket and returns its string form.
    pub fn sign(&mut self, key: &PrivateAuthKey, aad: Option<&str>) -> Result<String, TicketError> {
        let signature = key
            .sign(self.signed_message(aad).as_bytes())
            .map_err(|err| TicketError::Signing(err.to_string()))?;
        self.signature = Some(signature);
        self.to_ticket_string()
    }

    /// The string form of a signed ticket.
    pub fn to_ticket_string(&self) -> Result<String, TicketError> {
        let signature = self
            .signature
            .as_deref()
            .ok_or(TicketError::WithoutSignature)?;
        Ok(format!(
            "{}::{}",
            self.unsigned_part(),
            STANDARD_NO_PAD.encode(signature)
        ))
    }

    /// Parses a ticket string (without verifying anything).
    pub fn parse(input: &str) -> Result<Self, TicketError> {
        let mut parts = input.splitn(4, ':');
        let prefix = parts.next().unwrap_or_default();
        let data = parts.next().ok_or(TicketError::WithoutData)?;
        let time = parts.next().ok_or(TicketError::WithoutTimestamp)?;
        let rest = parts.next().ok_or(TicketError::WithoutSignature)?;
        let time = i64::from_str_radix(time, 16)
            .map_err(|err| TicketError::BadTimestamp(err.to_string()))?;
        let signature = rest
            .strip_prefix(':')
            .ok_or(TicketError::WithoutSignatureSeparator)?;
        let signature = SIGNATURE_DECODER
            .decode(signature)
            .map_err(|err| TicketError::BadSignatureEncoding(err.to_string()))?;
        Ok(Self {
            prefix: decode_part(prefix, "prefix")?,
            data: decode_part(data, "data")?,
            time,
            signature: Some(signature),
        })
    }

    /// Verifies prefix, age (within [`TICKET_TIME_FRAME`]) and signature; returns the data.
    pub fn verify(
        &self,
        key: &dyn SignatureVerifier,
        prefix: &str,
        aad: Option<&str>,
    ) -> Result<&str, TicketError> {
        self.verify_with_time_frame(
            key,
            prefix,
            aad,
            TICKET_TIME_FRAME,
            pbs_api_types::time::epoch_now(),
        )
    }

    /// Like [`Self::verify`] with an explicit age window and current time.
    pub fn verify_with_time_frame(
        &self,
        key: &dyn SignatureVerifier,
        prefix: &str,
        aad: Option<&str>,
        time_frame: RangeInclusive<i64>,
        now: i64,
    ) -> Result<&str, TicketError> {
        if self.prefix != prefix {
            return Err(TicketError::InvalidPrefix);
        }
        let age = now.saturating_sub(self.time);
        if age < *time_frame.start() {
            return Err(TicketError::TooNew);
        }
        if age > *time_frame.end() {
            return Err(TicketError::Expired);
        }
        let signature = self
            .signature
            .as_deref()
            .ok_or(TicketError::WithoutSignature)?;
        match key.verify_signature(self.signed_message(aad).as_bytes(), signature) {
            Ok(true) => Ok(&self.data),
            // malformed signatures (e.g. wrong length) are just invalid
            Ok(false) | Err(_) => Err(TicketError::InvalidSignature),
        }
    }
}

impl std::str::FromStr for Ticket {
    type Err = TicketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Parses the data of an API ticket as Userid; partial (TFA) tickets are refused.
pub fn api_ticket_userid(data: &str) -> Result<Userid, TicketError> {
    if data.starts_with(PARTIAL_TICKET_MARKER) {
        return Err(TicketError::SecondFactorRequired);
    }
    data.parse::<Userid>()
        .map_err(|err| TicketError::BadData(err.to_string()))
}

/// Parses and verifies a full API ticket and returns its user.
pub fn verify_api_ticket(key: &dyn SignatureVerifier, ticket: &str) -> Result<Userid, TicketError> {
    let ticket = Ticket::parse(ticket)?;
    let data = ticket.verify(key, API_TICKET_PREFIX, None)?;
    api_ticket_userid(data)
}

/// Signs a fresh full API ticket for `userid`.
pub fn assemble_api_ticket(key: &PrivateAuthKey, userid: &Userid) -> Result<String, TicketError> {
    Ticket::new_api(userid).sign(key, None)
}

/// A partial ticket carrying the TFA challenge JSON, signed with aad = userid.
pub fn assemble_partial_ticket(
    key: &PrivateAuthKey,
    userid: &Userid,
    challenge_json: &str,
) -> Result<String, TicketError> {
    Ticket::new(
        API_TICKET_PREFIX,
        &format!("{PARTIAL_TICKET_MARKER}{challenge_json}"),
    )
    .sign(key, Some(userid.as_str()))
}

/// Additional authenticated data of terminal tickets: `<userid><path><port>`.
pub fn terminal_ticket_aad(userid: &Userid, path: &str, port: u16) -> String {
    format!("{userid}{path}{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PublicAuthKey;

    const PRIV_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";
    const PUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----
";
    const TIME: i64 = 0x66603A80;

    const FULL: &str = "PBS:root@pam:66603A80::TY65i+XFeu6YdBdjPbp6mSyLTW6xdtUEQT0LN4PcA9DNY7UewoUgDmOQcleLJeRJdbOp9Z6GIL8Dijj16rfYBQ";
    const PARTIAL: &str = "PBS:!tfa!{\"totp\"%3Atrue}:66603A80::ZBcGG+yzGqx9q7n9KJspXawI1nzNKbQy9SXiS4DBt5iH020XTfZOKlGH+3IJiZS1EMEfsN4T8Yt0nFOFt7ECAQ";
    const TERM: &str = "PBSTERM::66603A80::Y2NnZLimbI0IytKQDPEI+KTiC1oK4HwO/ZQ3yIpqHkE+BxxlIr7Ssv0HWdWrvRO9BwOCCZmolVoJUNKc0RYwBQ";

    fn keys() -> (PrivateAuthKey, PublicAuthKey) {
        (
            PrivateAuthKey::from_pem(PRIV_PEM.as_bytes()).unwrap(),
            PublicAuthKey::from_pem(PUB_PEM.as_bytes()).unwrap(),
        )
    }

    fn root() -> Userid {
        "root@pam".parse().unwrap()
    }

    #[test]
    fn vector_full_ticket() {
        let (key, public) = keys();
        assert_eq!(key.public_key_to_pem().unwrap(), PUB_PEM.as_bytes());
        let mut ticket = Ticket::with_time("PBS", "root@pam", TIME);
        assert_eq!(ticket.signed_message(None), "PBS:root@pam:66603A80");
        assert_eq!(ticket.sign(&key, None).unwrap(), FULL);

        let parsed = Ticket::parse(FULL).unwrap();
        let data = parsed
            .verify_with_time_frame(&public, "PBS", None, TICKET_TIME_FRAME, TIME + 100)
            .unwrap();
        assert_eq!(api_ticket_userid(data).unwrap(), root());
        // the private key verifies as well (API daemon)
        assert!(parsed
            .verify_with_time_frame(&key, "PBS", None, TICKET_TIME_FRAME, TIME)
            .is_ok());
    }

    #[test]
    fn vector_partial_ticket() {
        let (key, public) = keys();
        let mut ticket = Ticket::with_time("PBS", "!tfa!{\"totp\":true}", TIME);
        assert_eq!(
            ticket.signed_message(Some("root@pam")),
            "PBS:!tfa!{\"totp\"%3Atrue}:66603A80:root@pam"
        );
        assert_eq!(ticket.sign(&key, Some("root@pam")).unwrap(), PARTIAL);

        let parsed = Ticket::parse(PARTIAL).unwrap();
        assert_eq!(parsed.data(), "!tfa!{\"totp\":true}");
        let data = parsed
            .verify_with_time_frame(&public, "PBS", Some("root@pam"), TICKET_TIME_FRAME, TIME)
            .unwrap();
        assert_eq!(
            api_ticket_userid(data),
            Err(TicketError::SecondFactorRequired)
        );
        // signed with aad: does not verify without it
        assert_eq!(
            parsed.verify_with_time_frame(&public, "PBS", None, TICKET_TIME_FRAME, TIME),
            Err(TicketError::InvalidSignature)
        );
    }

    #[test]
    fn vector_terminal_ticket() {
        let (key, public) = keys();
        let aad = terminal_ticket_aad(&root(), "/system", 5900);
        assert_eq!(aad, "root@pam/system5900");
        let mut ticket = Ticket::with_time("PBSTERM", "", TIME);
        assert_eq!(
            ticket.signed_message(Some(&aad)),
            "PBSTERM::66603A80:root@pam/system5900"
        );
        assert_eq!(ticket.sign(&key, Some(&aad)).unwrap(), TERM);
        let parsed = Ticket::parse(TERM).unwrap();
        assert_eq!(
            parsed.verify_with_time_frame(&public, "PBSTERM", Some(&aad), TICKET_TIME_FRAME, TIME),
            Ok("")
        );
        assert_eq!(
            parsed.verify_with_time_frame(&public, "PBS", Some(&aad), TICKET_TIME_FRAME, TIME),
            Err(TicketError::InvalidPrefix)
        );
        let other = terminal_ticket_aad(&root(), "/system", 5901);
        assert_eq!(
            parsed.verify_with_time_frame(
                &public,
                "PBSTERM",
                Some(&other),
                TICKET_TIME_FRAME,
                TIME
            ),
            Err(TicketError::InvalidSignature)
        );
    }

    #[test]
    fn age_limits() {
        let (_, public) = keys();
        let t = Ticket::parse(FULL).unwrap();
        let check = |now| t.verify_with_time_frame(&public, "PBS", None, TICKET_TIME_FRAME, now);
        assert!(check(TIME - 300).is_ok());
        assert_eq!(check(TIME - 301), Err(TicketError::TooNew));
        assert!(check(TIME + 7200).is_ok());
        assert_eq!(check(TIME + 7201), Err(TicketError::Expired));
        assert_eq!(
            Ticket::parse(FULL).unwrap().verify(&public, "PBS", None),
            Err(TicketError::Expired)
        );
    }

    #[test]
    fn fresh_tickets_and_upstream_negative_cases() {
        let (key, public) = keys();
        let ticket = assemble_api_ticket(&key, &root()).unwrap();
        assert_eq!(verify_api_ticket(&public, &ticket).unwrap(), root());

        let now = pbs_api_types::time::epoch_now();
        for time in [0, now + 0x1000_0000] {
            let s = Ticket::with_time("PBS", "root@pam", time)
                .sign(&key, None)
                .unwrap();
            assert!(verify_api_ticket(&public, &s).is_err(), "{s}");
        }

        let partial = assemble_partial_ticket(&key, &root(), "{\"totp\":true}").unwrap();
        assert!(
            partial.starts_with("PBS:!tfa!{\"totp\"%3Atrue}:"),
            "{partial}"
        );
        assert!(verify_api_ticket(&public, &partial).is_err());
    }

    #[test]
    fn forgeries_are_rejected() {
        let (_, public) = keys();
        let verify = |s: &str| {
            Ticket::parse(s).and_then(|t| {
                t.verify_with_time_frame(&public, "PBS", None, TICKET_TIME_FRAME, TIME)
                    .map(str::to_string)
            })
        };
        // other user, same signature
        let forged = FULL.replace("root@pam", "root@pbs");
        assert_eq!(verify(&forged), Err(TicketError::InvalidSignature));
        // other time, same signature
        let forged = FULL.replace("66603A80", "66603A81");
        assert_eq!(verify(&forged), Err(TicketError::InvalidSignature));
        // flipped signature character
        let forged = FULL.replace("::TY65", "::TY66");
        assert_eq!(verify(&forged), Err(TicketError::InvalidSignature));
        // truncated signature
        assert_eq!(
            verify(&FULL[..FULL.len() - 2]),
            Err(TicketError::InvalidSignature)
        );
        // key of another installation
        let other = PrivateAuthKey::generate_ed25519().unwrap();
        let s = Ticket::with_time("PBS", "root@pam", TIME)
            .sign(&other, None)
            .unwrap();
        assert_eq!(verify(&s), Err(TicketError::InvalidSignature));
        // lower-case time parses to the same value and is verified canonically
        let lower = FULL.replace("66603A80", "66603a80");
        assert_eq!(verify(&lower).unwrap(), "root@pam");
    }

    #[test]
    fn parse_errors() {
        assert_eq!(Ticket::parse("PBS"), Err(TicketError::WithoutData));
        assert_eq!(
            Ticket::parse("PBS:root@pam"),
            Err(TicketError::WithoutTimestamp)
        );
        assert_eq!(
            Ticket::parse("PBS:root@pam:66603A80"),
            Err(TicketError::WithoutSignature)
        );
        assert_eq!(
            Ticket::parse("PBS:root@pam:66603A80:abc"),
            Err(TicketError::WithoutSignatureSeparator)
        );
        assert!(matches!(
            Ticket::parse("PBS:root@pam:xyz::abc"),
            Err(TicketError::BadTimestamp(_))
        ));
        assert!(matches!(
            Ticket::parse("PBS:root@pam:66603A80::a!b"),
            Err(TicketError::BadSignatureEncoding(_))
        ));
        assert_eq!(
            Ticket::parse("PBS:%FF:66603A80::AAAA"),
            Err(TicketError::BadEncoding("data"))
        );
        // padded signatures are accepted
        assert!(Ticket::parse("PBS:root@pam:66603A80::AAA=").is_ok());
        assert_eq!(
            api_ticket_userid("nobody"),
            Err(TicketError::BadData("not a valid user id".into()))
        );
        let unsigned = Ticket::with_time("PBS", "root@pam", TIME);
        assert_eq!(
            unsigned.to_ticket_string(),
            Err(TicketError::WithoutSignature)
        );
    }

    #[test]
    fn encoding_of_prefix_and_data() {
        let t = Ticket::with_time("PBS", "a:b\u{7f}\u{1}ä{\"x\",}", 1);
        assert_eq!(
            t.signed_message(None),
            "PBS:a%3Ab%7F%01%C3%A4{\"x\",}:00000001"
        );
    }
}
