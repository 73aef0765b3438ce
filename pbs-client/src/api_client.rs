//! The JSON API calls command implementations make, independent of the transport.
//!
//! Commands and the task-log follower are written against this trait so that the HTTPS
//! client, the manager's local client and test doubles can all serve them.

use std::future::Future;

use anyhow::Result;
use serde_json::Value;

/// JSON API access. Paths are relative to the host root (`api2/json/...`); every call
/// returns the whole response envelope (`{"data": ...}` plus attributes).
pub trait ApiClient: Sync {
    /// GET with `params` in the query string.
    fn get(&self, path: &str, params: Option<Value>) -> impl Future<Output = Result<Value>> + Send;
    /// POST with `params` as JSON body.
    fn post(&self, path: &str, params: Option<Value>)
        -> impl Future<Output = Result<Value>> + Send;
    /// PUT with `params` as JSON body.
    fn put(&self, path: &str, params: Option<Value>) -> impl Future<Output = Result<Value>> + Send;
    /// DELETE with `params` in the query string.
    fn delete(
        &self,
        path: &str,
        params: Option<Value>,
    ) -> impl Future<Output = Result<Value>> + Send;
    /// POST of a raw body with `params` in the query string; clients that cannot send raw
    /// bodies keep the default, which fails.
    fn upload(
        &self,
        content_type: &str,
        body: Vec<u8>,
        path: &str,
        params: Option<Value>,
    ) -> impl Future<Output = Result<Value>> + Send {
        let _ = (content_type, body, params);
        let path = path.to_string();
        async move { anyhow::bail!("{path}: this client cannot upload raw data") }
    }
}

impl ApiClient for crate::http_client::HttpClient {
    async fn get(&self, path: &str, params: Option<Value>) -> Result<Value> {
        crate::http_client::HttpClient::get(self, path, params).await
    }
    async fn post(&self, path: &str, params: Option<Value>) -> Result<Value> {
        crate::http_client::HttpClient::post(self, path, params).await
    }
    async fn put(&self, path: &str, params: Option<Value>) -> Result<Value> {
        crate::http_client::HttpClient::put(self, path, params).await
    }
    async fn delete(&self, path: &str, params: Option<Value>) -> Result<Value> {
        crate::http_client::HttpClient::delete(self, path, params).await
    }
    async fn upload(
        &self,
        content_type: &str,
        body: Vec<u8>,
        path: &str,
        params: Option<Value>,
    ) -> Result<Value> {
        crate::http_client::HttpClient::upload(self, content_type, body.into(), path, params).await
    }
}

/// Percent-encodes a path component the way task URLs need it: every byte except ASCII
/// letters and digits.
pub fn encode_path_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_is_fully_encoded() {
        assert_eq!(
            encode_path_component("UPID:host:0000A1B2:garbage_collection:store1:root@pam:"),
            "UPID%3Ahost%3A0000A1B2%3Agarbage%5Fcollection%3Astore1%3Aroot%40pam%3A"
        );
        assert_eq!(encode_path_component("abcXYZ019"), "abcXYZ019");
    }
}
