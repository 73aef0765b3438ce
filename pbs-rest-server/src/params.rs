//! Collects handler parameters from path captures, query string and request body.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http_body_util::BodyExt;
use percent_encoding::percent_decode;
use serde_json::Value;

use crate::error::{HttpError, ParameterError};
use crate::schema::ObjectSchema;

/// Bodies of JSON/form requests must be smaller than this.
pub const MAX_BODY_SIZE: usize = 64 * 1024;

/// Splits `application/x-www-form-urlencoded` data into decoded pairs (`+` is a space;
/// invalid UTF-8 is replaced).
pub fn parse_form(data: &[u8]) -> Vec<(String, String)> {
    data.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|b| *b == b'=') {
                Some(pos) => (&pair[..pos], &pair[pos + 1..]),
                None => (pair, &[][..]),
            };
            (decode_form_component(key), decode_form_component(value))
        })
        .collect()
}

fn decode_form_component(data: &[u8]) -> String {
    let replaced: Vec<u8> = data
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_decode(&replaced).decode_utf8_lossy().into_owned()
}

/// How the body of a request is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded` or no content type.
    Form,
    /// `application/json`.
    Json,
}

/// Classifies the content type: only the part before the first `;` counts, compared
/// byte-exactly.
pub fn classify_content_type(parts: &Parts) -> Result<BodyKind, HttpError> {
    let Some(value) = parts.headers.get(CONTENT_TYPE) else {
        return Ok(BodyKind::Form);
    };
    let bytes = value.as_bytes();
    let media = match bytes.iter().position(|b| *b == b';') {
        Some(pos) => &bytes[..pos],
        None => bytes,
    };
    match media {
        b"application/x-www-form-urlencoded" => Ok(BodyKind::Form),
        b"application/json" => Ok(BodyKind::Json),
        _ => Err(HttpError::bad_request(format!(
            "unsupported content type {:?}",
            value.to_str()
        ))),
    }
}

/// Reads a whole body, failing once it reaches [`MAX_BODY_SIZE`].
pub async fn read_limited_body<B>(body: B) -> Result<Bytes, HttpError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut acc = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| HttpError::bad_request(format!("{err}")))?;
        if let Ok(data) = frame.into_data() {
            if acc.len() + data.len() >= MAX_BODY_SIZE {
                return Err(HttpError::bad_request("Request body too large"));
            }
            acc.extend_from_slice(&data);
        }
    }
    Ok(acc.freeze())
}

fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| parse_form(q.as_bytes()))
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key != "_dc")
        .collect()
}

/// Parameters of a raw or upgrade handler: query string and path captures only.
pub fn query_parameters(
    parts: &Parts,
    captures: &BTreeMap<String, String>,
    schema: &ObjectSchema,
) -> Result<Value, HttpError> {
    let mut pairs = query_pairs(parts);
    pairs.extend(captures.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut params = schema.parse_strings(&pairs)?;
    schema.apply_defaults(&mut params);
    Ok(params)
}

/// Parameters of a JSON handler from the already read body.
///
/// JSON bodies ignore the query string; path captures are merged into them. Form bodies are
/// combined with the query string and the captures.
pub fn body_parameters(
    parts: &Parts,
    body: &[u8],
    captures: &BTreeMap<String, String>,
    schema: &ObjectSchema,
) -> Result<Value, HttpError> {
    let kind = classify_content_type(parts)?;
    let text = std::str::from_utf8(body).map_err(|err| HttpError::bad_request(err.to_string()))?;
    let mut params = match kind {
        BodyKind::Json => {
            let mut params: Value = if text.is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(text).map_err(|err| HttpError::bad_request(err.to_string()))?
            };
            if let Value::Object(map) = &mut params {
                let mut errors = ParameterError::new();
                for (key, value) in captures {
                    if let Some(prop) = schema.lookup(key) {
                        match prop.kind.parse_simple(value) {
                            Ok(parsed) => {
                                map.insert(key.clone(), parsed);
                            }
                            Err(err) => errors.push(key.clone(), err),
                        }
                    }
                }
                errors.into_result()?;
            }
            schema.verify_json(&params)?;
            params
        }
        BodyKind::Form => {
            let mut pairs = parse_form(text.as_bytes());
            pairs.extend(query_pairs(parts));
            pairs.extend(captures.iter().map(|(k, v)| (k.clone(), v.clone())));
            schema.parse_strings(&pairs)?
        }
    };
    schema.apply_defaults(&mut params);
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ParamSchema;
    use serde_json::json;

    fn parts(uri: &str, content_type: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn schema() -> ObjectSchema {
        ObjectSchema::new()
            .param(ParamSchema::string("store"))
            .param(ParamSchema::integer("size").optional())
            .param(ParamSchema::string("name").optional())
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form(b"a=b+c&ns=a%2Fb&&empty&x=%C3%A4"),
            vec![
                ("a".into(), "b c".into()),
                ("ns".into(), "a/b".into()),
                ("empty".into(), "".into()),
                ("x".into(), "ä".into()),
            ]
        );
    }

    #[test]
    fn content_type_classification_is_exact() {
        let classify = |ct| classify_content_type(&parts("/", ct));
        assert_eq!(classify(None).unwrap(), BodyKind::Form);
        assert_eq!(
            classify(Some("application/json; charset=UTF-8")).unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            classify(Some("application/json;charset=UTF-8")).unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            classify(Some("application/x-www-form-urlencoded")).unwrap(),
            BodyKind::Form
        );
        assert_eq!(
            classify(Some("Application/JSON")).unwrap_err().message,
            "unsupported content type Ok(\"Application/JSON\")"
        );
        assert_eq!(
            classify(Some(" application/json")).unwrap_err().message,
            "unsupported content type Ok(\" application/json\")"
        );
    }

    #[test]
    fn json_body_ignores_query_and_merges_captures() {
        let mut captures = BTreeMap::new();
        captures.insert("store".to_string(), "s1".to_string());
        let p = parts("/x?name=ignored&_dc=1", Some("application/json"));
        let value = body_parameters(&p, br#"{"size":5}"#, &captures, &schema()).unwrap();
        assert_eq!(value, json!({"store":"s1","size":5}));
        let err = body_parameters(&p, br#"{"size":"5"}"#, &captures, &schema()).unwrap_err();
        assert_eq!(
            err.message,
            "parameter verification failed - 'size': Expected integer value."
        );
        let value = body_parameters(&p, b"", &captures, &schema()).unwrap();
        assert_eq!(value, json!({"store":"s1"}));
    }

    #[test]
    fn form_body_merges_query_and_drops_dc() {
        let p = parts("/x?size=7&_dc=123", None);
        let value = body_parameters(&p, b"store=s2", &BTreeMap::new(), &schema()).unwrap();
        assert_eq!(value, json!({"store":"s2","size":7}));
        let err = body_parameters(&p, b"store=s2&size=8", &BTreeMap::new(), &schema()).unwrap_err();
        assert_eq!(
            err.message,
            "parameter verification failed - 'size': duplicate parameter."
        );
    }

    #[tokio::test]
    async fn body_limit() {
        let small = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_BODY_SIZE - 1]));
        assert_eq!(
            read_limited_body(small).await.unwrap().len(),
            MAX_BODY_SIZE - 1
        );
        let big = http_body_util::Full::new(Bytes::from(vec![b'a'; MAX_BODY_SIZE]));
        assert_eq!(
            read_limited_body(big).await.unwrap_err().message,
            "Request body too large"
        );
    }
}
