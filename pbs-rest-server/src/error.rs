//! The error type every handler and every stage of request processing returns.

use std::fmt;

use http::StatusCode;

/// One failed parameter: its name (with `/[index]` for array items) and the reason.
pub type ParamErrorEntry = (String, String);

/// Collected parameter verification failures of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterError {
    entries: Vec<ParamErrorEntry>,
}

impl ParameterError {
    /// An empty error list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure for parameter `name`.
    pub fn push(&mut self, name: impl Into<String>, message: impl Into<String>) {
        self.entries.push((name.into(), message.into()));
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of recorded failures.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The recorded failures in order.
    pub fn entries(&self) -> &[ParamErrorEntry] {
        &self.entries
    }

    /// `Ok(())` if empty, the collected errors otherwise.
    pub fn into_result(self) -> Result<(), ParameterError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ParameterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entries.as_slice() {
            [] => Ok(()),
            [(name, msg)] => write!(f, "parameter verification failed - '{name}': {msg}"),
            list => {
                f.write_str("parameter verification failed:")?;
                for (name, msg) in list {
                    write!(f, "\n- '{name}': {msg}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ParameterError {}

/// An error answered to the client: status code plus plain message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// HTTP status code of the answer (400 unless a handler chose another).
    pub code: StatusCode,
    /// Message text sent as body.
    pub message: String,
    /// Set for parameter verification failures (the `extjs` format lists them).
    pub param_errors: Option<ParameterError>,
}

impl HttpError {
    /// An error with an explicit status code.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param_errors: None,
        }
    }

    /// A `400 Bad Request` error (the default status of handler errors).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A `404 Not Found` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A `500 Internal Server Error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

impl From<ParameterError> for HttpError {
    fn from(err: ParameterError) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            message: err.to_string(),
            param_errors: Some(err),
        }
    }
}

/// Handler code written with `anyhow` fails with 400 and the error chain's top message,
/// unless the error is (or wraps) an `HttpError`, whose status is kept.
impl From<anyhow::Error> for HttpError {
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<HttpError>() {
            Ok(http_err) => http_err,
            Err(err) => Self::bad_request(err.to_string()),
        }
    }
}

/// Shorthand for `Err(HttpError::new(code, format!(...)))`.
#[macro_export]
macro_rules! http_bail {
    ($code:ident, $($fmt:tt)+) => {
        return Err($crate::HttpError::new(::http::StatusCode::$code, format!($($fmt)+)).into())
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_parameter_error_is_one_line() {
        let mut err = ParameterError::new();
        err.push("store", "parameter is missing and it is not optional.");
        assert_eq!(
            err.to_string(),
            "parameter verification failed - 'store': parameter is missing and it is not optional."
        );
    }

    #[test]
    fn several_parameter_errors_are_listed() {
        let mut err = ParameterError::new();
        err.push("a", "x");
        err.push("b", "y");
        assert_eq!(
            err.to_string(),
            "parameter verification failed:\n- 'a': x\n- 'b': y"
        );
        let http: HttpError = err.into();
        assert_eq!(http.code, StatusCode::BAD_REQUEST);
        assert_eq!(http.param_errors.map(|e| e.len()), Some(2));
    }

    #[test]
    fn anyhow_keeps_http_status() {
        let err = anyhow::Error::new(HttpError::not_found("gone"));
        let http = HttpError::from(err);
        assert_eq!(http.code, StatusCode::NOT_FOUND);
        assert_eq!(
            HttpError::from(anyhow::anyhow!("plain")).code,
            StatusCode::BAD_REQUEST
        );
    }
}
