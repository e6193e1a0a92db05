//! The process's one TLS configuration: every Exact client uses it, and the connector hands it to the AWS SDK's
//! clients (`store::AwsClients::from_env`).
//!
//! The roots are Mozilla's CA list compiled into the binary (`webpki-roots`, already in trust-anchor form): building
//! the configuration reads no file and parses no certificate, so a cold start does not scan the image's certificate
//! store (about 150 file opens for every HTTP client that loaded it) and does not depend on that store. The list is
//! as current as the build; a certificate added to the system store (a proxy's CA) is not trusted.

use std::sync::{Arc, LazyLock};

use rustls::ClientConfig;

static CONFIG: LazyLock<Arc<ClientConfig>> = LazyLock::new(|| Arc::new(build()));

/// The shared configuration: built on first use, then the same `Arc` for every caller.
pub fn client_config() -> Arc<ClientConfig> {
    Arc::clone(&CONFIG)
}

/// Mozilla's roots, as compiled in.
fn roots() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn build() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots())
        .with_no_client_auth();
    // Both clients speak HTTP/1.1 only (reqwest is built without `http2`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_configuration_per_process() {
        assert!(Arc::ptr_eq(&client_config(), &client_config()));
    }

    #[test]
    fn roots_are_compiled_in() {
        // Every root comes from webpki-roots (no certificate file is read), and there are Mozilla's many.
        let roots = roots();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(roots.len() > 100, "{} roots", roots.len());
        let config = client_config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
