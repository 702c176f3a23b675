//! TLS to Redis (`rediss://`): the CA that signs Redis's certificate (`KORVET_REDIS_CA_FILE`, or
//! the system's roots) and an optional client certificate, given to the redis crate's
//! connections and to korvet's own read connection.

use crate::topology::Deployment;
use crate::RedisOptions;
use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, RedisError, TlsCertificates};
use std::sync::Arc;

fn invalid(message: String) -> RedisError {
    RedisError::from((redis::ErrorKind::InvalidClientConfig, "Redis TLS", message))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, RedisError> {
    std::fs::read(path).map_err(|err| invalid(format!("cannot read {}: {err}", path.display())))
}

/// The redis crate's form of the configured files, if any are configured.
pub fn certificates(options: &RedisOptions) -> Result<Option<TlsCertificates>, RedisError> {
    if options.ca_file.is_none() && options.client_cert.is_none() {
        return Ok(None);
    }
    let root_cert = options.ca_file.as_deref().map(read).transpose()?;
    let client_tls = match &options.client_cert {
        Some((cert, key)) => Some(ClientTlsConfig { client_cert: read(cert)?, client_key: read(key)? }),
        None => None,
    };
    Ok(Some(TlsCertificates { client_tls, root_cert }))
}

/// Gives every `rediss://` address of the deployment the certificates, so that each connection
/// made from it later (cluster discovery, pub/sub, Sentinel's masters) trusts the same CA.
pub fn apply(deployment: Deployment, certificates: Option<&TlsCertificates>) -> Result<Deployment, RedisError> {
    let Some(certificates) = certificates else { return Ok(deployment) };
    let with = |info: ConnectionInfo| -> Result<ConnectionInfo, RedisError> {
        match info.addr() {
            ConnectionAddr::TcpTls { .. } => Ok(redis::Client::build_with_tls(info, certificates.clone())?.get_connection_info().clone()),
            _ => Ok(info),
        }
    };
    Ok(match deployment {
        Deployment::Single(info) => Deployment::Single(with(info)?),
        Deployment::Cluster(seeds) => Deployment::Cluster(seeds.into_iter().map(with).collect::<Result<_, _>>()?),
        Deployment::Sentinel { sentinels, master, template } => Deployment::Sentinel { sentinels, master, template: with(template)? },
    })
}

/// The rustls configuration of the read connection, when the deployment is reached over TLS.
pub fn read_config(options: &RedisOptions, deployment: &Deployment) -> Result<Option<Arc<rustls::ClientConfig>>, RedisError> {
    let uses_tls = match deployment {
        Deployment::Single(info) => matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
        Deployment::Cluster(seeds) => seeds.iter().any(|s| matches!(s.addr(), ConnectionAddr::TcpTls { .. })),
        Deployment::Sentinel { template, .. } => matches!(template.addr(), ConnectionAddr::TcpTls { .. }),
    };
    if !uses_tls {
        return Ok(None);
    }
    let identity = options.client_cert.as_ref().map(|(cert, key)| (cert.as_path(), key.as_path()));
    let config = korvet_tls::client_config(options.ca_file.as_deref(), identity).map_err(invalid)?;
    Ok(Some(Arc::new(config)))
}
