//! The HTTP backend: HTTPS requests to the local proxy as `root@pam`, with a ticket minted
//! and signed locally; the server certificate must validate against the system CA store or
//! match the fingerprint of the local `proxy.pem`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::{format_err, Context, Result};
use http::Method;
use serde_json::Value;

use pbs_api_types::{Authid, Userid};
use pbs_client::tls::CertificateNotConfirmed;
use pbs_client::{HttpClient, HttpClientOptions};

pub use pbs_client::query::{encode_component, query_string};

/// Default port of the proxy.
pub const DEFAULT_PORT: u16 = 8007;
/// Env var overriding the proxy address (`<port>`, `<ip>:<port>` or `[<ipv6>]:<port>`).
pub const PROXY_LISTEN_ENV: &str = "PBS_PROXY_LISTEN";

/// Where the proxy listens: `PBS_PROXY_LISTEN` or `127.0.0.1:8007`.
pub fn proxy_address() -> Result<SocketAddr> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Ok(value) = std::env::var(PROXY_LISTEN_ENV) else {
        return Ok(SocketAddr::new(localhost, DEFAULT_PORT));
    };
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(localhost, port));
    }
    value
        .parse()
        .map_err(|_| format_err!("{PROXY_LISTEN_ENV}: invalid address '{value}'"))
}

/// A client for the local proxy.
pub struct LocalClient {
    address: SocketAddr,
    client: HttpClient,
}

fn config_file(name: &str) -> PathBuf {
    pbs_buildcfg::config_dir().join(name)
}

impl LocalClient {
    /// Mints a `root@pam` ticket with the local auth key and prepares the TLS settings.
    pub fn connect() -> Result<Self> {
        let root: Userid = "root@pam"
            .parse()
            .map_err(|err| format_err!("root@pam: {err}"))?;
        let key = pbs_auth::keys::load_private_auth_key()
            .context("unable to load the auth key to sign a ticket")?;
        let ticket = pbs_auth::ticket::assemble_api_ticket(&key, &root)
            .map_err(|err| format_err!("unable to sign ticket - {err}"))?;
        let csrf_token = pbs_auth::csrf::load_csrf_secret()
            .ok()
            .map(|secret| pbs_auth::assemble_csrf_prevention_token(&secret, &root));
        let fingerprint =
            pbs_auth::tls::cert_file_fingerprint(&config_file(pbs_auth::tls::PROXY_CERT_FILE)).ok();
        let address = proxy_address()?;
        let host = match address.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let options = HttpClientOptions::new_with_ticket(ticket, csrf_token, fingerprint);
        let client = HttpClient::new(&host, address.port(), &Authid::from(root), options)?;
        Ok(Self { address, client })
    }

    /// Sends a request; `GET`/`DELETE` carry `params` in the query string, `POST`/`PUT` as
    /// JSON body. Returns the whole response envelope (`data` plus attributes).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        params: Option<&Value>,
    ) -> Result<Value> {
        let path = format!("api2/json/{}", path.trim_start_matches('/'));
        self.client
            .request(method, &path, params.cloned())
            .await
            .map_err(|err| {
                if err.is::<CertificateNotConfirmed>() {
                    err.context(format!("TLS connection to {} failed", self.address))
                } else {
                    err
                }
            })
    }

    /// Like [`Self::request`], returning only `data`.
    pub async fn data(&self, method: Method, path: &str, params: Option<&Value>) -> Result<Value> {
        let mut envelope = self.request(method, path, params).await?;
        Ok(envelope["data"].take())
    }
}
