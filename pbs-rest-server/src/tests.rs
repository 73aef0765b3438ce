//! End-to-end tests over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use pbs_api_types::Authid;

use crate::*;

const AUTH_DELAY: Duration = Duration::from_millis(300);
const PROTO: &str = "test-protocol-v1";

struct DummyAuth;

impl ApiAuth for DummyAuth {
    fn check_auth<'a>(
        &'a self,
        headers: &'a HeaderMap,
        _method: &'a Method,
    ) -> BoxFuture<'a, Result<AuthInfo, AuthError>> {
        Box::pin(async move {
            let value = headers
                .get("authorization")
                .ok_or(AuthError::NoData)?
                .to_str()
                .map_err(|_| AuthError::Invalid("bad header".into()))?;
            let id = value
                .strip_prefix("Test ")
                .ok_or_else(|| AuthError::Invalid("invalid ticket - expired".into()))?;
            let auth_id: Authid = id
                .parse()
                .map_err(|_| AuthError::Invalid("bad authid".into()))?;
            Ok(AuthInfo {
                via_token: auth_id.is_token(),
                auth_id,
            })
        })
    }

    fn lookup_privs(&self, auth_id: &Authid, path: &[String]) -> u64 {
        match (auth_id.to_string().as_str(), path) {
            ("user1@pbs", [a, b]) if a == "datastore" && b == "s1" => 1,
            _ => 0,
        }
    }
}

fn env_name(env: &RpcEnv) -> &'static str {
    match env.env_type() {
        RpcEnvType::Public => "public",
        RpcEnvType::Privileged => "privileged",
    }
}

fn test_router(marker: &'static str) -> Router {
    let echo_schema = || {
        ObjectSchema::new()
            .param(ParamSchema::string("name").max_length(8))
            .param(
                ParamSchema::integer("count")
                    .minimum(1)
                    .maximum(10)
                    .optional(),
            )
            .param(ParamSchema::boolean("flag").default(false))
    };
    let echo = || {
        ApiMethod::new(|env: RpcEnv, params: Value| async move {
            env.set_result_attrib("total", json!(1));
            Ok(json!({ "params": params, "auth": env.auth_id().map(|a| a.to_string()) }))
        })
        .permission(Permission::Anybody)
        .parameters(echo_schema())
    };
    Router::new()
        .route(
            "/ping",
            Method::GET,
            ApiMethod::new(
                move |_env, _p| async move { Ok(json!({"pong": true, "server": marker})) },
            )
            .permission(Permission::World),
        )
        .and_then(|r| r.route("/echo/{name}", Method::GET, echo()))
        .and_then(|r| r.route("/echo/{name}", Method::POST, echo()))
        .and_then(|r| {
            r.route(
                "/admin",
                Method::GET,
                ApiMethod::new(|_env, _p| async { Ok(json!("secret")) }),
            )
        })
        .and_then(|r| {
            r.route(
                "/store/{store}",
                Method::GET,
                ApiMethod::new(|_env, p: Value| async move { Ok(p["store"].clone()) })
                    .permission(Permission::Privilege {
                        path: "/datastore/{store}",
                        privs: 1,
                        partial: false,
                    })
                    .parameters(ObjectSchema::new().param(ParamSchema::string("store"))),
            )
        })
        .and_then(|r| {
            r.route(
                "/protected",
                Method::POST,
                ApiMethod::new(|env: RpcEnv, p: Value| async move {
                    Ok(json!({
                        "env": env_name(&env),
                        "client": env.client().to_string(),
                        "auth": env.auth_id().map(|a| a.to_string()),
                        "params": p,
                    }))
                })
                .permission(Permission::Anybody)
                .protected(true)
                .parameters(ObjectSchema::new().param(ParamSchema::string("value"))),
            )
        })
        .and_then(|r| {
            r.route(
                "/slow",
                Method::GET,
                ApiMethod::new(move |_env, _p| async move {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    Ok(json!(marker))
                })
                .permission(Permission::World),
            )
        })
        .and_then(|r| {
            r.route(
                "/tasks",
                Method::GET,
                ApiMethod::serialized(|env: RpcEnv, _p| async move {
                    #[derive(serde::Serialize)]
                    struct Item {
                        zeta: u32,
                        alpha: &'static str,
                    }
                    env.set_result_attrib("total", json!(1));
                    JsonText::from_serialize(&[Item {
                        zeta: 1,
                        alpha: "a",
                    }])
                })
                .permission(Permission::World),
            )
        })
        .and_then(|r| {
            r.route(
                "/unauthorized",
                Method::GET,
                ApiMethod::new(|_env, _p| async {
                    Err(HttpError::new(StatusCode::UNAUTHORIZED, "no access"))
                })
                .permission(Permission::World),
            )
        })
        .and_then(|r| {
            r.route(
                "/upgrade",
                Method::GET,
                ApiMethod::upgrade(|req: UpgradeRequest| async move {
                    verify_upgrade_request(&req.parts, PROTO)?;
                    let on_upgrade = req.on_upgrade;
                    tokio::spawn(async move {
                        if let Ok(upgraded) = on_upgrade.await {
                            let mut io = TokioIo::new(upgraded);
                            let mut buf = [0u8; 5];
                            if io.read_exact(&mut buf).await.is_ok() {
                                buf.reverse();
                                let _ = io.write_all(&buf).await;
                            }
                        }
                    });
                    Ok(upgrade_response(PROTO))
                })
                .permission(Permission::Anybody)
                .parameters(ObjectSchema::new().param(ParamSchema::boolean("debug").optional())),
            )
        })
        .expect("test routes are consistent")
}

fn config(env_type: RpcEnvType, marker: &'static str) -> ServerConfig {
    let mut config =
        ServerConfig::new(env_type, Arc::new(test_router(marker)), Arc::new(DummyAuth));
    config.auth_failure_delay = AUTH_DELAY;
    config.permission_failure_delay = Duration::from_millis(50);
    config
}

async fn start(config: ServerConfig, transport: Transport) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_server(listener, transport, config).unwrap()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn build(method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn send_over<I>(io: I, req: Request<Full<Bytes>>) -> Reply
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    collect(sender.send_request(req).await.unwrap()).await
}

async fn call(
    addr: SocketAddr,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    send_over(stream, build(method, uri, headers, body)).await
}

async fn get(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> Reply {
    call(addr, Method::GET, uri, headers, "").await
}

const USER1: (&str, &str) = ("authorization", "Test user1@pbs");
const ROOT: (&str, &str) = ("authorization", "Test root@pam");

#[tokio::test]
async fn envelope_and_path_errors() {
    let server = start(config(RpcEnvType::Privileged, "a"), Transport::Plain).await;
    let addr = server.local_addr();

    let r = get(addr, "/api2/json/ping", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[CONTENT_TYPE], "application/json;charset=UTF-8");
    assert_eq!(r.body, r#"{"data":{"pong":true,"server":"a"}}"#);

    let r = get(addr, "//api2//extjs/ping", &[]).await;
    assert_eq!(
        r.body,
        r#"{"data":{"pong":true,"server":"a"},"status":200,"success":true}"#
    );

    let r = get(addr, "/api2/json/echo/abc?count=3&_dc=99", &[USER1]).await;
    assert_eq!(
        r.body,
        r#"{"data":{"auth":"user1@pbs","params":{"count":3,"flag":false,"name":"abc"}},"total":1}"#
    );

    let r = get(addr, "/api2/json/", &[USER1]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["data"],
        json!([{"subdir":"admin"},{"subdir":"echo"},{"subdir":"ping"},{"subdir":"protected"},
               {"subdir":"slow"},{"subdir":"store"},{"subdir":"tasks"},{"subdir":"unauthorized"},
               {"subdir":"upgrade"}])
    );

    let r = get(addr, "/api2/json/tasks", &[]).await;
    assert_eq!(r.body, r#"{"total":1,"data":[{"zeta":1,"alpha":"a"}]}"#);

    let r = get(addr, "/api2/json/nope/x", &[USER1]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, "Path '/api2/json/nope/x' not found.");
    assert_eq!(r.headers[CONTENT_TYPE], "application/json;charset=UTF-8");

    let r = call(addr, Method::PATCH, "/api2/json/ping", &[USER1], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body, "Path '/api2/json/ping' not found.");

    let r = get(addr, "/api2/extjs/nope", &[USER1]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"errors":{},"message":"Path '/api2/extjs/nope' not found.","status":404,"success":false})
    );

    let r = get(addr, "/api2/xml/ping", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "Unsupported output format 'xml'.")
    );
    assert!(r.headers.get(CONTENT_TYPE).is_none());

    let r = get(addr, "/api2", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::NOT_FOUND, "invalid api path '/api2'")
    );

    let r = get(addr, "/api2/json/.hidden", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "path contains illegal components")
    );

    let long = format!("/api2/json/ping?x={}", "a".repeat(3060));
    let r = get(addr, &long, &[]).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::URI_TOO_LONG, ""));
    let fits = format!("/api2/json/ping?_dc={}", "a".repeat(3072 - 20));
    assert_eq!(fits.len(), 3072);
    assert_eq!(get(addr, &fits, &[]).await.status, StatusCode::OK);

    let r = get(addr, "/", &[]).await;
    assert_eq!(
        r.body,
        "<center><h1>Proxmox Backup API Server</h1></center>"
    );
    assert_eq!(r.headers[CONTENT_TYPE], "text/html");
    let r = call(addr, Method::POST, "/", &[], "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "invalid http method for path")
    );

    // Deflate compression on request.
    let r = get(
        addr,
        "/api2/json/ping",
        &[("accept-encoding", "gzip, deflate")],
    )
    .await;
    assert_eq!(r.headers["content-encoding"], "deflate");
    server.shutdown().await;
}

#[tokio::test]
async fn deflate_body_decodes() {
    use std::io::Read;
    let server = start(config(RpcEnvType::Privileged, "z"), Transport::Plain).await;
    let stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(build(
            Method::GET,
            "/api2/json/ping",
            &[("accept-encoding", "deflate")],
            "",
        ))
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let mut text = String::new();
    flate2::read::ZlibDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, r#"{"data":{"pong":true,"server":"z"}}"#);
}

#[tokio::test]
async fn parameter_errors() {
    let server = start(config(RpcEnvType::Privileged, "a"), Transport::Plain).await;
    let addr = server.local_addr();

    let r = get(addr, "/api2/json/echo/abc?count=0", &[USER1]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        "parameter verification failed - 'count': value must have a minimum value of 1 (got 0)"
    );

    let r = get(addr, "/api2/json/echo/abcdefghij?count=x&bogus=1", &[USER1]).await;
    assert_eq!(
        r.body,
        "parameter verification failed:\n- 'count': invalid digit found in string\n- 'bogus': schema does not allow additional properties.\n- 'name': value may only be 8 characters long"
    );

    let r = get(addr, "/api2/extjs/echo/abc?count=11", &[USER1]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"errors":{"count":"value must have a maximum value of 10 (got 11)"},
               "message":"parameter verification errors","status":400,"success":false})
    );

    // JSON body: native types, path captures merged, query ignored.
    let json_ct = ("content-type", "application/json; charset=UTF-8");
    let r = call(
        addr,
        Method::POST,
        "/api2/json/echo/abc?count=99",
        &[USER1, json_ct],
        r#"{"count":2,"flag":true}"#,
    )
    .await;
    assert_eq!(
        r.json()["data"]["params"],
        json!({"count":2,"flag":true,"name":"abc"})
    );
    let r = call(
        addr,
        Method::POST,
        "/api2/json/echo/abc",
        &[USER1, json_ct],
        r#"{"count":"2"}"#,
    )
    .await;
    assert_eq!(
        r.body,
        "parameter verification failed - 'count': Expected integer value."
    );

    // Form body merged with the query string.
    let r = call(
        addr,
        Method::POST,
        "/api2/json/echo/abc?flag=on",
        &[USER1],
        "count=4",
    )
    .await;
    assert_eq!(
        r.json()["data"]["params"],
        json!({"count":4,"flag":true,"name":"abc"})
    );

    let r = call(
        addr,
        Method::POST,
        "/api2/json/echo/abc",
        &[USER1, ("content-type", "text/plain")],
        "",
    )
    .await;
    assert_eq!(r.body, "unsupported content type Ok(\"text/plain\")");

    let big = format!("count=1&x={}", "a".repeat(70_000));
    let r = call(addr, Method::POST, "/api2/json/echo/abc", &[USER1], &big).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "Request body too large")
    );

    let r = call(
        addr,
        Method::POST,
        "/api2/json/protected",
        &[USER1, json_ct],
        "{}",
    )
    .await;
    assert_eq!(
        r.body,
        "parameter verification failed - 'value': property is missing and it is not optional."
    );
    let r = call(addr, Method::POST, "/api2/json/protected", &[USER1], "").await;
    assert_eq!(
        r.body,
        "parameter verification failed - 'value': parameter is missing and it is not optional."
    );
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(RpcEnvType::Privileged, "a");
    cfg.auth_log = Some(Arc::new(
        FileLogger::auth_log(dir.path().join("auth.log")).unwrap(),
    ));
    cfg.access_log = Some(Arc::new(
        FileLogger::access_log(dir.path().join("access.log")).unwrap(),
    ));
    let server = start(cfg, Transport::Plain).await;
    let addr = server.local_addr();

    let t = Instant::now();
    let r = get(addr, "/api2/json/echo/abc", &[]).await;
    assert!(t.elapsed() >= AUTH_DELAY);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.body,
        "authentication failed - no authentication credentials provided."
    );
    assert!(r.headers.get(CONTENT_TYPE).is_none());

    // Unknown path without credentials: 401, not 404.
    let r = get(addr, "/api2/json/nope", &[("authorization", "Bad")]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            StatusCode::UNAUTHORIZED,
            "authentication failed - invalid ticket - expired"
        )
    );

    let r = get(addr, "/api2/json/admin", &[USER1]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "permission check failed")
    );
    let r = get(addr, "/api2/json/admin", &[ROOT]).await;
    assert_eq!(r.body, r#"{"data":"secret"}"#);
    let r = get(
        addr,
        "/api2/json/admin",
        &[("authorization", "Test root@pam!tok")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    assert_eq!(
        get(addr, "/api2/json/store/s1", &[USER1]).await.body,
        r#"{"data":"s1"}"#
    );
    assert_eq!(
        get(addr, "/api2/json/store/s2", &[USER1]).await.status,
        StatusCode::FORBIDDEN
    );

    // A handler failing with 401 is delayed as well.
    let t = Instant::now();
    let r = get(addr, "/api2/json/unauthorized", &[]).await;
    assert!(t.elapsed() >= AUTH_DELAY);
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::UNAUTHORIZED, "no access")
    );

    let auth_log = std::fs::read_to_string(dir.path().join("auth.log")).unwrap();
    let lines: Vec<&str> = auth_log.lines().collect();
    assert_eq!(lines.len(), 2, "{auth_log}");
    assert!(
        lines[0].ends_with("msg=no authentication credentials provided."),
        "{auth_log}"
    );
    assert!(
        lines[1].contains(": authentication failure; rhost=127.0.0.1:"),
        "{auth_log}"
    );

    let access = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
    let lines: Vec<&str> = access.lines().collect();
    assert_eq!(lines.len(), 8, "{access}");
    assert!(lines[0].starts_with("127.0.0.1 - - ["), "{access}");
    assert!(
        lines[0].ends_with("\"GET /api2/json/echo/abc\" 401 63 -"),
        "{access}"
    );
    assert!(lines[3].starts_with("127.0.0.1 - root@pam ["), "{access}");
    assert!(
        lines[3].ends_with("\"GET /api2/json/admin\" 200 17 -"),
        "{access}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn upgrade_route() {
    let server = start(config(RpcEnvType::Public, "a"), Transport::Plain).await;
    let addr = server.local_addr();

    let r = get(addr, "/api2/json/upgrade", &[USER1, ("upgrade", "other")]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "invalid protocol name")
    );
    let r = get(
        addr,
        "/api2/json/upgrade?debug=1&x=1",
        &[USER1, ("upgrade", PROTO)],
    )
    .await;
    assert_eq!(
        r.body,
        "parameter verification failed - 'x': schema does not allow additional properties."
    );

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn.with_upgrades());
    let resp = sender
        .send_request(build(
            Method::GET,
            "//api2/json/upgrade?debug=true",
            &[USER1, ("upgrade", PROTO)],
            "",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(resp.headers()["upgrade"], PROTO);
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    io.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    io.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"olleh");
}

fn self_signed(
    dir: &std::path::Path,
    cn: &str,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    use openssl::{
        asn1::Asn1Time, bn::BigNum, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509,
    };
    let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut builder = x509::X509Builder::new().unwrap();
    builder.set_version(2).unwrap();
    builder
        .set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(&name).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder
        .set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    builder
        .set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    builder.sign(&key, MessageDigest::sha256()).unwrap();
    let cert = builder.build();
    let key_path = dir.join("proxy.key");
    let cert_path = dir.join("proxy.pem");
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
    (key_path, cert_path, cert.to_der().unwrap())
}

async fn tls_connect(addr: SocketAddr, alpn: Option<&[u8]>) -> tokio_openssl::SslStream<TcpStream> {
    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    if let Some(alpn) = alpn {
        connector.set_alpn_protos(alpn).unwrap();
    }
    let ssl = connector
        .build()
        .configure()
        .unwrap()
        .use_server_name_indication(false)
        .into_ssl("127.0.0.1")
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut stream).connect().await.unwrap();
    stream
}

#[tokio::test]
async fn tls_http1_http2_redirect_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert, der1) = self_signed(dir.path(), "first");
    let tls = TlsAcceptorHandle::new(TlsConfig::new(&key, &cert)).unwrap();
    let server = start(
        config(RpcEnvType::Public, "tls"),
        Transport::Tls(tls.clone()),
    )
    .await;
    let addr = server.local_addr();

    // HTTP/1.1; ALPN offered by the client is not answered.
    let stream = tls_connect(addr, Some(b"\x02h2\x08http/1.1")).await;
    assert_eq!(stream.ssl().selected_alpn_protocol(), None);
    assert_eq!(
        stream.ssl().peer_certificate().unwrap().to_der().unwrap(),
        der1
    );
    let r = send_over(stream, build(Method::GET, "/api2/json/ping", &[], "")).await;
    assert_eq!(r.body, r#"{"data":{"pong":true,"server":"tls"}}"#);

    // HTTP/2 with prior knowledge on the same port.
    let stream = tls_connect(addr, None).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = build(
        Method::GET,
        "https://localhost/api2/json/echo/h2?count=2",
        &[USER1],
        "",
    );
    *req.version_mut() = http::Version::HTTP_2;
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let r = collect(resp).await;
    assert_eq!(
        r.json()["data"]["params"],
        json!({"count":2,"flag":false,"name":"h2"})
    );
    // Upgrades need HTTP/1.
    let mut req = build(
        Method::GET,
        "https://localhost/api2/json/upgrade",
        &[USER1, ("upgrade", PROTO)],
        "",
    );
    *req.version_mut() = http::Version::HTTP_2;
    let r = collect(sender.send_request(req).await.unwrap()).await;
    assert_eq!(
        r.body,
        "unexpected http version 'HTTP/2.0' (expected version < 2)"
    );

    // Plain HTTP on the TLS port is redirected.
    let r = get(addr, "/api2/json/ping", &[("host", "pbs.example:8007")]).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers["location"], "https://pbs.example:8007");
    let r = call(
        addr,
        Method::POST,
        "/x",
        &[("host", "pbs.example:8007")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    let r = get(addr, "/", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::BAD_REQUEST, ""));

    // Certificate reload: new handshakes see the new certificate.
    let (_, _, der2) = self_signed(dir.path(), "second");
    tls.reload().unwrap();
    let stream = tls_connect(addr, None).await;
    assert_eq!(
        stream.ssl().peer_certificate().unwrap().to_der().unwrap(),
        der2
    );
    // A broken file keeps the old acceptor.
    std::fs::write(&cert, "garbage").unwrap();
    assert!(tls.reload().is_err());
    let stream = tls_connect(addr, None).await;
    assert_eq!(
        stream.ssl().peer_certificate().unwrap().to_der().unwrap(),
        der2
    );
}

#[tokio::test]
async fn protected_calls_are_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut api_cfg = config(RpcEnvType::Privileged, "api");
    api_cfg.access_log = Some(Arc::new(
        FileLogger::access_log(dir.path().join("api.log")).unwrap(),
    ));
    let api = start(api_cfg, Transport::Plain).await;

    let mut proxy_cfg = config(RpcEnvType::Public, "proxy");
    proxy_cfg.forward_to = Some(api.local_addr());
    proxy_cfg.access_log = Some(Arc::new(
        FileLogger::access_log(dir.path().join("proxy.log")).unwrap(),
    ));
    let proxy = start(proxy_cfg, Transport::Plain).await;

    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let client_addr = stream.local_addr().unwrap();
    let r = send_over(
        stream,
        build(
            Method::POST,
            "/api2/json/protected",
            &[USER1, ("content-type", "application/json")],
            r#"{"value":"v"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["data"],
        json!({"env":"privileged","client":client_addr.to_string(),"auth":"user1@pbs","params":{"value":"v"}})
    );
    // Errors of the API daemon are relayed verbatim.
    let r = call(
        proxy.local_addr(),
        Method::POST,
        "/api2/json/protected?x=1",
        &[USER1],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        "parameter verification failed - 'x': schema does not allow additional properties."
    );
    // Authentication is checked in the proxy first.
    let r = call(
        proxy.local_addr(),
        Method::POST,
        "/api2/json/protected",
        &[],
        "value=1",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Unprotected calls are served by the proxy itself.
    assert_eq!(
        get(proxy.local_addr(), "/api2/json/ping", &[]).await.json()["data"]["server"],
        "proxy"
    );

    let proxy_log = std::fs::read_to_string(dir.path().join("proxy.log")).unwrap();
    assert_eq!(proxy_log.lines().count(), 2, "{proxy_log}");
    let api_log = std::fs::read_to_string(dir.path().join("api.log")).unwrap();
    assert_eq!(api_log.lines().count(), 2, "{api_log}");
    assert!(
        api_log.starts_with(&format!("{} - user1@pbs [", client_addr.ip())),
        "{api_log}"
    );

    // Nothing listening: the error is reported by the proxy.
    let mut proxy_cfg = config(RpcEnvType::Public, "proxy");
    let unused = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    proxy_cfg.forward_to = Some(unused);
    let proxy2 = start(proxy_cfg, Transport::Plain).await;
    let r = call(
        proxy2.local_addr(),
        Method::POST,
        "/api2/json/protected",
        &[USER1],
        "value=1",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("unable to forward request"), "{}", r.body);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let server = start(config(RpcEnvType::Privileged, "slow"), Transport::Plain).await;
    let addr = server.local_addr();
    let slow = tokio::spawn(async move { get(addr, "/api2/json/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(server.open_connections(), 1);
    let t = Instant::now();
    server.shutdown().await;
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "shutdown waited for the request"
    );
    let r = slow.await.unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::OK, r#"{"data":"slow"}"#)
    );
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn dropped_handle_keeps_serving_and_custom_pages() {
    let mut cfg = config(RpcEnvType::Public, "ui");
    cfg.non_api = Some(Arc::new(|parts: http::request::Parts, _client| {
        Box::pin(async move {
            http::Response::new(router::full_body(format!("page {}", parts.uri.path())))
        })
    }));
    let server = start(cfg, Transport::Plain).await;
    let addr = server.local_addr();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(addr, "/index.html", &[]).await.body, "page /index.html");
    let r = call(addr, Method::PUT, "/index.html", &[], "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::BAD_REQUEST, "invalid http method for path")
    );
}

#[tokio::test]
async fn listener_hand_over_keeps_serving() {
    let mut old = start(config(RpcEnvType::Privileged, "old"), Transport::Plain).await;
    let addr = old.local_addr();
    let slow = tokio::spawn(async move { get(addr, "/api2/json/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let listener = old.hand_over_listener().await.unwrap();
    let listener = TcpListener::from_std(listener).unwrap();
    let new = spawn_server(
        listener,
        Transport::Plain,
        config(RpcEnvType::Privileged, "new"),
    )
    .unwrap();
    assert_eq!(new.local_addr(), addr);

    let r = get(addr, "/api2/json/ping", &[]).await;
    assert_eq!(r.json()["data"]["server"], "new");
    let r = slow.await.unwrap();
    assert_eq!(r.body, r#"{"data":"old"}"#);
    tokio::time::timeout(Duration::from_secs(5), old.wait_connections())
        .await
        .unwrap();
    assert!(old.hand_over_listener().await.is_err());
    new.shutdown().await;
}
