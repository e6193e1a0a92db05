//! The AWS SDK's HTTP client: reqwest with the process's one rustls configuration.
//!
//! The SDK's own client (aws-smithy-http-client) builds its rustls configuration itself, from the image's
//! certificate store or from PEM certificates it parses again for every connector: it takes no ready configuration.
//! This adapter takes one, so DynamoDB, Secrets Manager and Exact share a root store built once, from roots compiled
//! in. Timeouts, and which errors the SDK retries, map as in the SDK's own client.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;

/// An SDK HTTP client over `tls` (plain `http://` endpoints, such as moto, need none of it).
pub fn sdk_http_client(tls: Arc<rustls::ClientConfig>) -> SharedHttpClient {
    SharedHttpClient::new(ReqwestHttpClient {
        tls,
        clients: Mutex::default(),
    })
}

#[derive(Debug)]
struct ReqwestHttpClient {
    tls: Arc<rustls::ClientConfig>,
    /// One reqwest client (one connection pool) per connect timeout; the SDK asks for a connector on every attempt.
    clients: Mutex<Vec<(Option<Duration>, reqwest::Client)>>,
}

impl ReqwestHttpClient {
    fn client(&self, connect_timeout: Option<Duration>) -> reqwest::Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = clients.iter().find(|(t, _)| *t == connect_timeout) {
            return c.clone();
        }
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&self.tls))
            // As the SDK's client: no redirects, no proxy from the environment.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(t) = connect_timeout {
            builder = builder.connect_timeout(t);
        }
        let client = builder.build().expect(
            "a reqwest client with a rustls configuration and timeouts can always be built",
        );
        clients.push((connect_timeout, client.clone()));
        client
    }

    fn connector(&self, settings: &HttpConnectorSettings) -> ReqwestConnector {
        ReqwestConnector {
            client: self.client(settings.connect_timeout()),
            read_timeout: settings.read_timeout(),
        }
    }
}

impl HttpClient for ReqwestHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.connector(settings))
    }
}

#[derive(Debug)]
struct ReqwestConnector {
    client: reqwest::Client,
    /// Until the response's head has arrived.
    read_timeout: Option<Duration>,
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let request = to_reqwest(request)?;
            let sent = client.execute(request);
            let response = match read_timeout {
                Some(t) => tokio::time::timeout(t, sent).await.map_err(|_| {
                    ConnectorError::timeout(format!("no response within {t:?}").into())
                })?,
                None => sent.await,
            }
            .map_err(classify)?;
            let (head, body) = http::Response::from(response).into_parts();
            HttpResponse::try_from(http::Response::from_parts(
                head,
                SdkBody::from_body_1_x(body),
            ))
            .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

fn to_reqwest(request: HttpRequest) -> Result<reqwest::Request, ConnectorError> {
    let request = request
        .try_into_http1x()
        .map_err(|e| ConnectorError::user(e.into()))?;
    let (head, body) = request.into_parts();
    // DynamoDB and Secrets Manager requests are small JSON documents, always in memory.
    let body = body
        .bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| ConnectorError::user("streaming request bodies are not supported".into()))?;
    reqwest::Request::try_from(http::Request::from_parts(head, body))
        .map_err(|e| ConnectorError::user(e.into()))
}

/// As the SDK's own client: timeouts and broken connections are transient (retried); a TLS failure (an untrusted
/// certificate, a wrong name) is not.
fn classify(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        return ConnectorError::timeout(e.into());
    }
    if chain(&e).any(|s| s.is::<rustls::Error>()) {
        return ConnectorError::other(e.into(), None);
    }
    if e.is_connect() || chain(&e).any(|s| s.is::<std::io::Error>()) {
        return ConnectorError::io(e.into());
    }
    if e.is_request() || e.is_body() {
        return ConnectorError::other(e.into(), Some(ErrorKind::TransientError));
    }
    ConnectorError::other(e.into(), None)
}

/// `e` and its sources; an `io::Error`'s payload counts as its source (rustls errors travel inside one).
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => e.source(),
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    fn client() -> ReqwestHttpClient {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS 1.2 and 1.3")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        ReqwestHttpClient {
            tls: Arc::new(tls),
            clients: Mutex::default(),
        }
    }

    fn settings(read_timeout: Duration) -> HttpConnectorSettings {
        HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(read_timeout)
            .build()
    }

    fn post(url: &str) -> HttpRequest {
        let request = http::Request::builder()
            .method("POST")
            .uri(url)
            .header("x-amz-target", "secretsmanager.GetSecretValue")
            .body(SdkBody::from(r#"{"SecretId":"s"}"#))
            .expect("a valid request");
        HttpRequest::try_from(request).expect("an http 1.x request converts")
    }

    /// A loopback server that reads one request and answers with `reply` (then closes), handing back what it read.
    fn serve_once(reply: &'static [u8]) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0; 8192];
            let n = s.read(&mut buf).expect("read");
            if !reply.is_empty() {
                s.write_all(reply).expect("write");
            } else {
                // Say nothing until the client gives up.
                std::thread::sleep(Duration::from_millis(500));
            }
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr.to_string(), seen)
    }

    #[tokio::test]
    async fn a_request_and_its_answer_pass_through() {
        let (addr, seen) = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nx-amzn-requestid: r1\r\n\r\n{\"ok\":true}",
        );
        let response = client()
            .connector(&settings(Duration::from_secs(2)))
            .call(post(&format!("http://{addr}/")))
            .await
            .expect("an answer");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers().get("x-amzn-requestid"), Some("r1"));
        let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
            .collect()
            .await
            .expect("the body");
        assert_eq!(body.into_bytes().as_ref(), br#"{"ok":true}"#);
        let seen = seen.join().expect("server");
        assert!(seen.starts_with("POST / HTTP/1.1\r\n"), "{seen}");
        assert!(
            seen.contains("x-amz-target: secretsmanager.GetSecretValue"),
            "{seen}"
        );
        assert!(seen.ends_with(r#"{"SecretId":"s"}"#), "{seen}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_io_and_retried() {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let err = client()
            .connector(&settings(Duration::from_secs(2)))
            .call(post(&format!("http://127.0.0.1:{port}/")))
            .await
            .expect_err("nothing listens");
        assert!(err.is_io(), "{err:?}");
    }

    #[tokio::test]
    async fn no_answer_within_the_read_timeout_is_a_timeout() {
        let (addr, _seen) = serve_once(b"");
        let err = client()
            .connector(&settings(Duration::from_millis(100)))
            .call(post(&format!("http://{addr}/")))
            .await
            .expect_err("the server says nothing");
        assert!(err.is_timeout(), "{err:?}");
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_is_not_retried() {
        // Plain HTTP where a TLS server should answer: rustls refuses it.
        let (addr, _seen) = serve_once(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        let err = client()
            .connector(&settings(Duration::from_secs(2)))
            .call(post(&format!("https://{addr}/")))
            .await
            .expect_err("no TLS");
        assert!(err.is_other() && err.as_other().is_none(), "{err:?}");
    }
}
