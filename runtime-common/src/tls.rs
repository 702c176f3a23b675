//! TLS for Kafka listeners, with rustls, once for both runtimes: the handshake runs in the
//! connection's own task before the broker hears of the connection, then the read loop decrypts
//! what arrives and the write loop encrypts what the broker sends (both off the broker task).
//!
//! Certificates are read from PEM files and read again when they change ([`TlsAcceptor::reload`]),
//! so that a rotated certificate is served to new connections without a restart.

use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// Asked for; a client without one is anonymous, one with an untrusted one is refused.
    Requested,
    /// A trusted client certificate is required.
    Required,
}

/// Where a listener's certificate, key and trusted client CAs are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Accepts TLS connections with the configuration last read from the files.
pub struct TlsAcceptor {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    /// Modification times of the files the configuration was read from.
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

impl TlsAcceptor {
    pub fn load(files: TlsFiles) -> Result<Self, String> {
        let stamps = stamps(&files);
        let config = server_config(&files)?;
        Ok(TlsAcceptor { files, config: RwLock::new(Arc::new(config)), stamps: Mutex::new(stamps) })
    }

    /// Reads the files again if any changed since they were last read. Returns whether the
    /// configuration changed; a file that cannot be read keeps the old configuration (and says
    /// why), so that a half-written certificate never stops the listener.
    pub fn reload(&self) -> Result<bool, String> {
        let now = stamps(&self.files);
        let mut last = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        if *last == now {
            return Ok(false);
        }
        let config = server_config(&self.files)?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        *last = now;
        Ok(true)
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub(crate) fn connection(&self) -> Result<ServerConnection, rustls::Error> {
        let config = self.config.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut connection = ServerConnection::new(config)?;
        // Responses are encrypted as they are written and drained at once: no limit is needed,
        // and a limit would make large responses fail to encrypt.
        connection.set_buffer_limit(None);
        Ok(connection)
    }
}

fn stamps(files: &TlsFiles) -> Vec<Option<SystemTime>> {
    [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs = korvet_tls::certificates(&files.cert)?;
    let key = korvet_tls::private_key(&files.key)?;
    let provider = korvet_tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?;
    let builder = match (files.client_auth, &files.client_ca) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err("client authentication needs KORVET_TLS_CLIENT_CA_FILE".into()),
        (auth, Some(ca)) => {
            let roots = korvet_tls::roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|err| format!("client CA {}: {err}", ca.display()))?)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|err| format!("the certificate {} and key {} do not fit: {err}", files.cert.display(), files.key.display()))
}

/// A server handshake without I/O: the caller sends what [`Handshake::output`] returns and feeds
/// what the client sends to [`Handshake::receive`], until [`Handshake::is_done`]. The listeners'
/// tasks drive it over sockets; the `tls` fuzz target drives it with arbitrary bytes.
pub struct Handshake {
    connection: ServerConnection,
}

impl Handshake {
    pub fn new(acceptor: &TlsAcceptor) -> Result<Self, rustls::Error> {
        Ok(Handshake { connection: acceptor.connection()? })
    }

    /// What TLS has to send the client now (possibly nothing).
    pub fn output(&mut self) -> io::Result<Vec<u8>> {
        drain(&mut self.connection)
    }

    pub fn is_done(&self) -> bool {
        !self.connection.is_handshaking()
    }

    pub fn wants_read(&self) -> bool {
        self.connection.wants_read()
    }

    /// Takes bytes the client sent. On a failure, the error and the alert that tells the
    /// client why (send it before closing).
    pub fn receive(&mut self, mut received: &[u8]) -> Result<(), (io::Error, Vec<u8>)> {
        while !received.is_empty() {
            self.connection.read_tls(&mut received).map_err(|err| (err, Vec::new()))?;
            if let Err(err) = self.connection.process_new_packets() {
                let alert = drain(&mut self.connection).unwrap_or_default();
                return Err((io::Error::new(io::ErrorKind::InvalidData, err), alert));
            }
        }
        Ok(())
    }

    /// The connection, once the handshake is done.
    pub fn into_connection(self) -> ServerConnection {
        self.connection
    }
}

/// The subject of the client's certificate as Kafka's default principal builder writes it
/// (Java's RFC 2253 form: most specific name first, `CN=carol,OU=eng,O=acme,C=US`).
pub fn certificate_subject(connection: &ServerConnection) -> Option<String> {
    subject_of(connection.peer_certificates()?.first()?.as_ref())
}

/// The subject of a DER certificate in RFC 2253 form, or None if it does not parse.
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let value = attribute.as_str().map(escape_rfc2253).unwrap_or_else(|_| {
                        format!("#{}", attribute.attr_value().data.iter().map(|b| format!("{b:02x}")).collect::<String>())
                    });
                    format!("{}={value}", short_name(&oid).unwrap_or(&oid))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    Some(rdns.join(","))
}

/// The keywords RFC 2253 (and Java) use for attribute types.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || (i == 0 && (c == '#' || c == ' ')) || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A TLS connection after its handshake, shared by the connection's read and write loops.
#[derive(Clone)]
pub(crate) struct TlsSession(Arc<Mutex<ServerConnection>>);

impl TlsSession {
    pub(crate) fn new(connection: ServerConnection) -> Self {
        TlsSession(Arc::new(Mutex::new(connection)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ServerConnection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decrypts bytes read from the socket. Returns the plaintext and whether TLS has something
    /// to send back (a key update, an alert); an error ends the connection.
    pub(crate) fn decrypt(&self, mut received: &[u8]) -> io::Result<(Vec<u8>, bool)> {
        let mut connection = self.lock();
        let mut plaintext = Vec::new();
        while !received.is_empty() {
            connection.read_tls(&mut received)?;
            connection.process_new_packets().map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
            match connection.reader().read_to_end(&mut plaintext) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        Ok((plaintext, connection.wants_write()))
    }

    /// Plaintext already decrypted and not yet taken (what came with the handshake's end).
    pub(crate) fn take_plaintext(&self) -> Vec<u8> {
        let mut plaintext = Vec::new();
        let _ = self.lock().reader().read_to_end(&mut plaintext);
        plaintext
    }

    /// Encrypts plaintext for the socket, with whatever else TLS has to send first.
    pub(crate) fn encrypt(&self, plaintext: &[u8]) -> io::Result<Vec<u8>> {
        let mut connection = self.lock();
        if !plaintext.is_empty() {
            connection.writer().write_all(plaintext)?;
        }
        drain(&mut connection)
    }

    /// The close_notify alert, before the socket closes.
    pub(crate) fn close(&self) -> Vec<u8> {
        let mut connection = self.lock();
        connection.send_close_notify();
        drain(&mut connection).unwrap_or_default()
    }
}

/// Everything rustls has to send, as bytes.
pub(crate) fn drain(connection: &mut ServerConnection) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while connection.wants_write() {
        connection.write_tls(&mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::escape_rfc2253;

    #[test]
    fn subject_values_are_escaped_as_rfc_2253_says() {
        assert_eq!(escape_rfc2253("carol"), "carol");
        assert_eq!(escape_rfc2253("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escape_rfc2253("#1 "), "\\#1\\ ");
    }
}
