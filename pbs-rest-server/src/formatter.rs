//! The `json` and `extjs` response envelopes.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::error::HttpError;
use crate::router::{full_body, JsonText};
use crate::Body;

/// Content type of every formatted API response (also of `json` errors).
pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// The output format named in the URL (`/api2/<format>/...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `{"data":...}` on success, plain text with the error status on failure.
    Json,
    /// Always HTTP 200 with `success`/`status` members.
    ExtJs,
}

impl OutputFormat {
    /// Parses the format component of an API path.
    pub fn from_component(name: &str) -> Result<Self, HttpError> {
        match name {
            "json" => Ok(Self::Json),
            "extjs" => Ok(Self::ExtJs),
            other => Err(HttpError::bad_request(format!(
                "Unsupported output format '{other}'."
            ))),
        }
    }

    /// A success response for `data` plus result attributes (keys end up sorted).
    pub fn format_data(self, data: Value, attributes: Map<String, Value>) -> Response<Body> {
        let mut object = attributes;
        object.insert("data".to_string(), data);
        if self == Self::ExtJs {
            object.insert("success".to_string(), Value::Bool(true));
            object.insert("status".to_string(), Value::from(200));
        }
        json_response(StatusCode::OK, Value::Object(object).to_string())
    }

    /// A success response for pre-serialized data: result attributes first (sorted), then
    /// `data` as given.
    pub fn format_serialized(
        self,
        data: &JsonText,
        attributes: Map<String, Value>,
    ) -> Response<Body> {
        let mut attributes = attributes;
        if self == Self::ExtJs {
            attributes.insert("success".to_string(), Value::Bool(true));
            attributes.insert("status".to_string(), Value::from(200));
        }
        let mut text = String::with_capacity(data.as_str().len() + 64);
        text.push('{');
        for (key, value) in &attributes {
            text.push_str(&Value::String(key.clone()).to_string());
            text.push(':');
            text.push_str(&value.to_string());
            text.push(',');
        }
        text.push_str("\"data\":");
        text.push_str(data.as_str());
        text.push('}');
        json_response(StatusCode::OK, text)
    }

    /// An error response.
    pub fn format_error(self, err: &HttpError) -> Response<Body> {
        match self {
            Self::Json => json_response(err.code, err.message.clone()),
            Self::ExtJs => {
                let mut errors = Map::new();
                let message = match &err.param_errors {
                    Some(list) => {
                        for (name, msg) in list.entries() {
                            errors.insert(name.clone(), Value::String(msg.clone()));
                        }
                        "parameter verification errors".to_string()
                    }
                    None => err.message.clone(),
                };
                let body = serde_json::json!({
                    "message": message,
                    "errors": errors,
                    "success": false,
                    "status": err.code.as_u16(),
                });
                json_response(StatusCode::OK, body.to_string())
            }
        }
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full_body(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    response
}

/// A plain-text error without content type (used before the output format is known and for
/// authentication failures).
pub fn plain_error(err: &HttpError) -> Response<Body> {
    let mut response = Response::new(full_body(err.message.clone()));
    *response.status_mut() = err.code;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParameterError;
    use http_body_util::BodyExt;

    async fn body_text(resp: Response<Body>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_envelope_is_key_sorted() {
        let mut attrs = Map::new();
        attrs.insert("total".into(), Value::from(3));
        attrs.insert("digest".into(), Value::from("ab"));
        let resp =
            OutputFormat::Json.format_data(serde_json::json!({"z":1,"a":{"y":2,"b":3}}), attrs);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], JSON_CONTENT_TYPE);
        assert_eq!(
            body_text(resp).await,
            r#"{"data":{"a":{"b":3,"y":2},"z":1},"digest":"ab","total":3}"#
        );
    }

    #[tokio::test]
    async fn extjs_success_and_errors() {
        let resp = OutputFormat::ExtJs.format_data(Value::Null, Map::new());
        assert_eq!(
            body_text(resp).await,
            r#"{"data":null,"status":200,"success":true}"#
        );

        let mut perr = ParameterError::new();
        perr.push("store", "parameter is missing and it is not optional.");
        let resp = OutputFormat::ExtJs.format_error(&perr.into());
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            body_text(resp).await,
            r#"{"errors":{"store":"parameter is missing and it is not optional."},"message":"parameter verification errors","status":400,"success":false}"#
        );

        let resp = OutputFormat::Json.format_error(&HttpError::not_found("Path '/x' not found."));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[CONTENT_TYPE], JSON_CONTENT_TYPE);
        assert_eq!(body_text(resp).await, "Path '/x' not found.");
    }

    #[tokio::test]
    async fn serialized_data_keeps_field_order() {
        #[derive(serde::Serialize)]
        struct Task {
            upid: &'static str,
            node: &'static str,
            endtime: Option<i64>,
        }
        let data = JsonText::from_serialize(&[Task {
            upid: "U",
            node: "localhost",
            endtime: None,
        }])
        .unwrap();
        let mut attrs = Map::new();
        attrs.insert("total".into(), Value::from(1));
        let resp = OutputFormat::Json.format_serialized(&data, attrs.clone());
        assert_eq!(resp.headers()[CONTENT_TYPE], JSON_CONTENT_TYPE);
        assert_eq!(
            body_text(resp).await,
            r#"{"total":1,"data":[{"upid":"U","node":"localhost","endtime":null}]}"#
        );
        let resp = OutputFormat::ExtJs.format_serialized(&data, attrs);
        assert_eq!(
            body_text(resp).await,
            r#"{"status":200,"success":true,"total":1,"data":[{"upid":"U","node":"localhost","endtime":null}]}"#
        );
    }

    #[test]
    fn unknown_format() {
        assert_eq!(
            OutputFormat::from_component("xml").unwrap_err().message,
            "Unsupported output format 'xml'."
        );
    }
}
