//! Authentication primitives: signed tickets, CSRF prevention tokens, credential headers,
//! PAM password checks and the proxy's TLS certificate.

pub mod credentials;
pub mod csrf;
mod files;
pub mod keys;
pub mod pam;
pub mod ticket;
pub mod tls;
mod uuid;

pub use credentials::{extract_auth_data, ApiTokenHeader, AuthData, CredentialsError};
pub use csrf::{
    assemble_csrf_prevention_token, verify_csrf_prevention_token, CsrfError, CsrfSecret,
};
pub use keys::{PrivateAuthKey, PublicAuthKey, SignatureVerifier};
pub use pam::{pam_authenticate_user, pam_change_password, PamError};
pub use ticket::{Ticket, TicketError, TICKET_LIFETIME};
pub use uuid::random_uuid_v4;
