//! The listeners of `korvet serve`: the main one (host, port, security protocol) and those of
//! `KORVET_SERVER_LISTENERS`, with the addresses advertised for them and the TLS configuration
//! the SSL and SASL_SSL ones share.

use korvet_core::security::{Listener, SecurityProtocol};
use korvet_runtime_common::tls::{ClientAuth, TlsAcceptor, TlsFiles};
use std::sync::Arc;

/// One `PROTOCOL://host:port` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub protocol: SecurityProtocol,
    /// Empty for "every interface", as in Kafka's `PLAINTEXT://:9092`.
    pub host: String,
    pub port: u16,
}

/// Reads a listener list; every protocol may appear once.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (name, address) = item.split_once("://").ok_or_else(|| format!("{item:?} is not PROTOCOL://host:port"))?;
        let protocol = SecurityProtocol::from_name(name)
            .ok_or_else(|| format!("{name:?} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"))?;
        let (host, port) = address.rsplit_once(':').ok_or_else(|| format!("{item:?} has no port"))?;
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("{item:?} has no valid port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if entries.iter().any(|e| e.protocol == protocol) {
            return Err(format!("listener {} is named twice", protocol.name()));
        }
        entries.push(Entry { protocol, host, port });
    }
    Ok(entries)
}

/// A listener to open: where to bind, and what the core knows of it.
#[derive(Clone, Debug)]
pub struct Planned {
    pub bind_host: String,
    pub port: u16,
    pub listener: Listener,
}

/// The further listeners with their advertised addresses, checked against the main one.
pub fn plan(
    main: SecurityProtocol,
    main_host: &str,
    advertised_host: &str,
    listeners: Option<&str>,
    advertised: Option<&str>,
) -> Result<Vec<Planned>, String> {
    let extra = listeners.map(parse).transpose()?.unwrap_or_default();
    let advertised = advertised.map(parse).transpose()?.unwrap_or_default();
    if let Some(entry) = extra.iter().find(|e| e.protocol == main) {
        return Err(format!(
            "KORVET_SERVER_LISTENERS names {}, the main listener's protocol (KORVET_SERVER_SECURITY_PROTOCOL); give each listener its own protocol",
            entry.protocol.name()
        ));
    }
    if let Some(entry) = advertised.iter().find(|a| !extra.iter().any(|e| e.protocol == a.protocol)) {
        return Err(format!("KORVET_SERVER_ADVERTISED_LISTENERS names {}, which KORVET_SERVER_LISTENERS does not", entry.protocol.name()));
    }
    Ok(extra
        .into_iter()
        .map(|entry| {
            let bind_host = if entry.host.is_empty() { main_host.to_string() } else { entry.host.clone() };
            let (host, port) = match advertised.iter().find(|a| a.protocol == entry.protocol) {
                Some(a) => (a.host.clone(), a.port),
                None => match bind_host.as_str() {
                    "0.0.0.0" | "::" | "" => (advertised_host.to_string(), entry.port),
                    host => (host.to_string(), entry.port),
                },
            };
            Planned { bind_host, port: entry.port, listener: Listener { protocol: entry.protocol, advertised_host: host, advertised_port: i32::from(port) } }
        })
        .collect())
}

/// The TLS configuration of the SSL and SASL_SSL listeners, when any listener needs one.
pub fn tls(
    protocols: &[SecurityProtocol],
    cert: Option<&str>,
    key: Option<&str>,
    client_ca: Option<&str>,
    client_auth: &str,
) -> Result<Option<Arc<TlsAcceptor>>, String> {
    if !protocols.iter().any(|p| p.uses_tls()) {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err("an SSL or SASL_SSL listener needs KORVET_TLS_CERT_FILE and KORVET_TLS_KEY_FILE".into());
    };
    let client_auth = match client_auth {
        "required" => ClientAuth::Required,
        "requested" => ClientAuth::Requested,
        _ => ClientAuth::None,
    };
    let files = TlsFiles { cert: cert.into(), key: key.into(), client_ca: client_ca.map(Into::into), client_auth };
    TlsAcceptor::load(files).map(|acceptor| Some(Arc::new(acceptor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_parse_and_advertise_as_kafka_does() {
        let planned = plan(
            SecurityProtocol::Plaintext,
            "0.0.0.0",
            "broker-1",
            Some("SASL_SSL://0.0.0.0:9093, SSL://:9094,SASL_PLAINTEXT://10.0.0.5:9095"),
            Some("SASL_SSL://broker-1.example.com:19093"),
        )
        .unwrap();
        let shown: Vec<(String, &str, String, i32)> = planned
            .iter()
            .map(|p| (format!("{}:{}", p.bind_host, p.port), p.listener.name(), p.listener.advertised_host.clone(), p.listener.advertised_port))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("0.0.0.0:9093".into(), "SASL_SSL", "broker-1.example.com".into(), 19093),
                ("0.0.0.0:9094".into(), "SSL", "broker-1".into(), 9094),
                ("10.0.0.5:9095".into(), "SASL_PLAINTEXT", "10.0.0.5".into(), 9095),
            ]
        );
        assert!(parse("SSL://:1,SSL://:2").unwrap_err().contains("twice"));
        assert!(parse("TLS://:1").is_err());
        assert!(parse("SSL://host").is_err());
        assert!(plan(SecurityProtocol::Ssl, "h", "h", Some("SSL://:1"), None).is_err());
        assert!(plan(SecurityProtocol::Plaintext, "h", "h", Some("SSL://:1"), Some("SASL_SSL://x:2")).is_err());
    }
}
