//! The HTTP client every Exact call goes through.

use std::time::Duration;

/// A reqwest client for Exact: rustls with the process's one TLS configuration ([`crate::tls`]), redirects never
/// followed (a redirect from Exact means a login page or a wrong host, and following one could send a token
/// elsewhere), explicit timeouts.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    http_client_over(&crate::tls::client_config(), timeout)
}

fn http_client_over(tls: &rustls::ClientConfig, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        // A clone shares the root store and the crypto provider (both behind `Arc`s).
        .tls_backend_preconfigured(tls.clone())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .expect("a reqwest client with rustls and timeouts can always be built")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// The first bytes the client sends to a listener on loopback: its TLS ClientHello.
    async fn client_hello(client: reqwest::Client) -> Vec<u8> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("https://{}/", listener.local_addr().expect("addr"));
        let hello = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0; 8192];
            let n = s.read(&mut buf).expect("read");
            buf.truncate(n);
            buf
        });
        assert!(
            client.get(url).send().await.is_err(),
            "the listener speaks no TLS"
        );
        hello.join().expect("listener")
    }

    #[tokio::test]
    async fn requests_go_through_the_given_tls_configuration() {
        // A configuration told apart by its ALPN offer, which travels in the ClientHello.
        let mut marked = rustls::ClientConfig::clone(&crate::tls::client_config());
        marked.alpn_protocols = vec![b"psa-exact-marker".to_vec()];
        let hello = client_hello(http_client_over(&marked, Duration::from_secs(2))).await;
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        assert!(hello.windows(16).any(|w| w == b"psa-exact-marker"));
    }

    #[tokio::test]
    async fn the_exact_client_speaks_tls_with_the_shared_configuration() {
        let hello = client_hello(http_client(Duration::from_secs(2))).await;
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record");
        assert!(hello.windows(8).any(|w| w == b"http/1.1"));
    }
}
